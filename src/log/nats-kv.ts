import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV } from '@nats-io/kv';
import { retryingTimeouts } from './nats-connection.js';
import { checkKvKey, HalflifeError, kvKeyBelow, type KvChange, type KvEntry, type KvStore, type KvWatch } from '../core/index.js';

/**
 * How long a JetStream API call may take (the client's default is 5 s): creating a replicated bucket or writing to
 * one whose leader just moved takes longer on a busy cluster, and giving up early only fails a start or a write.
 */
export const JETSTREAM_TIMEOUT_MS = 10_000;

export interface NatsKvOptions {
  /** The bucket's name (`[A-Za-z0-9_-]`). */
  readonly bucket: string;
  /** Copies of the bucket across the cluster's servers (default 1; 3 for a cluster that survives losing a server). */
  readonly replicas?: number;
  /**
   * Entries not written for this long are removed by the server (the bucket's max age; a per-key TTL needs
   * nats-server 2.11). For leases: one not renewed expires.
   */
  readonly ttlMs?: number;
}

/**
 * The cluster's KvStore: a JetStream KV bucket (history 1, file storage). Revisions are the bucket's sequence
 * numbers, so they grow with every write, as the seam promises; `create` and `update` are JetStream's own
 * compare-and-set. Watchers see changes from every node.
 */
export class NatsKvStore implements KvStore {
  readonly #connection: () => NatsConnection;
  readonly #options: NatsKvOptions;
  #bucket: Promise<KV> | undefined;

  /**
   * The bucket is opened (created if it does not exist) on first use, once the connection is there; the connection
   * stays the caller's.
   */
  constructor(connection: NatsConnection | (() => NatsConnection), options: NatsKvOptions) {
    this.#connection = typeof connection === 'function' ? connection : () => connection;
    this.#options = options;
  }

  /** A store whose bucket is open. */
  static async open(connection: NatsConnection, options: NatsKvOptions): Promise<NatsKvStore> {
    const store = new NatsKvStore(connection, options);
    await store.#kv();
    return store;
  }

  #kv(): Promise<KV> {
    const kvm = new Kvm(jetstream(this.#connection(), { timeout: JETSTREAM_TIMEOUT_MS }));
    this.#bucket ??= retryingTimeouts(() => kvm.create(this.#options.bucket, { history: 1, replicas: this.#options.replicas ?? 1, ...(this.#options.ttlMs === undefined ? {} : { ttl: this.#options.ttlMs }) })).catch((err: unknown) => {
      this.#bucket = undefined;
      throw err;
    });
    return this.#bucket;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    checkKvKey(key);
    const kv = await this.#kv();
    const e = await retryingTimeouts(() => kv.get(key), JETSTREAM_TIMEOUT_MS * 2);
    if (e === null || e.operation !== 'PUT') return undefined;
    return { key, value: e.value, revision: e.revision };
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    return (await this.#kv()).put(key, value);
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    checkKvKey(key);
    try {
      return await (await this.#kv()).create(key, value);
    } catch (err) {
      throw conflict(err, key, 'it exists');
    }
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    checkKvKey(key);
    try {
      return await (await this.#kv()).update(key, value, revision);
    } catch (err) {
      throw conflict(err, key, `expected revision ${revision}`);
    }
  }

  async delete(key: string): Promise<void> {
    checkKvKey(key);
    // A delete of nothing would still write a marker (a revision): only delete what is there.
    if ((await this.get(key)) === undefined) return;
    await (await this.#kv()).delete(key);
  }

  async keys(prefix?: string): Promise<string[]> {
    if (prefix !== undefined && prefix !== '') checkKvKey(prefix);
    const kv = await this.#kv();
    // Listing creates a consumer: asked again while a leader is elected (see `retryingTimeouts`).
    return retryingTimeouts(async () => {
      const out: string[] = [];
      for await (const k of await kv.keys(prefix === undefined || prefix === '' ? '>' : `${prefix}.>`)) if (kvKeyBelow(k, prefix)) out.push(k);
      return out.sort();
    });
  }

  async watch(prefix: string, onChange: (change: KvChange) => void): Promise<KvWatch> {
    if (prefix !== '') checkKvKey(prefix);
    const kv = await this.#kv();
    const iter = await retryingTimeouts(() => kv.watch({ key: prefix === '' ? '>' : `${prefix}.>`, include: KvWatchInclude.UpdatesOnly }));
    const done = (async () => {
      for await (const e of iter) {
        try {
          onChange({ key: e.key, value: e.operation === 'PUT' ? e.value : undefined, revision: e.revision });
        } catch {
          // A watcher's failure is its own (it logs what it cannot read); the watch goes on.
        }
      }
    })().catch(() => {});
    return {
      stop: async () => {
        iter.stop();
        await done;
      },
    };
  }

  async close(): Promise<void> {}
}

/** JetStream refuses a create or update whose expected last sequence is not the key's: a conflict. */
function conflict(err: unknown, key: string, reason: string): unknown {
  const message = (err as Error).message ?? '';
  if (/wrong last sequence|key exists/i.test(message)) return new HalflifeError('KV_CONFLICT', { key, reason: `${reason}: ${message}` });
  return err;
}
