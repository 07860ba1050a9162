import { DDSketch, hash64, HyperLogLog, sketchKey, TopK, type TopKEntry } from '../sketch/index.js';
import { compare, isNull, toNumber, type AggFn, type AggSpec, type Value } from '../sql/index.js';

/**
 * A mergeable partial aggregate. Every accumulator can absorb values, merge another of its kind (the union of
 * the two inputs), produce its result, and turn into plain data for checkpoints (`v8.serialize`-able).
 */
export interface Accumulator {
  add(v: Value): void;
  merge(other: Accumulator): void;
  result(): Value;
  /** Approximate heap bytes. */
  bytes(): number;
  save(): unknown;
}

/** COUNT(*) counts every row (`star`); COUNT(x) the rows where x is not null. */
class Count implements Accumulator {
  n = 0;
  constructor(readonly star: boolean) {}
  add(v: Value): void {
    if (this.star || !isNull(v)) this.n++;
  }
  merge(o: Count): void {
    this.n += o.n;
  }
  result(): Value {
    return this.n;
  }
  bytes(): number {
    return 24;
  }
  save(): unknown {
    return this.n;
  }
}

class Sum implements Accumulator {
  s = 0;
  n = 0;
  constructor(readonly average: boolean) {}
  add(v: Value): void {
    if (isNull(v)) return;
    const x = toNumber(v);
    if (Number.isNaN(x)) return;
    this.s += x;
    this.n++;
  }
  merge(o: Sum): void {
    this.s += o.s;
    this.n += o.n;
  }
  result(): Value {
    if (this.n === 0) return null;
    return this.average ? this.s / this.n : this.s;
  }
  bytes(): number {
    return 40;
  }
  save(): unknown {
    return [this.s, this.n];
  }
}

class Extreme implements Accumulator {
  v: Value = null;
  constructor(readonly max: boolean) {}
  add(v: Value): void {
    if (isNull(v)) return;
    if (this.v === null) this.v = v;
    else {
      const c = compare(v, this.v)!;
      if (this.max ? c > 0 : c < 0) this.v = v;
    }
  }
  merge(o: Extreme): void {
    this.add(o.v);
  }
  result(): Value {
    return this.v;
  }
  bytes(): number {
    return 40;
  }
  save(): unknown {
    return this.v;
  }
}

class Distinct implements Accumulator {
  set = new Set<string>();
  add(v: Value): void {
    if (!isNull(v)) this.set.add(sketchKey(v));
  }
  merge(o: Distinct): void {
    for (const x of o.set) this.set.add(x);
  }
  result(): Value {
    return this.set.size;
  }
  bytes(): number {
    let b = 64;
    for (const x of this.set) b += 40 + x.length * 2;
    return b;
  }
  save(): unknown {
    return [...this.set];
  }
}

/**
 * The last value hashed and its hash: a HOP window adds the same value to several windows in a row, and the hash
 * is the costly part of an HLL update. A pure memo, so sharing it between accumulators is safe.
 */
const lastHash = { value: '', hi: 0, lo: 0, set: false };
const HASH_OUT = new Uint32Array(2);

/** The 64-bit hash of a sketch input as [hi, lo] (a shared array: read it before the next call). */
export function memoHash(s: string): Uint32Array {
  if (!lastHash.set || lastHash.value !== s) {
    hash64(s, HASH_OUT);
    lastHash.value = s;
    lastHash.hi = HASH_OUT[0];
    lastHash.lo = HASH_OUT[1];
    lastHash.set = true;
  } else {
    HASH_OUT[0] = lastHash.hi;
    HASH_OUT[1] = lastHash.lo;
  }
  return HASH_OUT;
}

export class ApproxDistinct implements Accumulator {
  hll: HyperLogLog;
  constructor(precision: number) {
    this.hll = new HyperLogLog(precision);
  }
  add(v: Value): void {
    if (isNull(v)) return;
    const h = memoHash(sketchKey(v));
    this.hll.addHash(h[0], h[1]);
  }
  merge(o: ApproxDistinct): void {
    this.hll.merge(o.hll);
  }
  result(): Value {
    return this.hll.estimate();
  }
  bytes(): number {
    return 48 + this.hll.bytes;
  }
  save(): unknown {
    return this.hll.serialize();
  }
}

class Percentile implements Accumulator {
  dd: DDSketch;
  constructor(readonly q: number, accuracy: number | undefined) {
    this.dd = new DDSketch(accuracy);
  }
  add(v: Value): void {
    if (isNull(v)) return;
    const x = toNumber(v);
    if (!Number.isNaN(x)) this.dd.add(x);
  }
  merge(o: Percentile): void {
    this.dd.merge(o.dd);
  }
  result(): Value {
    return this.dd.quantile(this.q);
  }
  bytes(): number {
    return 48 + this.dd.bytes;
  }
  save(): unknown {
    return this.dd.serialize();
  }
}

class Top implements Accumulator {
  top: TopK;
  constructor(k: number) {
    this.top = new TopK(k);
  }
  add(v: Value): void {
    if (!isNull(v)) this.top.add(sketchKey(v));
  }
  merge(o: Top): void {
    this.top.merge(o.top);
  }
  result(): TopKEntry[] {
    return this.top.top();
  }
  bytes(): number {
    return 48 + this.top.bytes;
  }
  save(): unknown {
    return this.top.serialize();
  }
}

const FACTORIES: Record<AggFn, (spec: AggSpec) => Accumulator> = {
  count_star: () => new Count(true),
  count: () => new Count(false),
  count_distinct: () => new Distinct(),
  sum: () => new Sum(false),
  avg: () => new Sum(true),
  min: () => new Extreme(false),
  max: () => new Extreme(true),
  approx_count_distinct: (s) => new ApproxDistinct(s.param ?? 14),
  approx_percentile: (s) => new Percentile(s.param ?? 0.5, s.accuracy),
  top_k: (s) => new Top(s.param ?? 10),
};

export function createAccumulator(spec: AggSpec): Accumulator {
  return FACTORIES[spec.fn](spec);
}

/** Rebuilds an accumulator from `save()` output. */
export function restoreAccumulator(spec: AggSpec, saved: unknown): Accumulator {
  const acc = createAccumulator(spec);
  switch (spec.fn) {
    case 'count_star':
    case 'count':
      (acc as Count).n = saved as number;
      break;
    case 'sum':
    case 'avg':
      [(acc as Sum).s, (acc as Sum).n] = saved as [number, number];
      break;
    case 'min':
    case 'max':
      (acc as Extreme).v = saved as Value;
      break;
    case 'count_distinct':
      (acc as Distinct).set = new Set(saved as string[]);
      break;
    case 'approx_count_distinct':
      (acc as ApproxDistinct).hll = HyperLogLog.deserialize(saved as Uint8Array);
      break;
    case 'approx_percentile':
      (acc as Percentile).dd = DDSketch.deserialize(saved as Uint8Array);
      break;
    case 'top_k':
      (acc as Top).top = TopK.deserialize(saved as Uint8Array);
      break;
  }
  return acc;
}
