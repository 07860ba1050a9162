import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError, silentLogger, writeFileAtomic, type KvChange, type KvStore, type KvWatch, type Logger } from '../core/index.js';
import type { NatsConfig } from '../config/index.js';
import { NatsConnector, NatsKvStore } from '../log/index.js';
import './errors.js';

/** What a key may do: `write` ingests, `read` reads views, events, streams and dead letters, `admin` does everything. */
export type Scope = 'write' | 'read' | 'admin';
export const SCOPES: readonly Scope[] = ['write', 'read', 'admin'];

/** An API key as listed: never its secret. */
export interface ApiKeyInfo {
  /** Public id (12 hex digits), part of the key and used to revoke it. */
  readonly id: string;
  readonly name: string;
  readonly scopes: readonly Scope[];
  /** Event types a write key may send (null: any). */
  readonly types: readonly string[] | null;
  /** Browser origins a write key may be used from (null: any; requests without an Origin header are not browsers). */
  readonly origins: readonly string[] | null;
  /** The key's own rate limit in events/s and burst events (null: the server's default, rateLimits.key*). */
  readonly eventsPerS: number | null;
  readonly burstEvents: number | null;
  readonly createdAt: string;
}

interface StoredKey extends ApiKeyInfo {
  /** SHA-256 of the secret, hex. Keys carry 256 random bits, so a fast hash is enough (as for GitHub tokens). */
  readonly hash: string;
}

export interface NewKey {
  readonly name?: string;
  readonly scopes: readonly string[];
  readonly types?: readonly string[] | null;
  readonly origins?: readonly string[] | null;
  readonly eventsPerS?: number | null;
  readonly burstEvents?: number | null;
}

const FILE = 'keys.json';
const KEY_RE = /^hl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const TYPE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const ORIGIN_RE = /^https?:\/\/[^/\s]+$/;
/** Compared against when a key is malformed or unknown, so a miss costs what a hit costs. */
const DUMMY_HASH = createHash('sha256').update('halflife').digest();

function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Where keys live in a shared KvStore: `keys.<id>` each, and the flag that keys are required. */
const KV_REQUIRED = 'auth.required';

/**
 * API keys: created and revoked by the CLI or through the API; only hashes are stored, and a key is shown once,
 * when it is created. Embedded, in `keys.json` in the data folder (the CLI edits it also while a server runs, which
 * notices within a second). With a shared KvStore (the NATS backend), as `keys.<id>` entries there, watched, so a
 * key created or revoked on one process is in force on every process within a second.
 */
export class KeyStore {
  readonly #dir: string;
  readonly #kv: KvStore | undefined;
  #kvWatch: KvWatch | undefined;
  readonly #logger: Logger;
  #keys = new Map<string, StoredKey>();
  /** Set in keys.json once any key has existed: from then on requests need a key even if every key is revoked. */
  #required = false;
  #origins = new Set<string>();
  /** What the key file was when last read: its inode and mtime (every write renames a new file into place, so the
   * inode changes even when two writes fall in one tick of the file system's clock). */
  #version = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(dataDir: string, logger: Logger = silentLogger, kv?: KvStore) {
    this.#dir = dataDir;
    this.#logger = logger;
    this.#kv = kv;
  }

  get #path(): string {
    return join(this.#dir, FILE);
  }

  /** Reads the keys (no file: no keys). */
  async load(): Promise<void> {
    if (this.#kv !== undefined) return this.#loadKv(this.#kv);
    let text: string;
    let version: string;
    try {
      version = fileVersion(await stat(this.#path));
      text = await readFile(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.#setKeys(new Map());
      this.#required = false;
      this.#version = 'none';
      return;
    }
    let parsed: { keys?: StoredKey[]; required?: boolean };
    try {
      parsed = JSON.parse(text) as { keys?: StoredKey[]; required?: boolean };
    } catch (err) {
      throw new HalflifeError('KEYS_FILE_INVALID', { path: this.#path, reason: (err as Error).message }, { cause: err });
    }
    this.#setKeys(new Map((parsed.keys ?? []).map((k) => [k.id, k])));
    // A file written before the flag existed required keys whenever it held one.
    this.#required = parsed.required === true || this.#keys.size > 0;
    this.#version = version;
  }

  /** The keys as the store holds them now. */
  async #readKv(kv: KvStore): Promise<Map<string, StoredKey>> {
    const keys = new Map<string, StoredKey>();
    for (const k of await kv.keys('keys')) {
      const e = await kv.get(k);
      if (e !== undefined) keys.set(k.slice('keys.'.length), JSON.parse(Buffer.from(e.value).toString('utf8')) as StoredKey);
    }
    return keys;
  }

  async #loadKv(kv: KvStore): Promise<void> {
    // Watched first (changes made while the keys are read are applied after them, in order), so none is missed.
    if (this.#kvWatch === undefined) {
      const buffered: KvChange[] = [];
      let loading = true;
      this.#kvWatch = await kv.watch('keys', (c) => (loading ? buffered.push(c) : this.#applyKv(c)));
      this.#setKeys(await this.#readKv(kv));
      this.#required = (await kv.get(KV_REQUIRED)) !== undefined || this.#keys.size > 0;
      loading = false;
      for (const c of buffered) this.#applyKv(c);
      return;
    }
    this.#setKeys(await this.#readKv(kv));
    this.#required = (await kv.get(KV_REQUIRED)) !== undefined || this.#keys.size > 0;
  }

  /**
   * Follows changes made by other processes until `close`: the shared store's watch, or the key file re-read
   * whenever it changes (checked every `intervalMs`).
   */
  async watch(intervalMs = 1000): Promise<void> {
    if (this.#kv !== undefined) {
      if (this.#kvWatch === undefined) await this.#loadKv(this.#kv);
      return;
    }
    this.#timer = setInterval(() => {
      stat(this.#path)
        .then((s) => fileVersion(s), () => 'none')
        .then(async (version) => {
          if (version === this.#version) return;
          const before = this.#keys.size;
          await this.load();
          this.#logger.info({ keys: this.#keys.size, before }, 'API keys reloaded');
        })
        .catch((err: unknown) => this.#logger.error({ err }, 'API keys could not be reloaded; the previous ones stay in force'));
    }, intervalMs);
    this.#timer.unref();
  }

  #applyKv(c: KvChange): void {
    const id = c.key.slice('keys.'.length);
    const keys = new Map(this.#keys);
    try {
      if (c.value === undefined) keys.delete(id);
      else keys.set(id, JSON.parse(Buffer.from(c.value).toString('utf8')) as StoredKey);
    } catch (err) {
      this.#logger.error({ err, key: c.key }, 'an API key in the shared state could not be read; it is not accepted');
      keys.delete(id);
    }
    this.#setKeys(keys);
    this.#required ||= keys.size > 0;
  }

  close(): void {
    clearInterval(this.#timer);
    void this.#kvWatch?.stop();
  }

  get size(): number {
    return this.#keys.size;
  }

  /** Whether requests need a key under `auth: auto`: once any key has existed, even after every key was revoked. */
  get required(): boolean {
    return this.#required || this.#keys.size > 0;
  }

  list(): ApiKeyInfo[] {
    return [...this.#keys.values()].map(({ hash: _hash, ...info }) => info).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Every origin some write key allows (for CORS preflights, which carry no key); kept as keys change. */
  origins(): ReadonlySet<string> {
    return this.#origins;
  }

  #setKeys(keys: Map<string, StoredKey>): void {
    this.#keys = keys;
    const origins = new Set<string>();
    for (const k of keys.values()) if (k.origins !== null && k.scopes.includes('write')) for (const o of k.origins) origins.add(o);
    this.#origins = origins;
  }

  /**
   * The key `token` names, if it is valid. The secret is compared in constant time, and a malformed or unknown key
   * costs the same hash and comparison, so timing tells nothing about which keys exist.
   */
  verify(token: string): ApiKeyInfo | undefined {
    const m = KEY_RE.exec(token);
    const stored = m === null ? undefined : this.#keys.get(m[1]);
    const expected = stored === undefined ? DUMMY_HASH : Buffer.from(stored.hash, 'hex');
    const ok = timingSafeEqual(sha256(m === null ? token : m[2]), expected);
    return ok && stored !== undefined ? stored : undefined;
  }

  /** Creates a key; the returned `key` is the only time its secret is seen. */
  async create(spec: NewKey, nowMs = Date.now()): Promise<{ key: string; info: ApiKeyInfo }> {
    const scopes = [...new Set(spec.scopes)];
    if (scopes.length === 0 || !scopes.every((s): s is Scope => (SCOPES as readonly string[]).includes(s))) {
      throw new HalflifeError('INVALID_REQUEST', { reason: `scopes must be some of ${SCOPES.join(', ')} (got ${JSON.stringify(spec.scopes)})` });
    }
    const types = spec.types === undefined || spec.types === null || spec.types.length === 0 ? null : [...new Set(spec.types)];
    for (const t of types ?? []) if (!TYPE_RE.test(t)) throw new HalflifeError('INVALID_REQUEST', { reason: `not an event type name: ${JSON.stringify(t)}` });
    const origins = spec.origins === undefined || spec.origins === null || spec.origins.length === 0 ? null : [...new Set(spec.origins)];
    for (const o of origins ?? []) {
      if (!ORIGIN_RE.test(o)) throw new HalflifeError('INVALID_REQUEST', { reason: `an origin is scheme://host[:port] with no path, e.g. https://example.com (got ${JSON.stringify(o)})` });
    }
    const eventsPerS = spec.eventsPerS ?? null;
    const burstEvents = spec.burstEvents ?? null;
    for (const [name, v] of [['eventsPerS', eventsPerS], ['burstEvents', burstEvents]] as const) {
      if (v !== null && (!Number.isFinite(v) || v <= 0)) throw new HalflifeError('INVALID_REQUEST', { reason: `${name} must be a positive number (got ${v})` });
    }
    if ((types !== null || origins !== null || eventsPerS !== null || burstEvents !== null) && !scopes.includes('write')) {
      throw new HalflifeError('INVALID_REQUEST', { reason: 'event types, origins and rate limits apply to write keys; add the write scope or drop them' });
    }
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const stored: StoredKey = {
      id,
      name: spec.name ?? '',
      scopes,
      types,
      origins,
      eventsPerS,
      burstEvents,
      createdAt: new Date(nowMs).toISOString(),
      hash: sha256(secret).toString('hex'),
    };
    await this.#update((keys) => keys.set(id, stored));
    const { hash: _hash, ...info } = stored;
    return { key: `hl_${id}_${secret}`, info };
  }

  /**
   * Revokes a key by id; false when there is none. The last admin key is refused (KEY_LAST_ADMIN): without one nobody
   * could manage keys through the API.
   */
  async revoke(id: string): Promise<boolean> {
    let found = false;
    await this.#update((keys) => {
      const key = keys.get(id);
      if (key === undefined) return;
      const otherAdmin = [...keys.values()].some((k) => k.id !== id && k.scopes.includes('admin'));
      if (key.scopes.includes('admin') && !otherAdmin) throw new HalflifeError('KEY_LAST_ADMIN', { id });
      found = keys.delete(id);
    });
    if (found && this.#keys.size === 0) {
      this.#logger.warn({ keyId: id }, 'the last API key was revoked: requests still need a key (none is valid now); create one with halflife keys create');
    }
    return found;
  }

  /**
   * Read-modify-write: of the key file under a lock file, so the CLI and a running server never lose each other's
   * change; in a shared store, of the entries that changed (each key is its own entry).
   */
  async #update(change: (keys: Map<string, StoredKey>) => void): Promise<void> {
    if (this.#kv !== undefined) return this.#updateKv(this.#kv, change);
    const lock = `${this.#path}.lock`;
    const fh = await acquire(lock);
    try {
      await this.load();
      const keys = new Map(this.#keys);
      change(keys);
      const required = this.#required || keys.size > 0;
      await writeFileAtomic(this.#path, JSON.stringify({ format: 1, required, keys: [...keys.values()] }, null, 2) + '\n', { mode: 0o600 });
      // In force only once on disk: a failed write changes nothing.
      this.#setKeys(keys);
      this.#required ||= keys.size > 0;
      this.#version = fileVersion(await stat(this.#path));
    } finally {
      await fh.close();
      await rm(lock, { force: true });
    }
  }

  async #updateKv(kv: KvStore, change: (keys: Map<string, StoredKey>) => void): Promise<void> {
    // Judged on the store as it is now; only the entries that change are written, and only they change here (a
    // change another process made meanwhile, applied by the watch, is kept).
    const before = await this.#readKv(kv);
    const keys = new Map(before);
    change(keys);
    if (keys.size > 0) await kv.put(KV_REQUIRED, Buffer.from('true'));
    const live = new Map(this.#keys);
    for (const [id, k] of keys) {
      if (before.get(id) === k) continue;
      await kv.put(`keys.${id}`, Buffer.from(JSON.stringify(k)));
      live.set(id, k);
    }
    for (const id of before.keys()) {
      if (keys.has(id)) continue;
      await kv.delete(`keys.${id}`);
      live.delete(id);
    }
    this.#setKeys(live);
    this.#required ||= keys.size > 0;
  }
}

function fileVersion(s: { ino: number; mtimeMs: number; size: number }): string {
  return `${s.ino}:${s.mtimeMs}:${s.size}`;
}

/** Takes a lock file, waiting up to 5 s; a lock older than 30 s was left by a crash and is taken over. */
async function acquire(path: string): Promise<Awaited<ReturnType<typeof open>>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await open(path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 30_000) await rm(path, { force: true });
      else if (Date.now() > deadline) throw new HalflifeError('KEYS_FILE_INVALID', { path, reason: 'the key file stayed locked for 5 s by another process' });
      else await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Runs `work` on the keys a server with this data folder and NATS settings uses (the folder's keys.json, or the
 * cluster's shared state), and closes what it opened: what `halflife keys` works on without a server URL.
 */
export async function withKeyStore<T>(dataDir: string, nats: NatsConfig | undefined, work: (store: KeyStore) => Promise<T>): Promise<T> {
  if (nats === undefined) return work(new KeyStore(dataDir));
  const connector = new NatsConnector({ servers: nats.servers ?? '', name: 'halflife keys' });
  await connector.start();
  try {
    return await work(new KeyStore(dataDir, undefined, new NatsKvStore(connector.connection, { bucket: `${nats.bucketPrefix}_state`, replicas: nats.replicas })));
  } finally {
    await connector.close();
  }
}
