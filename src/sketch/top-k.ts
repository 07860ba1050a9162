/**
 * Space-Saving (Metwally et al. 2005) heavy hitters: `capacity` counters; a new value replaces the smallest
 * counter and inherits its count as `error`, so every reported count overestimates the true one by at most
 * `error`. Mergeable (Agarwal et al. 2012): counts add, a value missing from one side takes that side's minimum
 * as extra error, then the largest `capacity` counters are kept.
 */
export interface TopKEntry {
  value: string;
  count: number;
  error: number;
}

export class TopK {
  readonly k: number;
  readonly capacity: number;
  #counters = new Map<string, { count: number; error: number }>();

  constructor(k: number, capacity = Math.max(10 * k, 64)) {
    if (!Number.isInteger(k) || k < 1 || k > 10_000) throw new RangeError('TOP_K k must be an integer from 1 to 10000');
    this.k = k;
    this.capacity = capacity;
  }

  get bytes(): number {
    return 64 + this.#counters.size * 64;
  }

  add(value: string, count = 1): void {
    const c = this.#counters.get(value);
    if (c !== undefined) {
      c.count += count;
      return;
    }
    if (this.#counters.size < this.capacity) {
      this.#counters.set(value, { count, error: 0 });
      return;
    }
    let minKey = '';
    let min = Infinity;
    for (const [v, e] of this.#counters) {
      if (e.count < min) {
        min = e.count;
        minKey = v;
      }
    }
    this.#counters.delete(minKey);
    this.#counters.set(value, { count: min + count, error: min });
  }

  #minCount(): number {
    if (this.#counters.size < this.capacity) return 0;
    let min = Infinity;
    for (const e of this.#counters.values()) if (e.count < min) min = e.count;
    return min;
  }

  merge(other: TopK): this {
    const myMin = this.#minCount();
    const otherMin = other.#minCount();
    const merged = new Map<string, { count: number; error: number }>();
    for (const [v, e] of this.#counters) {
      const o = other.#counters.get(v);
      merged.set(v, o ? { count: e.count + o.count, error: e.error + o.error } : { count: e.count + otherMin, error: e.error + otherMin });
    }
    for (const [v, o] of other.#counters) {
      if (!merged.has(v)) merged.set(v, { count: o.count + myMin, error: o.error + myMin });
    }
    const kept = [...merged].sort((a, b) => b[1].count - a[1].count).slice(0, this.capacity);
    this.#counters = new Map(kept);
    return this;
  }

  /** The k most frequent values, largest first (ties by value). */
  top(): TopKEntry[] {
    return [...this.#counters]
      .map(([value, e]) => ({ value, count: e.count, error: e.error }))
      .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
      .slice(0, this.k);
  }

  clone(): TopK {
    return TopK.deserialize(this.serialize());
  }

  serialize(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ k: this.k, c: this.capacity, e: [...this.#counters].map(([v, e]) => [v, e.count, e.error]) }));
  }

  static deserialize(bytes: Uint8Array): TopK {
    const s = JSON.parse(new TextDecoder().decode(bytes)) as { k: number; c: number; e: [string, number, number][] };
    const t = new TopK(s.k, s.c);
    for (const [v, count, error] of s.e) t.#counters.set(v, { count, error });
    return t;
  }
}
