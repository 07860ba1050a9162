/**
 * Group commit, the one implementation both log backends use: appends made in the same event-loop turn (and while
 * flushes run) are flushed together. At most `maxInFlight` flushes run at once (1: one at a time, in order). `flush`
 * receives the group and settles its members itself.
 */
export class GroupCommit<T> {
  readonly #flush: (group: T[]) => Promise<void>;
  readonly #maxInFlight: number;
  #queue: T[] = [];
  readonly #flushing = new Set<Promise<void>>();
  #scheduled = false;

  constructor(flush: (group: T[]) => Promise<void>, maxInFlight = 1) {
    this.#flush = flush;
    this.#maxInFlight = maxInFlight;
  }

  add(item: T): void {
    this.#queue.push(item);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushing.size >= this.#maxInFlight || this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate lets requests parsed in the same event-loop turn join this group.
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#queue.length === 0) return;
      const group = this.#queue;
      this.#queue = [];
      const flushing: Promise<void> = this.#flush(group).finally(() => {
        this.#flushing.delete(flushing);
        if (this.#queue.length > 0) this.#schedule();
      });
      this.#flushing.add(flushing);
    });
  }

  /** Resolves once everything added so far (and added meanwhile) is flushed. */
  async drain(): Promise<void> {
    while (this.#flushing.size > 0 || this.#scheduled || this.#queue.length > 0) {
      if (this.#flushing.size > 0) await Promise.all(this.#flushing);
      else await new Promise((r) => setImmediate(r));
    }
  }
}
