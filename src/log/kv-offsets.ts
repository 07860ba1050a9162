import { HalflifeError, kvToken, offset as toOffset, type KvStore, type Offset } from '../core/index.js';
import { checkConsumerName, type OffsetStore } from './log.js';

/**
 * Consumer positions in a KvStore (`offsets.<consumer>`: JSON of partition -> position), for backends whose log is
 * shared by several processes (a JetStream KV bucket). Writes merge with compare-and-set, so two processes
 * committing different partitions of one consumer do not undo each other's positions.
 */
export class KvOffsetStore implements OffsetStore {
  readonly #kv: KvStore;

  constructor(kv: KvStore) {
    this.#kv = kv;
  }

  async commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void> {
    const key = keyOf(consumer);
    for (let attempt = 0; ; attempt++) {
      const current = await this.#kv.get(key);
      const merged = { ...(current === undefined ? {} : (JSON.parse(Buffer.from(current.value).toString('utf8')) as Record<number, number>)), ...offsets };
      const value = Buffer.from(JSON.stringify(merged));
      try {
        if (current === undefined) await this.#kv.create(key, value);
        else await this.#kv.update(key, value, current.revision);
        return;
      } catch (err) {
        if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT') || attempt >= 20) throw err;
      }
    }
  }

  async committedOffsets(consumer: string): Promise<Record<number, Offset>> {
    const e = await this.#kv.get(keyOf(consumer));
    if (e === undefined) return {};
    const raw = JSON.parse(Buffer.from(e.value).toString('utf8')) as Record<string, number>;
    const out: Record<number, Offset> = {};
    for (const [p, o] of Object.entries(raw)) out[Number(p)] = toOffset(o);
    return out;
  }
}

function keyOf(consumer: string): string {
  return `offsets.${kvToken(checkConsumerName(consumer))}`;
}
