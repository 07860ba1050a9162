/**
 * Group commit, the one implementation both log backends use: appends made in the same event-loop turn (and while
 * a flush runs) are flushed together, one flush at a time, in order. `flush` receives the group and settles its
 * members itself.
 */
export class GroupCommit<T> {
  readonly #flush: (group: T[]) => Promise<void>;
  #queue: T[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;

  constructor(flush: (group: T[]) => Promise<void>) {
    this.#flush = flush;
  }

  add(item: T): void {
    this.#queue.push(item);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushing !== undefined || this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate lets requests parsed in the same event-loop turn join this group.
    setImmediate(() => {
      this.#scheduled = false;
      const group = this.#queue;
      this.#queue = [];
      this.#flushing = this.#flush(group).finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length > 0) this.#schedule();
      });
    });
  }

  /** Resolves once everything added so far (and added meanwhile) is flushed. */
  async drain(): Promise<void> {
    while (this.#flushing !== undefined || this.#scheduled || this.#queue.length > 0) {
      if (this.#flushing !== undefined) await this.#flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }
}
