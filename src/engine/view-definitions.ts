import { readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError, kvName, kvToken, silentLogger, type KvChange, type KvStore, type KvWatch, type Logger } from '../core/index.js';

export interface ViewDefinitionsOptions {
  readonly kv: KvStore;
  /**
   * The views folder of an earlier layout (`<dir>/<view>/view.sql`): imported once into an empty store, each file
   * renamed `view.sql.imported` (the folders keep the views' checkpoints).
   */
  readonly importDir?: string;
  readonly logger?: Logger;
}

/**
 * The view definitions (`views.<name>` → SQL) in the shared KvStore, watched: a view created or dropped on one
 * process is created or dropped on every process sharing the store (a JetStream KV bucket), each running it over the
 * log. Checkpoints stay with each engine.
 */
export class ViewDefinitions {
  readonly #o: ViewDefinitionsOptions;
  readonly #logger: Logger;
  readonly #defs = new Map<string, string>();
  #watch: KvWatch | undefined;
  #changed: ((name: string, sql: string | undefined) => void) | undefined;

  constructor(options: ViewDefinitionsOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Loads the definitions (importing an earlier layout's once) and watches for changes made elsewhere:
   * `changed(name, sql)` for a view created or replaced by another process, `changed(name, undefined)` for one dropped.
   */
  async start(changed: (name: string, sql: string | undefined) => void): Promise<void> {
    const kv = this.#o.kv;
    if ((await kv.keys('views')).length === 0 && this.#o.importDir !== undefined) await this.#import(this.#o.importDir);
    // Watch first, then read: nothing written in between is missed. What arrives before `start` returns is in
    // `list()` (which the engine starts from), so it is not reported.
    let started = false;
    this.#changed = changed;
    this.#watch = await kv.watch('views', (c) => this.#apply(c, started ? changed : () => {}));
    for (const key of await kv.keys('views')) {
      const e = await kv.get(key);
      if (e !== undefined) this.#defs.set(kvName(key.slice('views.'.length)), Buffer.from(e.value).toString('utf8'));
    }
    started = true;
  }

  async #import(dir: string): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names.sort()) {
      const file = join(dir, name, 'view.sql');
      let sql: string;
      try {
        sql = await readFile(file, 'utf8');
      } catch {
        continue; // a folder without a definition (dropped mid-way)
      }
      await this.#o.kv.put(keyOf(name), Buffer.from(sql));
      await rename(file, `${file}.imported`);
      this.#logger.info({ view: name }, 'views: imported a definition into the state store');
    }
  }

  #apply(c: KvChange, changed: (name: string, sql: string | undefined) => void): void {
    const name = kvName(c.key.slice('views.'.length));
    const sql = c.value === undefined ? undefined : Buffer.from(c.value).toString('utf8');
    // Our own writes come back through the watch: the map already says so.
    if (this.#defs.get(name) === sql) return;
    if (sql === undefined) this.#defs.delete(name);
    else this.#defs.set(name, sql);
    changed(name, sql);
  }

  list(): { name: string; sql: string }[] {
    return [...this.#defs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, sql]) => ({ name, sql }));
  }

  has(name: string): boolean {
    return this.#defs.has(name);
  }

  /** Stores a new view; VIEW_EXISTS when another process (or this one) has one of that name. */
  async create(name: string, sql: string): Promise<void> {
    const before = this.#defs.get(name);
    this.#defs.set(name, sql);
    try {
      await this.#o.kv.create(keyOf(name), Buffer.from(sql));
    } catch (err) {
      if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) {
        if (this.#defs.get(name) === sql) {
          if (before === undefined) this.#defs.delete(name);
          else this.#defs.set(name, before);
        }
        throw err;
      }
      // Another process created it first. Its change may have come through the watch already: if it changed the map,
      // it is running here; if it looked like ours (the same SQL), it was taken for our own echo and must run now.
      if (this.#defs.get(name) === sql) {
        const e = await this.#o.kv.get(keyOf(name));
        const theirs = e === undefined ? undefined : Buffer.from(e.value).toString('utf8');
        if (theirs === undefined) this.#defs.delete(name);
        else {
          this.#defs.set(name, theirs);
          if (theirs !== before) this.#changed?.(name, theirs);
        }
      }
      throw new HalflifeError('VIEW_EXISTS', { name });
    }
  }

  /** Stores a view, replacing any of that name. */
  async put(name: string, sql: string): Promise<void> {
    this.#defs.set(name, sql);
    await this.#o.kv.put(keyOf(name), Buffer.from(sql));
  }

  async remove(name: string): Promise<void> {
    this.#defs.delete(name);
    await this.#o.kv.delete(keyOf(name));
  }

  async close(): Promise<void> {
    await this.#watch?.stop();
  }
}

function keyOf(name: string): string {
  return `views.${kvToken(name)}`;
}
