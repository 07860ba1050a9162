/**
 * Remembers event ids for a time window, in bounded memory. Insertion order is arrival order, so expired ids
 * are always at the head of the Map; beyond `maxIds` the oldest ids are forgotten first (a repeat arriving
 * after that is stored again, which the metrics and docs call out).
 */
export class DedupWindow {
  readonly #windowMs: number;
  readonly #maxIds: number;
  readonly #seen = new Map<string, number>();

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
    this.#seen.delete(id);
    this.#seen.set(id, nowMs + this.#windowMs);
    if (this.#seen.size > this.#maxIds) this.#seen.delete(this.#seen.keys().next().value as string);
    return false;
  }

  /** Records an id seen at `seenAtMs` (used to rebuild the window from the log after a restart). */
  remember(id: string, seenAtMs: number): void {
    if (this.#windowMs <= 0 || this.#maxIds <= 0) return;
    this.#seen.delete(id);
    this.#seen.set(id, seenAtMs + this.#windowMs);
    if (this.#seen.size > this.#maxIds) this.#seen.delete(this.#seen.keys().next().value as string);
  }

  /** Forgets ids whose append failed, so a retry is stored rather than reported as a duplicate. */
  forget(ids: readonly string[]): void {
    for (const id of ids) this.#seen.delete(id);
  }

  #expire(nowMs: number): void {
    for (const [id, expires] of this.#seen) {
      if (expires > nowMs) break;
      this.#seen.delete(id);
    }
  }
}
