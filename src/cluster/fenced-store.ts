import { randomBytes } from 'node:crypto';
import { HalflifeError, kvToken, type KvStore } from '../core/index.js';
import './errors.js';

/** Values are stored in chunks of at most this (a NATS server refuses messages over its max_payload, 1 MiB by default). */
const CHUNK_BYTES = 512 * 1024;

interface Meta {
  token: number;
  /** Names this write's chunks (random: two writers racing never share chunk keys). */
  data: string;
  chunks: number;
  /** Who wrote it (a process id), so an audit can match every write to the holder of its token's lease. */
  by?: string;
}

/**
 * Values (checkpoints, sink positions) written under a fencing token: the token is kept with the value, and a write
 * is a compare-and-set on it, so a write with a token older than the last writer's is refused (FENCED_WRITE) even if
 * its writer paused between checking and writing. A value is `<key>.meta` (token, version, chunk count) and its bytes
 * in chunks `<key>.d<data>.<i>` (`data` random per write), written before the meta that names them.
 */
export class FencedStore {
  readonly #kv: KvStore;
  readonly #writer: string | undefined;

  /** `writer` names this process in what it writes (see `Meta.by`). */
  constructor(kv: KvStore, writer?: string) {
    this.#kv = kv;
    this.#writer = writer;
  }

  async #meta(key: string): Promise<{ meta: Meta; revision: number } | undefined> {
    const e = await this.#kv.get(`${prefix(key)}.meta`);
    return e === undefined ? undefined : { meta: JSON.parse(Buffer.from(e.value).toString('utf8')) as Meta, revision: e.revision };
  }

  /** Writes `bytes` under `token`; FENCED_WRITE when a newer token has written the key. */
  async write(key: string, token: number, bytes: Uint8Array): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.#meta(key);
      if (current !== undefined && current.meta.token > token) throw new HalflifeError('FENCED_WRITE', { key, token, current: current.meta.token });
      const data = randomBytes(6).toString('hex');
      const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) await this.#kv.put(`${prefix(key)}.d${data}.${i}`, bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES));
      const meta = Buffer.from(JSON.stringify({ token, data, chunks, by: this.#writer } satisfies Meta));
      try {
        if (current === undefined) await this.#kv.create(`${prefix(key)}.meta`, meta);
        else await this.#kv.update(`${prefix(key)}.meta`, meta, current.revision);
      } catch (err) {
        // Only a conflict says the meta does not name these chunks; after any other failure (a lost ack) it may.
        if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
        for (let i = 0; i < chunks; i++) await this.#kv.delete(`${prefix(key)}.d${data}.${i}`);
        if (attempt >= 10) throw err;
        continue; // someone wrote meanwhile: judge their token
      }
      if (current !== undefined) for (let i = 0; i < current.meta.chunks; i++) await this.#kv.delete(`${prefix(key)}.d${current.meta.data}.${i}`);
      return;
    }
  }

  /** The value and the token it was written under. */
  async read(key: string): Promise<{ token: number; bytes: Buffer } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const m = await this.#meta(key);
      if (m === undefined) return undefined;
      const parts: Buffer[] = [];
      for (let i = 0; i < m.meta.chunks; i++) {
        const e = await this.#kv.get(`${prefix(key)}.d${m.meta.data}.${i}`);
        if (e === undefined) break;
        parts.push(Buffer.from(e.value));
      }
      if (parts.length === m.meta.chunks) return { token: m.meta.token, bytes: Buffer.concat(parts) };
      // Replaced while read: read the new version; the same meta again means a chunk is gone for good.
      const again = await this.#meta(key);
      if (again?.revision === m.revision || attempt >= 10) throw new HalflifeError('INTERNAL', { reason: `the value of ${key} misses a chunk` });
    }
  }
}

function prefix(key: string): string {
  return `fenced.${key.split('.').map(kvToken).join('.')}`;
}
