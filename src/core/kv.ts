import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { syncDir, writeFileAtomic } from './atomic-file.js';
import { defineErrors, HalflifeError } from './errors.js';

export const KvErrors = defineErrors({
  KV_CONFLICT: {
    status: 409,
    message: 'the stored value of {key} changed meanwhile ({reason}); read it again and retry',
    domain: 'user',
    retryable: true,
  },
  KV_INVALID_KEY: {
    status: 400,
    message: 'the key {key} is invalid: {reason}',
    domain: 'user',
    retryable: false,
  },
});

/** A stored value and the revision that wrote it (revisions grow with every write to the store). */
export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly revision: number;
}

/** A change seen by a watcher: `value` undefined when the key was deleted. */
export interface KvChange {
  readonly key: string;
  readonly value: Uint8Array | undefined;
  readonly revision: number;
}

export interface KvWatch {
  stop(): Promise<void>;
}

/**
 * Shared state (schemas, view definitions, tables, API keys, alert rules) behind one seam: embedded, files in the
 * data folder (`FileKvStore`); in a cluster, a JetStream KV bucket that every node watches. Keys are tokens of
 * `[A-Za-z0-9_=-]` joined by dots (`schemas.page_view.3`), what both backends can hold as they are.
 */
export interface KvStore {
  get(key: string): Promise<KvEntry | undefined>;
  /** Writes unconditionally; returns the new revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key holds nothing (never written, or deleted); else `KV_CONFLICT`. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key's latest revision is `revision` (compare-and-set); else `KV_CONFLICT`. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  /** Removes the key (nothing happens if it holds nothing). */
  delete(key: string): Promise<void>;
  /** Keys below `prefix` (`schemas` lists `schemas.page_view.1` …, not `schemas` itself), sorted; all without one. */
  keys(prefix?: string): Promise<string[]>;
  /** Calls `onChange` for every change below `prefix` made after the watch started, in revision order. */
  watch(prefix: string, onChange: (change: KvChange) => void): Promise<KvWatch>;
  close(): Promise<void>;
}

const TOKEN = /^[A-Za-z0-9_=-]+$/;
const MAX_KEY_LENGTH = 1024;

/** Throws `KV_INVALID_KEY` unless `key` is dot-separated tokens of `[A-Za-z0-9_=-]`. */
export function checkKvKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new HalflifeError('KV_INVALID_KEY', { key: JSON.stringify(String(key).slice(0, 80)), reason: `a key is 1 to ${MAX_KEY_LENGTH} characters` });
  }
  for (const token of key.split('.')) {
    if (!TOKEN.test(token)) throw new HalflifeError('KV_INVALID_KEY', { key: JSON.stringify(key.slice(0, 80)), reason: 'a key is tokens of letters, digits, _, = and - joined by dots' });
  }
}

/** Whether `key` lies below `prefix` (a strict descendant by tokens); every key when there is no prefix. */
export function kvKeyBelow(key: string, prefix: string | undefined): boolean {
  return prefix === undefined || prefix === '' || key.startsWith(`${prefix}.`);
}

/**
 * A name as one key token: characters outside `[A-Za-z0-9_-]` become `=XX` (UTF-8 bytes in hex), so any name (a type
 * `app.page_view`, a view, a key id) is one token and `kvName` gives it back.
 */
export function kvToken(name: string): string {
  let out = '';
  for (const ch of name) {
    if (/[A-Za-z0-9_-]/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The name a `kvToken` stands for. */
export function kvName(token: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '=') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The file keeping the revision of the last delete. */
const REVISION_FILE = '.revision';

/** Revision header of a stored file: 8 bytes, big-endian, before the value. */
const HEADER = 8;

/**
 * The embedded KvStore: values in memory, and with `dir`, one file per key in that folder (`schemas.page_view.3`
 * → `schemas/page_view/3.kv`), written atomically with its revision in front. One process owns the data folder
 * (the data lock), so operations are serialised here and compare-and-set is exact; watchers are this process's.
 * Without `dir` it is the memory backend the contract tests run too.
 */
export class FileKvStore implements KvStore {
  readonly #dir: string | undefined;
  readonly #entries = new Map<string, { value: Uint8Array; revision: number }>();
  readonly #watchers = new Set<{ prefix: string; onChange: (c: KvChange) => void }>();
  #revision = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #opened = false;

  constructor(dir?: string) {
    this.#dir = dir;
  }

  /** Loads what the folder holds (once; every operation waits for it). */
  async open(): Promise<void> {
    if (this.#opened) return;
    this.#opened = true;
    if (this.#dir === undefined) return;
    await mkdir(this.#dir, { recursive: true });
    // The revision of the last delete (no file holds it); a name no key maps to (keys have no leading dot).
    try {
      this.#revision = Number(await readFile(join(this.#dir, REVISION_FILE), 'utf8')) || 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const file of await readdir(this.#dir, { recursive: true })) {
      if (!file.endsWith('.kv')) continue;
      const bytes = await readFile(join(this.#dir, file));
      if (bytes.length < HEADER) continue;
      const revision = Number(bytes.readBigUInt64BE(0));
      const key = file.slice(0, -3).split(sep).join('.');
      this.#entries.set(key, { value: new Uint8Array(bytes.subarray(HEADER)), revision });
      if (revision > this.#revision) this.#revision = revision;
    }
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      await this.open();
      return work();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  #path(key: string): string {
    return `${join(this.#dir!, ...key.split('.'))}.kv`;
  }

  async #write(key: string, value: Uint8Array): Promise<number> {
    const revision = this.#revision + 1;
    if (this.#dir !== undefined) {
      const path = this.#path(key);
      await mkdir(dirname(path), { recursive: true });
      const bytes = Buffer.allocUnsafe(HEADER + value.length);
      bytes.writeBigUInt64BE(BigInt(revision), 0);
      bytes.set(value, HEADER);
      await writeFileAtomic(path, bytes);
    }
    this.#revision = revision;
    const copy = new Uint8Array(value);
    this.#entries.set(key, { value: copy, revision });
    this.#notify({ key, value: copy, revision });
    return revision;
  }

  #notify(change: KvChange): void {
    for (const w of this.#watchers) {
      if (!kvKeyBelow(change.key, w.prefix)) continue;
      try {
        w.onChange(change);
      } catch {
        // A watcher's failure is its own (it logs what it cannot read): the write stands and the others are told.
      }
    }
  }

  get(key: string): Promise<KvEntry | undefined> {
    checkKvKey(key);
    return this.#serial(async () => {
      const e = this.#entries.get(key);
      return e === undefined ? undefined : { key, value: e.value, revision: e.revision };
    });
  }

  put(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    return this.#serial(() => this.#write(key, value));
  }

  create(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    return this.#serial(async () => {
      const e = this.#entries.get(key);
      if (e !== undefined) throw new HalflifeError('KV_CONFLICT', { key, reason: `it exists, at revision ${e.revision}` });
      return this.#write(key, value);
    });
  }

  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    checkKvKey(key);
    return this.#serial(async () => {
      const e = this.#entries.get(key);
      if (e === undefined || e.revision !== revision) {
        throw new HalflifeError('KV_CONFLICT', { key, reason: `expected revision ${revision}, found ${e === undefined ? 'nothing' : `revision ${e.revision}`}` });
      }
      return this.#write(key, value);
    });
  }

  delete(key: string): Promise<void> {
    checkKvKey(key);
    return this.#serial(async () => {
      if (!this.#entries.has(key)) return;
      const revision = this.#revision + 1;
      if (this.#dir !== undefined) {
        // Revisions never repeat, also across a restart after deletes.
        await writeFileAtomic(join(this.#dir, REVISION_FILE), `${revision}\n`);
        const path = this.#path(key);
        await rm(path, { force: true });
        await syncDir(dirname(path));
      }
      this.#revision = revision;
      this.#entries.delete(key);
      this.#notify({ key, value: undefined, revision });
    });
  }

  keys(prefix?: string): Promise<string[]> {
    if (prefix !== undefined && prefix !== '') checkKvKey(prefix);
    return this.#serial(async () => [...this.#entries.keys()].filter((k) => kvKeyBelow(k, prefix)).sort());
  }

  watch(prefix: string, onChange: (change: KvChange) => void): Promise<KvWatch> {
    if (prefix !== '') checkKvKey(prefix);
    return this.#serial(async () => {
      const w = { prefix, onChange };
      this.#watchers.add(w);
      return { stop: async () => void this.#watchers.delete(w) };
    });
  }

  async close(): Promise<void> {
    await this.#queue;
    this.#watchers.clear();
  }

  /** Where a key's file is (tests and tools). */
  fileOf(key: string): string | undefined {
    return this.#dir === undefined ? undefined : relative(this.#dir, this.#path(key));
  }
}
