/**
 * A token bucket: `ratePerS` tokens a second, up to `burst` saved. Time comes from the caller (ms), so tests and
 * replays are deterministic.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    readonly ratePerS: number,
    readonly burst: number,
    nowMs: number,
  ) {
    this.#tokens = burst;
    this.#last = nowMs;
  }

  #refill(nowMs: number): void {
    if (nowMs > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((nowMs - this.#last) * this.ratePerS) / 1000);
      this.#last = nowMs;
    }
  }

  /** Tokens there now. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  /** Takes `n` tokens if there are that many (all or none). */
  take(n: number, nowMs: number): boolean {
    this.#refill(nowMs);
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Seconds until `n` tokens are there (at least 1; Infinity when `n` exceeds the burst). */
  retryAfterS(n: number, nowMs: number): number {
    this.#refill(nowMs);
    if (n > this.burst) return Infinity;
    return Math.max(1, Math.ceil((n - this.#tokens) / this.ratePerS));
  }
}

/**
 * Token buckets by name (API key ids, partition keys), at most `maxBuckets` of them: past that the least recently
 * used go (a forgotten key starts again with a full burst, which errs on the side of accepting).
 */
export class TokenBuckets {
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(
    readonly ratePerS: number,
    readonly burst: number,
    readonly maxBuckets = 100_000,
  ) {}

  get(name: string, nowMs: number, ratePerS = this.ratePerS, burst = this.burst): TokenBucket {
    let b = this.#buckets.get(name);
    if (b !== undefined) {
      // Most recently used last: Map keeps insertion order.
      this.#buckets.delete(name);
      this.#buckets.set(name, b);
      if (b.ratePerS === ratePerS && b.burst === burst) return b;
    }
    b = new TokenBucket(ratePerS, burst, nowMs);
    this.#buckets.set(name, b);
    if (this.#buckets.size > this.maxBuckets) this.#buckets.delete(this.#buckets.keys().next().value!);
    return b;
  }

  get size(): number {
    return this.#buckets.size;
  }
}
