import { HyperLogLog, hllStateAdd, hllStateCompact, sketchKey, type HllState } from '../sketch/index.js';
import { toNumber, type AggSpec, type EventRow, type Value } from '../sql/index.js';
import { ApproxDistinct, createAccumulator, memoHash, restoreAccumulator, type Accumulator } from './accumulators.js';
import type { Group } from './view-state.js';

/**
 * The rows of one window in columns: counts and sums in typed arrays, other aggregates as objects, keys and
 * versions beside them. A row costs a few dozen bytes of bookkeeping instead of a group object, a key array, an
 * accumulator array and one object per count. Readers get `Group` objects made on demand (read-only).
 */
interface Column {
  grow(capacity: number): void;
  add(row: number, v: Value): void;
  /** Merges another partial aggregate into the row. */
  absorb(row: number, acc: Accumulator): void;
  /** The row's partial aggregate as an Accumulator (do not modify it). */
  acc(row: number): Accumulator;
  bytes(row: number): number;
}

class CountColumn implements Column {
  n = new Float64Array(16);
  constructor(readonly spec: AggSpec, readonly star: boolean) {}
  grow(capacity: number): void {
    const next = new Float64Array(capacity);
    next.set(this.n);
    this.n = next;
  }
  add(row: number, v: Value): void {
    if (this.star || (v !== null && v !== undefined)) this.n[row]++;
  }
  absorb(row: number, acc: Accumulator): void {
    this.n[row] += acc.save() as number;
  }
  acc(row: number): Accumulator {
    return restoreAccumulator(this.spec, this.n[row]);
  }
  bytes(): number {
    return 8;
  }
}

class SumColumn implements Column {
  s = new Float64Array(16);
  n = new Float64Array(16);
  constructor(readonly spec: AggSpec) {}
  grow(capacity: number): void {
    const s = new Float64Array(capacity);
    s.set(this.s);
    this.s = s;
    const n = new Float64Array(capacity);
    n.set(this.n);
    this.n = n;
  }
  add(row: number, v: Value): void {
    if (v === null || v === undefined) return;
    const x = toNumber(v);
    if (Number.isNaN(x)) return;
    this.s[row] += x;
    this.n[row]++;
  }
  absorb(row: number, acc: Accumulator): void {
    const [s, n] = acc.save() as [number, number];
    this.s[row] += s;
    this.n[row] += n;
  }
  acc(row: number): Accumulator {
    return restoreAccumulator(this.spec, [this.s[row], this.n[row]]);
  }
  bytes(): number {
    return 16;
  }
}

class ObjectColumn implements Column {
  objs: (Accumulator | undefined)[] = [];
  constructor(readonly spec: AggSpec) {}
  grow(): void {}
  add(row: number, v: Value): void {
    (this.objs[row] ??= createAccumulator(this.spec)).add(v);
  }
  absorb(row: number, acc: Accumulator): void {
    (this.objs[row] ??= createAccumulator(this.spec)).merge(acc);
  }
  acc(row: number): Accumulator {
    return this.objs[row] ?? createAccumulator(this.spec);
  }
  bytes(row: number): number {
    return 8 + (this.objs[row]?.bytes() ?? 0);
  }
}

/**
 * APPROX_COUNT_DISTINCT as bare sketch data per row (a sorted sparse list, or dense registers): no sketch or
 * accumulator object per row. Reads wrap the data in a HyperLogLog that shares it.
 */
class HllColumn implements Column {
  states: (HllState | undefined)[] = [];
  readonly precision: number;
  constructor(readonly spec: AggSpec) {
    this.precision = spec.param ?? 14;
  }
  grow(): void {}
  add(row: number, v: Value): void {
    if (v === null || v === undefined) return;
    const h = memoHash(sketchKey(v));
    this.states[row] = hllStateAdd(this.states[row], this.precision, h[0], h[1]);
  }
  absorb(row: number, acc: Accumulator): void {
    const merged = this.#sketch(row).clone().merge((acc as ApproxDistinct).hll);
    this.states[row] = hllStateCompact(merged.state);
  }
  #sketch(row: number): HyperLogLog {
    const s = this.states[row];
    return s === undefined ? new HyperLogLog(this.precision) : HyperLogLog.fromState(this.precision, s);
  }
  acc(row: number): Accumulator {
    const a = createAccumulator(this.spec) as ApproxDistinct;
    a.hll = this.#sketch(row);
    return a;
  }
  bytes(row: number): number {
    const s = this.states[row];
    return 8 + (s === undefined ? 0 : typeof s === 'string' ? 16 + s.length : s instanceof Uint8Array ? s.length + 64 : 48 + s.length * 8);
  }
}

function column(spec: AggSpec): Column {
  switch (spec.fn) {
    case 'count_star':
      return new CountColumn(spec, true);
    case 'count':
      return new CountColumn(spec, false);
    case 'sum':
    case 'avg':
      return new SumColumn(spec);
    case 'approx_count_distinct':
      return new HllColumn(spec);
    default:
      return new ObjectColumn(spec);
  }
}

export class GroupTable {
  readonly start: number | null;
  readonly end: number | null;
  closed = false;
  readonly #specs: readonly AggSpec[];
  readonly #index = new Map<unknown, number>();
  /** Per row: the key value itself when the view has one key column (no array per row), else the key array. */
  readonly #keys: unknown[] = [];
  readonly #single: boolean;
  #versions = new Float64Array(16);
  readonly #cols: Column[];

  constructor(specs: readonly AggSpec[], start: number | null, end: number | null, keyColumns: number) {
    this.#specs = specs;
    this.#single = keyColumns === 1;
    this.start = start;
    this.end = end;
    this.#cols = specs.map(column);
  }

  get size(): number {
    return this.#keys.length;
  }

  #row(key: unknown, keys: readonly Value[]): number {
    let r = this.#index.get(key);
    if (r === undefined) {
      r = this.#keys.length;
      if (r >= this.#versions.length) {
        const capacity = this.#versions.length * 2;
        const v = new Float64Array(capacity);
        v.set(this.#versions);
        this.#versions = v;
        for (const c of this.#cols) c.grow(capacity);
      }
      this.#keys.push(this.#single ? keys[0] : keys.slice());
      this.#index.set(key, r);
    }
    return r;
  }

  /** Applies one event to the row of `key` (created on first use; `keys` is copied). */
  add(key: unknown, keys: readonly Value[], row: EventRow, version: number): void {
    const r = this.#row(key, keys);
    this.#versions[r] = version;
    const specs = this.#specs;
    for (let i = 0; i < specs.length; i++) {
      const arg = specs[i].arg;
      this.#cols[i].add(r, arg === undefined ? null : arg(row));
    }
  }

  /** Merges partial aggregates into the row of `key` (freezing merged windows, restoring checkpoints). */
  absorb(key: unknown, keys: readonly Value[], accs: readonly Accumulator[], version: number): void {
    const r = this.#row(key, keys);
    if (version > this.#versions[r]) this.#versions[r] = version;
    for (let i = 0; i < accs.length; i++) this.#cols[i].absorb(r, accs[i]);
  }

  #group(r: number): Group {
    return {
      keys: this.#single ? [this.#keys[r] as Value] : (this.#keys[r] as Value[]),
      windowStart: this.start,
      windowEnd: this.end,
      accs: this.#cols.map((c) => c.acc(r)),
      closed: this.closed,
      version: this.#versions[r],
    };
  }

  get(key: unknown): Group | undefined {
    const r = this.#index.get(key);
    return r === undefined ? undefined : this.#group(r);
  }

  *values(): IterableIterator<Group> {
    for (let r = 0; r < this.#keys.length; r++) yield this.#group(r);
  }

  *entries(): IterableIterator<[unknown, Group]> {
    for (const [key, r] of this.#index) yield [key, this.#group(r)];
  }

  /** Marks the window final; every row's version becomes `version` (the live stream sends them once more). */
  close(version: number): void {
    this.closed = true;
    this.#versions.fill(version, 0, this.#keys.length);
  }

  bytes(): number {
    let b = 64;
    for (let r = 0; r < this.#keys.length; r++) {
      b += 48 + (this.#single ? 8 : (this.#keys[r] as Value[]).length * 16 + 32);
      for (const c of this.#cols) b += c.bytes(r);
    }
    return b;
  }
}
