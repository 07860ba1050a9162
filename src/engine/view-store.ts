import { mkdir, readFile, rm } from 'node:fs/promises';
import { writeFileAtomic } from '../core/index.js';
import { join } from 'node:path';

/** Where view definitions and checkpoints live. `FileViewStore` is the embedded default. */
export interface ViewStore {
  list(): Promise<{ name: string; sql: string }[]>;
  saveDefinition(name: string, sql: string): Promise<void>;
  remove(name: string): Promise<void>;
  loadCheckpoint(name: string): Promise<Uint8Array | undefined>;
  /** Atomic: after a crash the previous or the new checkpoint is there, never a mix. */
  saveCheckpoint(name: string, bytes: Uint8Array): Promise<void>;
}

export class MemoryViewStore implements ViewStore {
  readonly #defs = new Map<string, string>();
  readonly #checkpoints = new Map<string, Uint8Array>();
  async list() {
    return [...this.#defs].map(([name, sql]) => ({ name, sql }));
  }
  async saveDefinition(name: string, sql: string) {
    this.#defs.set(name, sql);
  }
  async remove(name: string) {
    this.#defs.delete(name);
    this.#checkpoints.delete(name);
  }
  async loadCheckpoint(name: string) {
    return this.#checkpoints.get(name);
  }
  async saveCheckpoint(name: string, bytes: Uint8Array) {
    this.#checkpoints.set(name, Uint8Array.from(bytes));
  }
}

export interface FileViewStoreOptions {
  /** Name of this engine's checkpoint file in each view folder (several engines: one each). Default checkpoint.bin. */
  readonly checkpointFile?: string;
  /** The view definitions to start with: they live in the shared state (`ViewDefinitions`), not here. */
  readonly definitions?: readonly { name: string; sql: string }[];
}

/**
 * Checkpoints in `<dir>/<view>/<checkpointFile>` (written to a temp file, synced, renamed). Definitions are the
 * host's (`ViewDefinitions`, in the shared state): this store hands the engine the ones it was given and keeps none.
 */
export class FileViewStore implements ViewStore {
  readonly #dir: string;
  readonly #checkpoint: string;
  readonly #definitions: readonly { name: string; sql: string }[];
  constructor(dir: string, options: FileViewStoreOptions = {}) {
    this.#dir = dir;
    this.#checkpoint = options.checkpointFile ?? 'checkpoint.bin';
    this.#definitions = options.definitions ?? [];
  }
  async list() {
    return [...this.#definitions];
  }
  async saveDefinition() {}
  async remove(name: string) {
    await rm(join(this.#dir, name, this.#checkpoint), { force: true });
  }
  async loadCheckpoint(name: string) {
    try {
      return await readFile(join(this.#dir, name, this.#checkpoint));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
  async saveCheckpoint(name: string, bytes: Uint8Array) {
    await mkdir(join(this.#dir, name), { recursive: true });
    await writeFileAtomic(join(this.#dir, name, this.#checkpoint), bytes);
  }
}
