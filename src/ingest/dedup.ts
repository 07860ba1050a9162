/**
 * Remembers event ids for a time window, in bounded memory. Ids are kept in arrival order in a queue beside the
 * lookup Map, so expired ids are always at the queue's head; beyond `maxIds` the oldest ids are forgotten first (a
 * repeat arriving after that is stored again, which the metrics and docs call out).
 *
 * The order is not taken from the Map itself: V8 leaves a deleted entry as a hole that iteration from the start
 * skips, so "delete the oldest" through `keys().next()` rescanned every hole and turned quadratic once the window
 * was full (500,000 ids past dedupMaxIds took 208 s instead of 0.4 s).
 */
export class DedupWindow {
  readonly #windowMs: number;
  readonly #maxIds: number;
  /** Id -> when it expires. */
  readonly #seen = new Map<string, number>();
  /** Ids and their expiry in arrival order, from `#head` on; an entry is stale when the Map holds another expiry. */
  #ids: string[] = [];
  #expiries: number[] = [];
  #head = 0;

  constructor(windowMs: number, maxIds: number) {
    this.#windowMs = windowMs;
    this.#maxIds = maxIds;
  }

  get size(): number {
    return this.#seen.size;
  }

  /** True when `id` was seen within the window; otherwise records it (seen at `nowMs`) and returns false. */
  checkAndAdd(id: string, nowMs: number): boolean {
    if (this.#windowMs <= 0 || this.#maxIds <= 0) return false;
    this.#expire(nowMs);
    const expires = this.#seen.get(id);
    if (expires !== undefined && expires > nowMs) return true;
    this.#add(id, nowMs + this.#windowMs);
    return false;
  }

  /** Records an id seen at `seenAtMs` (used to rebuild the window from the log after a restart). */
  remember(id: string, seenAtMs: number): void {
    if (this.#windowMs <= 0 || this.#maxIds <= 0) return;
    this.#add(id, seenAtMs + this.#windowMs);
  }

  /** Forgets ids whose append failed, so a retry is stored rather than reported as a duplicate. */
  forget(ids: readonly string[]): void {
    for (const id of ids) this.#seen.delete(id);
  }

  #add(id: string, expires: number): void {
    this.#seen.set(id, expires);
    this.#ids.push(id);
    this.#expiries.push(expires);
    while (this.#seen.size > this.#maxIds) this.#pop();
    this.#compact();
  }

  #expire(nowMs: number): void {
    while (this.#head < this.#ids.length && this.#expiries[this.#head] <= nowMs) this.#pop();
  }

  /** Drops the queue's oldest entry, and its id from the Map unless the id was recorded again since. */
  #pop(): void {
    const id = this.#ids[this.#head];
    if (this.#seen.get(id) === this.#expiries[this.#head]) this.#seen.delete(id);
    this.#head++;
  }

  /** Drops the queue's consumed head once it is most of the arrays (amortised O(1) per id). */
  #compact(): void {
    if (this.#head < 1024 || this.#head * 2 < this.#ids.length) return;
    this.#ids = this.#ids.slice(this.#head);
    this.#expiries = this.#expiries.slice(this.#head);
    this.#head = 0;
  }
}
