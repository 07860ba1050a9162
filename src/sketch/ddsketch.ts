/**
 * DDSketch (Masson et al. 2019): quantiles with a relative-error guarantee, mergeable. A value x > 0 falls in
 * bucket ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a); any quantile is returned within relative error `a`
 * of the true value (as long as no bucket collapse happened: at most `maxBuckets` per sign, lowest merged first,
 * so high quantiles keep their guarantee). Negative values use a mirrored store; zeros are counted apart.
 */
export const DDSKETCH_DEFAULT_ACCURACY = 0.01;
/**
 * Buckets kept per sign: at least 2048, and enough to span values four orders of magnitude apart at any accuracy
 * (ln(1e4) / ln(gamma): 461 at 1 %, 4,605 at 0.1 %, 46,052 at 0.01 %). Buckets exist only between the smallest and
 * largest value seen, 8 bytes each, so prices within 1 % of each other take ~50 buckets at 0.01 %.
 */
function defaultMaxBuckets(relativeAccuracy: number): number {
  return Math.max(2048, Math.ceil(Math.log(1e4) / Math.log((1 + relativeAccuracy) / (1 - relativeAccuracy))));
}
const MIN_POSITIVE = 1e-9;

class Store {
  counts: number[] = [];
  offset = 0;
  total = 0;

  add(index: number, count: number, maxBuckets: number): void {
    if (this.counts.length === 0) {
      this.offset = index;
      this.counts.push(0);
    } else if (index < this.offset) {
      const grow = this.offset - index;
      if (this.counts.length + grow > maxBuckets) {
        // Collapse: everything below the lowest kept bucket lands in it.
        index = Math.max(index, this.offset + this.counts.length - maxBuckets);
        if (index < this.offset) {
          this.counts = new Array<number>(this.offset - index).fill(0).concat(this.counts);
          this.offset = index;
        }
      } else {
        // Not unshift(...): a spread of a hundred thousand zeros overflows the argument limit.
        this.counts = new Array<number>(grow).fill(0).concat(this.counts);
        this.offset = index;
      }
    } else if (index >= this.offset + this.counts.length) {
      const need = index - this.offset + 1;
      while (this.counts.length < need) this.counts.push(0);
      if (this.counts.length > maxBuckets) {
        const drop = this.counts.length - maxBuckets;
        let folded = 0;
        for (let i = 0; i < drop; i++) folded += this.counts[i];
        this.counts.splice(0, drop);
        this.counts[0] += folded;
        this.offset += drop;
      }
    }
    this.counts[Math.max(0, index - this.offset)] += count;
    this.total += count;
  }
}

export class DDSketch {
  readonly relativeAccuracy: number;
  readonly #gamma: number;
  readonly #logGamma: number;
  readonly #maxBuckets: number;
  #pos = new Store();
  #neg = new Store();
  #zeros = 0;
  #min = Infinity;
  #max = -Infinity;
  #sum = 0;

  constructor(relativeAccuracy = DDSKETCH_DEFAULT_ACCURACY, maxBuckets = defaultMaxBuckets(relativeAccuracy)) {
    if (!(relativeAccuracy > 0 && relativeAccuracy < 1)) throw new RangeError('relative accuracy must be between 0 and 1');
    this.relativeAccuracy = relativeAccuracy;
    this.#gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
    this.#logGamma = Math.log(this.#gamma);
    this.#maxBuckets = maxBuckets;
  }

  get count(): number {
    return this.#pos.total + this.#neg.total + this.#zeros;
  }

  get sum(): number {
    return this.#sum;
  }

  get bytes(): number {
    return 64 + (this.#pos.counts.length + this.#neg.counts.length) * 8;
  }

  add(value: number, count = 1): void {
    if (!Number.isFinite(value)) return;
    if (value > MIN_POSITIVE) this.#pos.add(Math.ceil(Math.log(value) / this.#logGamma), count, this.#maxBuckets);
    else if (value < -MIN_POSITIVE) this.#neg.add(Math.ceil(Math.log(-value) / this.#logGamma), count, this.#maxBuckets);
    else this.#zeros += count;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
    this.#sum += value * count;
  }

  #value(index: number): number {
    return (2 * Math.pow(this.#gamma, index)) / (this.#gamma + 1);
  }

  /** The q-quantile (0 <= q <= 1), or null when empty. */
  quantile(q: number): number | null {
    const n = this.count;
    if (n === 0 || !(q >= 0 && q <= 1)) return null;
    if (q === 0) return this.#min;
    if (q === 1) return this.#max;
    const rank = q * (n - 1);
    let seen = 0;
    const neg = this.#neg;
    for (let i = neg.counts.length - 1; i >= 0; i--) {
      seen += neg.counts[i];
      if (seen > rank) return clamp(-this.#value(i + neg.offset), this.#min, this.#max);
    }
    seen += this.#zeros;
    if (seen > rank) return 0;
    const pos = this.#pos;
    for (let i = 0; i < pos.counts.length; i++) {
      seen += pos.counts[i];
      if (seen > rank) return clamp(this.#value(i + pos.offset), this.#min, this.#max);
    }
    return this.#max;
  }

  merge(other: DDSketch): this {
    if (other.relativeAccuracy !== this.relativeAccuracy) throw new RangeError('cannot merge DDSketches of different accuracy');
    other.#pos.counts.forEach((c, i) => c > 0 && this.#pos.add(i + other.#pos.offset, c, this.#maxBuckets));
    other.#neg.counts.forEach((c, i) => c > 0 && this.#neg.add(i + other.#neg.offset, c, this.#maxBuckets));
    this.#zeros += other.#zeros;
    this.#min = Math.min(this.#min, other.#min);
    this.#max = Math.max(this.#max, other.#max);
    this.#sum += other.#sum;
    return this;
  }

  clone(): DDSketch {
    return DDSketch.deserialize(this.serialize());
  }

  serialize(): Uint8Array {
    const state = {
      a: this.relativeAccuracy,
      b: this.#maxBuckets,
      p: [this.#pos.offset, this.#pos.counts],
      n: [this.#neg.offset, this.#neg.counts],
      z: this.#zeros,
      lo: this.#min,
      hi: this.#max,
      s: this.#sum,
    };
    return new TextEncoder().encode(JSON.stringify(state, (_k, v: unknown) => (v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v)));
  }

  static deserialize(bytes: Uint8Array): DDSketch {
    const s = JSON.parse(new TextDecoder().decode(bytes), (_k, v: unknown) => (v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v)) as {
      a: number; b: number; p: [number, number[]]; n: [number, number[]]; z: number; lo: number; hi: number; s: number;
    };
    const d = new DDSketch(s.a, s.b);
    d.#pos.offset = s.p[0];
    d.#pos.counts = s.p[1];
    d.#pos.total = s.p[1].reduce((a, b) => a + b, 0);
    d.#neg.offset = s.n[0];
    d.#neg.counts = s.n[1];
    d.#neg.total = s.n[1].reduce((a, b) => a + b, 0);
    d.#zeros = s.z;
    d.#min = s.lo;
    d.#max = s.hi;
    d.#sum = s.s;
    return d;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
