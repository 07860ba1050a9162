import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
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
  /** Whether this engine writes and removes view definitions (with several engines, only the first does). */
  readonly ownsDefinitions?: boolean;
}

/** `<dir>/<view>/view.sql` and `<dir>/<view>/checkpoint.bin` (written to a temp file, synced, renamed). */
export class FileViewStore implements ViewStore {
  readonly #dir: string;
  readonly #checkpoint: string;
  readonly #owner: boolean;
  constructor(dir: string, options: FileViewStoreOptions = {}) {
    this.#dir = dir;
    this.#checkpoint = options.checkpointFile ?? 'checkpoint.bin';
    this.#owner = options.ownsDefinitions ?? true;
  }
  async list() {
    await mkdir(this.#dir, { recursive: true });
    const out: { name: string; sql: string }[] = [];
    for (const name of (await readdir(this.#dir)).sort()) {
      try {
        out.push({ name, sql: await readFile(join(this.#dir, name, 'view.sql'), 'utf8') });
      } catch {
        // a folder without a definition (dropped mid-way): ignore
      }
    }
    return out;
  }
  async saveDefinition(name: string, sql: string) {
    if (!this.#owner) return;
    await mkdir(join(this.#dir, name), { recursive: true });
    await writeFileAtomic(join(this.#dir, name, 'view.sql'), sql);
  }
  async remove(name: string) {
    if (this.#owner) await rm(join(this.#dir, name), { recursive: true, force: true });
    else await rm(join(this.#dir, name, this.#checkpoint), { force: true });
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

