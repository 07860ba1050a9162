import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError, kvName, kvToken, silentLogger, type KvChange, type KvStore, type KvWatch, type Logger } from '../core/index.js';
import type { TableRow } from './tables.js';

/** A table's bytes go in values of at most this size (a NATS server refuses messages over its max_payload, 1 MiB by default). */
const CHUNK_BYTES = 512 * 1024;

export interface StoredTable {
  readonly name: string;
  readonly keyColumn: string;
  readonly rows: TableRow[];
}

interface Meta {
  keyColumn: string;
  version: number;
  /** Names this version's chunks (random: two processes putting one table at once never share chunk keys). */
  data: string;
  chunks: number;
}

export interface TableStoreOptions {
  readonly kv: KvStore;
  /** The tables folder of an earlier layout (`<dir>/<name>.json`): imported once into an empty store, renamed `….imported`. */
  readonly importDir?: string;
  readonly logger?: Logger;
}

/**
 * Static tables in the shared KvStore, watched: a table put or dropped on one process is in force on every process
 * sharing the store. A table is `tables.<name>.meta` (key column, version, chunk count) and its rows as JSON in
 * chunks `tables.<name>.d<data>.<i>` (`data` random per write), written before the meta that names them, so a reader never sees a version
 * half written; the chunks of the version before are removed after.
 */
export class TableStore {
  readonly #o: TableStoreOptions;
  readonly #logger: Logger;
  /** The version of each table as this process knows it (its own writes come back through the watch). */
  readonly #versions = new Map<string, number>();
  #watch: KvWatch | undefined;

  constructor(options: TableStoreOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Loads every table (importing an earlier layout's once) and watches for changes made elsewhere: `changed(table)`
   * for a table put by another process, `changed(name)` alone for one dropped. Returns the tables.
   */
  async start(changed: (name: string, table: StoredTable | undefined) => void): Promise<StoredTable[]> {
    const kv = this.#o.kv;
    if ((await kv.keys('tables')).length === 0 && this.#o.importDir !== undefined) await this.#import(this.#o.importDir);
    let started = false;
    this.#watch = await kv.watch('tables', (c) => {
      if (started) void this.#apply(c, changed);
    });
    const out: StoredTable[] = [];
    for (const key of await kv.keys('tables')) {
      if (!key.endsWith('.meta')) continue;
      const name = kvName(key.slice('tables.'.length, -'.meta'.length));
      const t = await this.#load(name);
      if (t !== undefined) out.push(t);
    }
    started = true;
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async #import(dir: string): Promise<void> {
    let files: string[];
    try {
      files = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const f of files.sort()) {
      if (!f.endsWith('.json')) continue;
      const saved = JSON.parse(await readFile(join(dir, f), 'utf8')) as { keyColumn: string; rows: TableRow[] };
      await this.put(f.slice(0, -5), saved.keyColumn, saved.rows);
      await rename(join(dir, f), join(dir, `${f}.imported`));
      this.#logger.info({ table: f.slice(0, -5), rows: saved.rows.length }, 'tables: imported a table into the state store');
    }
  }

  async #meta(name: string): Promise<{ meta: Meta; revision: number } | undefined> {
    const e = await this.#o.kv.get(`${prefix(name)}.meta`);
    return e === undefined ? undefined : { meta: JSON.parse(Buffer.from(e.value).toString('utf8')) as Meta, revision: e.revision };
  }

  async #load(name: string): Promise<StoredTable | undefined> {
    const m = await this.#meta(name);
    if (m === undefined) return undefined;
    const parts: Buffer[] = [];
    for (let i = 0; i < m.meta.chunks; i++) {
      const e = await this.#o.kv.get(`${prefix(name)}.d${m.meta.data}.${i}`);
      if (e === undefined) throw new HalflifeError('INVALID_TABLE', { name, reason: `chunk ${i} of version ${m.meta.version} is missing from the state store` });
      parts.push(Buffer.from(e.value));
    }
    this.#versions.set(name, m.meta.version);
    return { name, keyColumn: m.meta.keyColumn, rows: JSON.parse(Buffer.concat(parts).toString('utf8')) as TableRow[] };
  }

  async #apply(c: KvChange, changed: (name: string, table: StoredTable | undefined) => void): Promise<void> {
    if (!c.key.endsWith('.meta')) return;
    const name = kvName(c.key.slice('tables.'.length, -'.meta'.length));
    try {
      if (c.value === undefined) {
        if (!this.#versions.delete(name)) return;
        changed(name, undefined);
        return;
      }
      const meta = JSON.parse(Buffer.from(c.value).toString('utf8')) as Meta;
      if ((this.#versions.get(name) ?? 0) >= meta.version) return;
      const t = await this.#load(name);
      if (t !== undefined) changed(name, t);
    } catch (err) {
      // A newer version replaced this one while it was read: its own change follows.
      this.#logger.warn({ err, table: name }, 'a table changed elsewhere could not be read; waiting for its next version');
    }
  }

  /** Stores a table's rows (all of them), replacing what the store held. */
  async put(name: string, keyColumn: string, rows: readonly TableRow[]): Promise<void> {
    const kv = this.#o.kv;
    const bytes = Buffer.from(JSON.stringify(rows));
    for (let attempt = 0; ; attempt++) {
      const current = await this.#meta(name);
      const version = (current?.meta.version ?? 0) + 1;
      const data = randomBytes(6).toString('hex');
      const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) await kv.put(`${prefix(name)}.d${data}.${i}`, bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES));
      const meta = Buffer.from(JSON.stringify({ keyColumn, version, data, chunks } satisfies Meta));
      // Known before the write: its own change comes back through the watch, maybe before the write returns.
      const known = this.#versions.get(name);
      this.#versions.set(name, version);
      try {
        if (current === undefined) await kv.create(`${prefix(name)}.meta`, meta);
        else await kv.update(`${prefix(name)}.meta`, meta, current.revision);
      } catch (err) {
        if (this.#versions.get(name) === version) {
          if (known === undefined) this.#versions.delete(name);
          else this.#versions.set(name, known);
        }
        // Only a conflict says the meta does not name these chunks; after any other failure (a lost ack) it may.
        if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
        // Another process wrote the table in between: write again above its version.
        for (let i = 0; i < chunks; i++) await kv.delete(`${prefix(name)}.d${data}.${i}`);
        if (attempt >= 10) throw err;
        continue;
      }
      if (current !== undefined) await this.#removeChunks(name, current.meta);
      return;
    }
  }

  async remove(name: string): Promise<void> {
    const current = await this.#meta(name);
    this.#versions.delete(name);
    if (current === undefined) return;
    await this.#o.kv.delete(`${prefix(name)}.meta`);
    await this.#removeChunks(name, current.meta);
  }

  async #removeChunks(name: string, meta: Meta): Promise<void> {
    for (let i = 0; i < meta.chunks; i++) await this.#o.kv.delete(`${prefix(name)}.d${meta.data}.${i}`);
  }

  async close(): Promise<void> {
    await this.#watch?.stop();
  }
}

function prefix(name: string): string {
  return `tables.${kvToken(name)}`;
}
