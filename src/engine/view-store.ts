import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../core/index.js';
import { join } from 'node:path';

/**
 * Where view definitions and checkpoints live. A view's state is saved in units, each under its anchor partition
 * (see the engine): one checkpoint per partition number at most. `FileViewStore` is the embedded default.
 */
export interface ViewStore {
  list(): Promise<{ name: string; sql: string }[]>;
  saveDefinition(name: string, sql: string): Promise<void>;
  /** Removes the view's checkpoints anchored at these partitions (and the legacy ones). */
  remove(name: string, partitions: readonly number[]): Promise<void>;
  loadCheckpoint(name: string, partition: number): Promise<Uint8Array | undefined>;
  /**
   * Atomic: after a crash the previous or the new checkpoint is there, never a mix. `live`: the partitions the unit
   * goes on applying (a store shared by processes refuses the write unless this process still owns them all).
   */
  saveCheckpoint(name: string, partition: number, bytes: Uint8Array, live?: readonly number[]): Promise<void>;
  /**
   * Checkpoints of the format before units (one per engine, over the partitions it owned), read so their state
   * carries over instead of being rebuilt from the log.
   */
  loadLegacyCheckpoints?(name: string): Promise<{ file: string; bytes: Uint8Array }[]>;
  /** Deletes one (once its state is saved as a unit). */
  dropLegacyCheckpoint?(name: string, file: string): Promise<void>;
}

/**
 * Where the host thread keeps its engine workers' checkpoints when they must outlive this machine (a store shared by
 * the processes of a cluster, writes fenced by partition leases: see the cluster room). `live` as in `saveCheckpoint`.
 */
export interface CheckpointStore {
  load(name: string, partition: number): Promise<Uint8Array | undefined>;
  save(name: string, partition: number, bytes: Uint8Array, live: readonly number[]): Promise<void>;
  remove(name: string, partitions: readonly number[]): Promise<void>;
}

/** A ViewStore over a CheckpointStore (definitions come from the host, as with `FileViewStore`). */
export class CheckpointViewStore implements ViewStore {
  readonly #store: CheckpointStore;
  readonly #definitions: readonly { name: string; sql: string }[];
  constructor(store: CheckpointStore, definitions: readonly { name: string; sql: string }[] = []) {
    this.#store = store;
    this.#definitions = definitions;
  }
  async list() {
    return [...this.#definitions];
  }
  async saveDefinition() {}
  remove(name: string, partitions: readonly number[]) {
    return this.#store.remove(name, partitions);
  }
  loadCheckpoint(name: string, partition: number) {
    return this.#store.load(name, partition);
  }
  saveCheckpoint(name: string, partition: number, bytes: Uint8Array, live: readonly number[] = [partition]) {
    return this.#store.save(name, partition, bytes, live);
  }
}

export class MemoryViewStore implements ViewStore {
  readonly #defs = new Map<string, string>();
  readonly #checkpoints = new Map<string, Map<number, Uint8Array>>();
  async list() {
    return [...this.#defs].map(([name, sql]) => ({ name, sql }));
  }
  async saveDefinition(name: string, sql: string) {
    this.#defs.set(name, sql);
  }
  async remove(name: string, partitions: readonly number[]) {
    this.#defs.delete(name);
    for (const p of partitions) this.#checkpoints.get(name)?.delete(p);
  }
  async loadCheckpoint(name: string, partition: number) {
    return this.#checkpoints.get(name)?.get(partition);
  }
  async saveCheckpoint(name: string, partition: number, bytes: Uint8Array) {
    let m = this.#checkpoints.get(name);
    if (m === undefined) this.#checkpoints.set(name, (m = new Map()));
    m.set(partition, Uint8Array.from(bytes));
  }
}

export interface FileViewStoreOptions {
  /** The view definitions to start with: they live in the shared state (`ViewDefinitions`), not here. */
  readonly definitions?: readonly { name: string; sql: string }[];
}

/** `checkpoint.bin` (one engine) and `checkpoint-<i>-of-<n>.bin` (engine i of n): before state per partition. */
const LEGACY_RE = /^checkpoint(-\d+-of-\d+)?\.bin$/;

/**
 * Checkpoints in `<dir>/<view>/p<anchor>.bin` (written to a temp file, synced, renamed: `writeFileAtomic`).
 * Definitions are the host's (`ViewDefinitions`, in the shared state): this store hands the engine the ones it was
 * given and keeps none.
 */
export class FileViewStore implements ViewStore {
  readonly #dir: string;
  readonly #definitions: readonly { name: string; sql: string }[];
  constructor(dir: string, options: FileViewStoreOptions = {}) {
    this.#dir = dir;
    this.#definitions = options.definitions ?? [];
  }
  async list() {
    return [...this.#definitions];
  }
  async saveDefinition() {}
  async remove(name: string, partitions: readonly number[]) {
    for (const p of partitions) await rm(join(this.#dir, name, `p${p}.bin`), { force: true });
    for (const f of await this.#legacy(name)) await rm(join(this.#dir, name, f), { force: true });
  }
  loadCheckpoint(name: string, partition: number) {
    return readIfThere(join(this.#dir, name, `p${partition}.bin`));
  }
  async saveCheckpoint(name: string, partition: number, bytes: Uint8Array) {
    await mkdir(join(this.#dir, name), { recursive: true });
    await writeFileAtomic(join(this.#dir, name, `p${partition}.bin`), bytes);
  }
  async loadLegacyCheckpoints(name: string) {
    const out: { file: string; bytes: Uint8Array }[] = [];
    for (const file of await this.#current(name)) {
      const bytes = await readIfThere(join(this.#dir, name, file));
      if (bytes !== undefined) out.push({ file, bytes });
    }
    return out;
  }
  async dropLegacyCheckpoint(name: string, file: string) {
    if (!LEGACY_RE.test(file)) return;
    // The sets of earlier worker counts were never going to be read: they go with the first of the current set.
    const current = new Set(await this.#current(name));
    for (const f of await this.#legacy(name)) if (f === file || !current.has(f)) await rm(join(this.#dir, name, f), { force: true });
  }
  async #legacy(name: string): Promise<string[]> {
    try {
      return (await readdir(join(this.#dir, name))).filter((f) => LEGACY_RE.test(f)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * The legacy files of the worker count last in use. Earlier versions left the files of a previous worker count
   * behind when it changed (and rebuilt): their states overlap the current ones, so only the newest set counts.
   */
  async #current(name: string): Promise<string[]> {
    const sets = new Map<string, { files: string[]; newest: number }>();
    for (const f of await this.#legacy(name)) {
      const of = /-of-(\d+)\.bin$/.exec(f)?.[1] ?? '1';
      const mtime = await stat(join(this.#dir, name, f)).then((s) => s.mtimeMs, () => -Infinity);
      const set = sets.get(of) ?? { files: [], newest: -Infinity };
      set.files.push(f);
      set.newest = Math.max(set.newest, mtime);
      sets.set(of, set);
    }
    let best: { files: string[]; newest: number } | undefined;
    for (const set of sets.values()) if (best === undefined || set.newest > best.newest) best = set;
    return best?.files ?? [];
  }
}

async function readIfThere(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
