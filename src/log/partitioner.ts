import { partitionId, type PartitionId } from '../core/index.js';

/**
 * Maps keys to partitions: pinned keys own a dedicated partition; every other key hashes (FNV-1a) over the
 * partitions nobody pinned, so a busy pinned key (one trading pair) never shares a partition.
 * Records without a key are spread round-robin, one partition per append call.
 */
export class Partitioner {
  readonly #pins: ReadonlyMap<string, PartitionId>;
  readonly #free: readonly PartitionId[];
  #next = 0;

  constructor(partitionCount: number, pinnedKeys: Readonly<Record<string, number>> = {}) {
    const pins = new Map<string, PartitionId>();
    const pinned = new Set<number>();
    for (const [key, p] of Object.entries(pinnedKeys)) {
      if (!Number.isInteger(p) || p < 0 || p >= partitionCount) {
        throw new RangeError(`pinned key ${key} names partition ${p}, outside 0..${partitionCount - 1}`);
      }
      if (pinned.has(p)) throw new RangeError(`partition ${p} is pinned to more than one key`);
      pinned.add(p);
      pins.set(key, partitionId(p));
    }
    const free: PartitionId[] = [];
    for (let p = 0; p < partitionCount; p++) if (!pinned.has(p)) free.push(partitionId(p));
    if (free.length === 0) throw new RangeError('every partition is pinned: leave at least one for other keys');
    this.#pins = pins;
    this.#free = free;
  }

  forKey(key: string): PartitionId {
    const pinned = this.#pins.get(key);
    if (pinned !== undefined) return pinned;
    return this.#free[fnv1a(key) % this.#free.length];
  }

  /** The partition for the next batch of unkeyed records. */
  nextUnkeyed(): PartitionId {
    const p = this.#free[this.#next];
    this.#next = (this.#next + 1) % this.#free.length;
    return p;
  }
}

/** FNV-1a over UTF-16 code units; stable across versions, since it decides where keys live. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
