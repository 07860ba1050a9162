/**
 * A histogram over fixed bucket bounds, as Prometheus exposes them: cheap to observe on a hot path, plain data to
 * send between threads, and mergeable (the engine's workers each keep one; the server adds them up).
 */
export interface HistogramSnapshot {
  /** Upper bounds of the buckets, ascending; a last bucket (+Inf) follows. */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative), one more than `bounds`. */
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export class BucketHistogram {
  readonly bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.#counts[i]++;
    this.#sum += v;
    this.#count++;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: this.bounds, counts: [...this.#counts], sum: this.#sum, count: this.#count };
  }

  /** The sum of snapshots over the same bounds. */
  static merge(snapshots: readonly HistogramSnapshot[], bounds: readonly number[]): HistogramSnapshot {
    const counts = new Array<number>(bounds.length + 1).fill(0);
    let sum = 0;
    let count = 0;
    for (const s of snapshots) {
      s.counts.forEach((c, i) => (counts[i] += c));
      sum += s.sum;
      count += s.count;
    }
    return { bounds, counts, sum, count };
  }
}

/** Freshness bounds in seconds: from a few milliseconds to a minute. */
export const FRESHNESS_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
