import { NumberColumn } from '../core/index.js';
import { HLL_DEFAULT_PRECISION, HllArena, sketchKey } from '../sketch/index.js';
import { toNumber, type AggSpec, type EventRow, type Value } from '../sql/index.js';
import { ApproxDistinct, createAccumulator, memoHash, restoreAccumulator, type Accumulator } from './accumulators.js';
import type { Group } from './view-state.js';

/**
 * The rows of one window in columns: counts and sums in typed arrays, other aggregates as objects, keys and
 * versions beside them. A row costs a few dozen bytes of bookkeeping instead of a group object, a key array, an
 * accumulator array and one object per count. Readers get `Group` objects made on demand (read-only).
 */
interface Column {
  /** Makes rows below `rows` addressable. */
  grow(rows: number): void;
  add(row: number, v: Value): void;
  /** Merges another partial aggregate into the row. */
  absorb(row: number, acc: Accumulator): void;
  /** The row's partial aggregate as an Accumulator (do not modify it). */
  acc(row: number): Accumulator;
  bytes(row: number): number;
}

/**
 * Non-negative integers per row in 4 bytes each, widened to 8 the first time one passes 2^32 - 1 (counts and
 * versions rarely do, and they are a third of a small row).
 */
class Counters {
  a: NumberColumn<Uint32Array> | NumberColumn<Float64Array> = new NumberColumn((n) => new Uint32Array(n));
  #wide = false;
  grow(rows: number): void {
    this.a.ensure(rows);
  }
  set(row: number, v: number): void {
    if (v >>> 0 !== v && !this.#wide) {
      this.a = this.a.convert((n) => new Float64Array(n));
      this.#wide = true;
    }
    this.a.set(row, v);
  }
  get(row: number): number {
    return this.a.get(row);
  }
}

class CountColumn implements Column {
  readonly n = new Counters();
  constructor(readonly spec: AggSpec, readonly star: boolean) {}
  grow(rows: number): void {
    this.n.grow(rows);
  }
  add(row: number, v: Value): void {
    if (this.star || (v !== null && v !== undefined)) this.n.set(row, this.n.get(row) + 1);
  }
  absorb(row: number, acc: Accumulator): void {
    this.n.set(row, this.n.get(row) + (acc.save() as number));
  }
  acc(row: number): Accumulator {
    return restoreAccumulator(this.spec, this.n.get(row));
  }
  bytes(): number {
    return this.n.a.bytesPerRow;
  }
}

class SumColumn implements Column {
  readonly s = new NumberColumn((n) => new Float64Array(n));
  readonly n = new NumberColumn((n) => new Float64Array(n));
  constructor(readonly spec: AggSpec) {}
  grow(rows: number): void {
    this.s.ensure(rows);
    this.n.ensure(rows);
  }
  add(row: number, v: Value): void {
    if (v === null || v === undefined) return;
    const x = toNumber(v);
    if (Number.isNaN(x)) return;
    this.s.set(row, this.s.get(row) + x);
    this.n.set(row, this.n.get(row) + 1);
  }
  absorb(row: number, acc: Accumulator): void {
    const [s, n] = acc.save() as [number, number];
    this.s.set(row, this.s.get(row) + s);
    this.n.set(row, this.n.get(row) + n);
  }
  acc(row: number): Accumulator {
    return restoreAccumulator(this.spec, [this.s.get(row), this.n.get(row)]);
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

/** APPROX_COUNT_DISTINCT in an HllArena: a few bytes per row besides the sketch entries, no object per row. */
class HllColumn implements Column {
  readonly arena: HllArena;
  constructor(readonly spec: AggSpec) {
    this.arena = new HllArena(spec.param ?? HLL_DEFAULT_PRECISION);
  }
  grow(rows: number): void {
    this.arena.grow(rows);
  }
  add(row: number, v: Value): void {
    if (v === null || v === undefined) return;
    const h = memoHash(sketchKey(v));
    this.arena.add(row, h[0], h[1]);
  }
  absorb(row: number, acc: Accumulator): void {
    this.arena.merge(row, (acc as ApproxDistinct).hll);
  }
  acc(row: number): Accumulator {
    const a = createAccumulator(this.spec) as ApproxDistinct;
    a.hll = this.arena.sketch(row);
    return a;
  }
  bytes(row: number): number {
    return this.arena.bytes(row);
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

/**
 * The group id of a row's key values: the value itself for one primitive key (5 and "5" stay apart), JSON for
 * several keys or an object. Avoids building a string per event and window, which dominated the engine's
 * allocation.
 */
export function groupId(keys: readonly Value[]): unknown {
  return keys.length === 1 ? singleId(keys[0]) : JSON.stringify(keys);
}

function singleId(k: Value): unknown {
  return k === undefined ? null : typeof k === 'object' && k !== null ? JSON.stringify([k]) : k;
}

/**
 * A group id's hash under a per-table random seed (so keys chosen to collide in one process do not collide in
 * the next, as with V8's own seeded Map hash). Strings: FNV-1a over UTF-16 units with a final mix, one
 * multiply per character, as fast as a Map's own lookup on the short keys views group by (engine bench).
 */
function hashId(id: unknown, seed: number): number {
  if (typeof id === 'string') {
    let h = 0x811c9dc5 ^ seed;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
    return (h ^ (h >>> 13)) >>> 0;
  }
  if (typeof id === 'number') {
    if ((id | 0) === id) {
      let h = Math.imul(id ^ seed ^ (id >>> 16), 0x85ebca6b);
      h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
      return (h ^ (h >>> 16)) >>> 0;
    }
    return hashId(String(id), seed);
  }
  return (id === true ? 1 : id === false ? 2 : 3) ^ seed;
}

/**
 * Group id -> row, open addressing over an Int32Array (row + 1 per slot, linear probing, load ≤ 3/4, no
 * deletes): 4-8 bytes per row where a Map costs 29 (measured with 1M keys); the ids themselves live in the
 * rows. Written here because the per-key state is what bounds how many keys a view holds.
 */
class RowIndex {
  #slots = new Int32Array(32);
  #mask = 31;
  #size = 0;
  readonly #seed = (Math.random() * 2 ** 32) >>> 0;

  /**
   * The row of `id`, or -1 with the slot to insert at in `free`. `ids` holds each row's id, or for
   * single-key tables (`single`) its key value, from which the id follows (see `singleId`).
   */
  find(id: unknown, ids: readonly unknown[], single: boolean): number {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = hashId(id, this.#seed) & mask;
    for (;;) {
      const r = slots[i] - 1;
      if (r < 0) {
        this.free = i;
        return -1;
      }
      const other = ids[r];
      if (other === id || (other !== other && id !== id)) return r;
      if (single && (other === undefined || typeof other === 'object') && singleId(other) === id) return r;
      i = (i + 1) & mask;
    }
  }

  free = 0;

  /** Records `row` at the slot the last unsuccessful `find` left in `free`. */
  insert(row: number, idOf: (row: number) => unknown): void {
    this.#slots[this.free] = row + 1;
    if (++this.#size * 4 > this.#slots.length * 3) {
      const slots = new Int32Array(this.#slots.length * 2);
      const mask = slots.length - 1;
      for (let r = 0; r < this.#size; r++) {
        let i = hashId(idOf(r), this.#seed) & mask;
        while (slots[i] !== 0) i = (i + 1) & mask;
        slots[i] = r + 1;
      }
      this.#slots = slots;
      this.#mask = mask;
    }
  }

  bytes(): number {
    return this.#slots.byteLength;
  }
}

export class GroupTable {
  readonly start: number | null;
  readonly end: number | null;
  closed = false;
  /** Rises with every change (what tells a reader's cache of the window that it is stale). */
  changes = 0;
  readonly #specs: readonly AggSpec[];
  readonly #index = new RowIndex();
  /** Per row: the key value itself when the view has one key column (no array per row), else the key array. */
  readonly #keys: unknown[] = [];
  /** Per row, the group id where it is not derived from the key value (views with several keys). */
  readonly #ids: unknown[] | undefined;
  readonly #single: boolean;
  readonly #versions = new Counters();
  readonly #cols: Column[];
  readonly #idOf: (row: number) => unknown;

  constructor(specs: readonly AggSpec[], start: number | null, end: number | null, keyColumns: number) {
    this.#specs = specs;
    this.#single = keyColumns === 1;
    this.#ids = this.#single ? undefined : [];
    this.#idOf = this.#single ? (r) => singleId(this.#keys[r]) : (r) => this.#ids![r];
    this.start = start;
    this.end = end;
    this.#cols = specs.map(column);
  }

  get size(): number {
    return this.#keys.length;
  }

  /** The row of group id `key` (see `groupId`), created on first use. */
  #row(key: unknown, keys: readonly Value[]): number {
    let r = this.#index.find(key, this.#ids ?? this.#keys, this.#single);
    if (r < 0) {
      r = this.#keys.length;
      this.#versions.grow(r + 1);
      for (const c of this.#cols) c.grow(r + 1);
      this.#keys.push(this.#single ? keys[0] : keys.slice());
      this.#ids?.push(key);
      this.#index.insert(r, this.#idOf);
    }
    return r;
  }

  /** Applies one event to the row of `key` (created on first use; `keys` is copied). */
  add(key: unknown, keys: readonly Value[], row: EventRow, version: number): void {
    const r = this.#row(key, keys);
    this.#versions.set(r, version);
    this.changes++;
    const specs = this.#specs;
    for (let i = 0; i < specs.length; i++) {
      const arg = specs[i].arg;
      this.#cols[i].add(r, arg === undefined ? null : arg(row));
    }
  }

  /** Merges partial aggregates into the row of `key` (freezing merged windows, restoring checkpoints). */
  absorb(key: unknown, keys: readonly Value[], accs: readonly Accumulator[], version: number): void {
    const r = this.#row(key, keys);
    this.changes++;
    if (version > this.#versions.get(r)) this.#versions.set(r, version);
    for (let i = 0; i < accs.length; i++) this.#cols[i].absorb(r, accs[i]);
  }

  #group(r: number): Group {
    return {
      keys: this.#single ? [this.#keys[r] as Value] : (this.#keys[r] as Value[]),
      windowStart: this.start,
      windowEnd: this.end,
      accs: this.#cols.map((c) => c.acc(r)),
      closed: this.closed,
      version: this.#versions.get(r),
    };
  }

  get(key: unknown): Group | undefined {
    const r = this.#index.find(key, this.#ids ?? this.#keys, this.#single);
    return r < 0 ? undefined : this.#group(r);
  }

  *values(): IterableIterator<Group> {
    for (let r = 0; r < this.#keys.length; r++) yield this.#group(r);
  }

  *entries(): IterableIterator<[unknown, Group]> {
    for (let r = 0; r < this.#keys.length; r++) yield [this.#idOf(r), this.#group(r)];
  }

  /** Marks the window final; every row's version becomes `version` (the live stream sends them once more). */
  close(version: number): void {
    this.closed = true;
    this.changes++;
    for (let r = 0; r < this.#keys.length; r++) this.#versions.set(r, version);
  }

  bytes(): number {
    let b = 64 + this.#index.bytes();
    for (let r = 0; r < this.#keys.length; r++) {
      b += 24 + this.#versions.a.bytesPerRow + (this.#single ? 0 : (this.#keys[r] as Value[]).length * 16 + 40 + 24 + (this.#ids![r] as string).length);
      for (const c of this.#cols) b += c.bytes(r);
    }
    return b;
  }
}
