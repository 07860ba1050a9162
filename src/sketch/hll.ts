import { hash64 } from './hash.js';

/**
 * HyperLogLog with a sparse representation (HLL++, Heule et al. 2013) and Ertl's improved estimator (2017),
 * which needs no empirical bias tables and is accurate from 1 to far beyond 10^9 with 64-bit hashes.
 *
 * Sparse mode keeps, per distinct 25-bit hash prefix, the rank of the remaining 39 bits, as a sorted array of
 * `prefix * 64 + rank` numbers: a handful of distinct values costs a few dozen bytes, which is what makes a
 * sketch per key per window affordable. Past `m / 8` entries it converts to dense registers (one byte per
 * register); the conversion is exact, so a sketch that went sparse -> dense equals one built dense.
 */
const SPARSE_P = 25;
/** Up to this many sparse entries, inserts copy into an exactly sized array. */
const SMALL_SPARSE = 32;
const HASH = new Uint32Array(2);
const ALPHA_INF = 1 / (2 * Math.LN2);

export const HLL_MIN_PRECISION = 4;
export const HLL_MAX_PRECISION = 18;
export const HLL_DEFAULT_PRECISION = 14;

function clz32Bits(x: number, width: number): number {
  // Leading zeros of the low `width` bits of x.
  return Math.clz32(x) - (32 - width);
}

/**
 * The sparse entry (`prefix25 * 64 + rank`, below 2^31) of a 64-bit hash. A sparse sketch is the list of these
 * sorted by prefix (`entry >> 6`), one per prefix, keeping the larger.
 */
export function sparseEntry(hi: number, lo: number): number {
  const prefix = hi >>> (32 - SPARSE_P);
  // Rank of the 39 bits after the prefix: 7 low bits of hi, then lo.
  const rest = hi & 0x7f;
  const rank = rest !== 0 ? clz32Bits(rest, 7) + 1 : lo !== 0 ? 7 + Math.clz32(lo) + 1 : 40;
  return prefix * 64 + rank;
}

/** Inserts an entry into a sorted sparse list (keeping the larger rank per prefix); returns the list to keep. */
function sparseInsert(s: number[], entry: number): number[] {
  if (s.length === 0) return [entry];
  const prefix = entry >> 6;
  let lo = 0;
  let hi = s.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const mp = s[mid] >> 6;
    if (mp === prefix) {
      if (entry > s[mid]) s[mid] = entry;
      return s;
    }
    if (mp < prefix) lo = mid + 1;
    else hi = mid - 1;
  }
  if (s.length < SMALL_SPARSE) {
    // Small sets get an exactly sized array: splice would leave the spare capacity a growing array keeps
    // (17 slots for 10 values), and small sketches per key per window are where the memory goes.
    const grown = new Array<number>(s.length + 1);
    for (let i = 0; i < lo; i++) grown[i] = s[i];
    grown[lo] = entry;
    for (let i = lo; i < s.length; i++) grown[i + 1] = s[i];
    return grown;
  }
  s.splice(lo, 0, entry);
  return s;
}

/** Dense registers of precision p from sparse entries (exact: equal to adding the same hashes densely). */
function sparseToDense(p: number, sparse: readonly number[]): Uint8Array {
  const dense = new Uint8Array(1 << p);
  const extra = SPARSE_P - p;
  for (const entry of sparse) {
    const prefix = entry >> 6;
    const rank25 = entry & 63;
    const idx = prefix >>> extra;
    const low = prefix & ((1 << extra) - 1);
    const rank = low !== 0 ? clz32Bits(low, extra) + 1 : extra + rank25;
    if (rank > dense[idx]) dense[idx] = rank;
  }
  return dense;
}

function denseAdd(dense: Uint8Array, p: number, hi: number, lo: number): void {
  const idx = hi >>> (32 - p);
  const restBits = 32 - p;
  const rest = hi & ((1 << restBits) - 1);
  const rank = rest !== 0 ? clz32Bits(rest, restBits) + 1 : lo !== 0 ? restBits + Math.clz32(lo) + 1 : 64 - p + 1;
  if (rank > dense[idx]) dense[idx] = rank;
}

/**
 * A sketch's data without the object, for stores of many sketches that make `HyperLogLog` objects only when
 * read: a sorted sparse entry list, or dense registers.
 */
export type HllState = number[] | Uint8Array;

/** Adds a hash to a state of precision p; returns the state to keep (it may change representation). */
export function hllStateAdd(state: HllState | undefined, p: number, hi: number, lo: number): HllState {
  if (state instanceof Uint8Array) {
    denseAdd(state, p, hi, lo);
    return state;
  }
  const next = sparseInsert(state ?? [], sparseEntry(hi, lo));
  return next.length > (1 << p) / 8 ? sparseToDense(p, next) : next;
}

export class HyperLogLog {
  readonly precision: number;
  /** Sorted `prefix25 * 64 + rank` entries while sparse; undefined once dense. */
  #sparse: number[] | undefined = [];
  #dense: Uint8Array | undefined;

  constructor(precision = HLL_DEFAULT_PRECISION) {
    if (!Number.isInteger(precision) || precision < HLL_MIN_PRECISION || precision > HLL_MAX_PRECISION) {
      throw new RangeError(`HyperLogLog precision must be an integer from ${HLL_MIN_PRECISION} to ${HLL_MAX_PRECISION}`);
    }
    this.precision = precision;
  }

  get isSparse(): boolean {
    return this.#sparse !== undefined;
  }

  /** Standard error of the estimate, 1.04 / sqrt(m). */
  get standardError(): number {
    return 1.04 / Math.sqrt(2 ** this.precision);
  }

  /** Approximate heap bytes held by the sketch's data. */
  get bytes(): number {
    return this.#sparse !== undefined ? 16 + this.#sparse.length * 8 : this.#dense!.length;
  }

  add(value: string): void {
    hash64(value, HASH);
    this.addHash(HASH[0], HASH[1]);
  }

  /** Adds a 64-bit hash given as high and low 32-bit halves. */
  addHash(hi: number, lo: number): void {
    if (this.#sparse !== undefined) {
      this.#sparse = sparseInsert(this.#sparse, sparseEntry(hi, lo));
      if (this.#sparse.length > (1 << this.precision) / 8) this.#toDense();
      return;
    }
    denseAdd(this.#dense!, this.precision, hi, lo);
  }

  #toDense(): void {
    this.#dense = sparseToDense(this.precision, this.#sparse!);
    this.#sparse = undefined;
  }

  estimate(): number {
    if (this.#sparse !== undefined) {
      // Linear counting at 2^25 buckets: exact in practice for the sizes sparse mode holds.
      const m = 2 ** SPARSE_P;
      const v = m - this.#sparse.length;
      return Math.round(m * Math.log(m / v));
    }
    const p = this.precision;
    const m = 1 << p;
    const q = 64 - p;
    const c = new Float64Array(q + 2);
    for (const r of this.#dense!) c[r]++;
    let z = m * tau(1 - c[q + 1] / m);
    for (let k = q; k >= 1; k--) z = 0.5 * (z + c[k]);
    z += m * sigma(c[0] / m);
    return Math.round((ALPHA_INF * m * m) / z);
  }

  /** Merges another sketch of the same precision into this one (the union of the two sets). */
  merge(other: HyperLogLog): this {
    if (other.precision !== this.precision) {
      throw new RangeError(`cannot merge HyperLogLog sketches of precision ${this.precision} and ${other.precision}`);
    }
    if (this.#sparse !== undefined && other.#sparse !== undefined) {
      for (const e of other.#sparse) this.#sparse = sparseInsert(this.#sparse, e);
      if (this.#sparse.length > (1 << this.precision) / 8) this.#toDense();
      return this;
    }
    if (this.#sparse !== undefined) this.#toDense();
    const src = other.#dense ?? other.clone().#forceDense();
    const dst = this.#dense!;
    for (let i = 0; i < dst.length; i++) if (src[i] > dst[i]) dst[i] = src[i];
    return this;
  }

  #forceDense(): Uint8Array {
    if (this.#sparse !== undefined) this.#toDense();
    return this.#dense!;
  }

  /** The sketch's data (shared, not copied: do not modify it). */
  get state(): HllState {
    return this.#sparse ?? this.#dense!;
  }

  /** A sketch over existing data (shared, not copied). */
  static fromState(precision: number, state: HllState): HyperLogLog {
    const h = new HyperLogLog(precision);
    if (state instanceof Uint8Array) {
      h.#sparse = undefined;
      h.#dense = state;
    } else h.#sparse = state;
    return h;
  }

  clone(): HyperLogLog {
    const c = new HyperLogLog(this.precision);
    c.#sparse = this.#sparse?.slice();
    c.#dense = this.#dense?.slice();
    return c;
  }

  /** Bytes: u8 kind (1 sparse, 2 dense) | u8 precision | sparse: u32 count, u32 entries | dense: registers. */
  serialize(): Uint8Array {
    if (this.#sparse !== undefined) {
      const buf = new Uint8Array(6 + this.#sparse.length * 4);
      const view = new DataView(buf.buffer);
      buf[0] = 1;
      buf[1] = this.precision;
      view.setUint32(2, this.#sparse.length, true);
      this.#sparse.forEach((e, i) => view.setUint32(6 + i * 4, e, true));
      return buf;
    }
    const buf = new Uint8Array(2 + this.#dense!.length);
    buf[0] = 2;
    buf[1] = this.precision;
    buf.set(this.#dense!, 2);
    return buf;
  }

  static deserialize(bytes: Uint8Array): HyperLogLog {
    const h = new HyperLogLog(bytes[1]);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes[0] === 1) {
      const n = view.getUint32(2, true);
      const s = new Array<number>(n);
      for (let i = 0; i < n; i++) s[i] = view.getUint32(6 + i * 4, true);
      h.#sparse = s;
    } else if (bytes[0] === 2) {
      h.#sparse = undefined;
      h.#dense = bytes.slice(2, 2 + (1 << h.precision));
    } else throw new RangeError(`not a HyperLogLog sketch (kind ${bytes[0]})`);
    return h;
  }
}

function sigma(x: number): number {
  if (x === 1) return Infinity;
  let y = 1;
  let z = x;
  for (;;) {
    x *= x;
    const prev = z;
    z += x * y;
    y += y;
    if (z === prev) return z;
  }
}

function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  for (;;) {
    x = Math.sqrt(x);
    const prev = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
    if (z === prev) return z / 3;
  }
}
