/**
 * Readers waiting for records, per partition: what `LogReader.tail` is built on in every backend. A backend calls
 * `notify(partition)` once new records of it are readable; each waiter checks its condition again then.
 */
export class TailWaiters {
  readonly #waiting: Set<Waiter>[];
  #closed = false;

  constructor(partitions: number) {
    this.#waiting = Array.from({ length: partitions }, () => new Set<Waiter>());
  }

  /**
   * Resolves true once `ready()` holds (checked now and at each `notify` of the partition), false when `signal`
   * aborts or `close` is called first.
   */
  wait(partition: number, ready: () => boolean, signal?: AbortSignal): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    if (this.#closed || signal?.aborted === true) return Promise.resolve(false);
    const set = this.#waiting[partition];
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        ready,
        done: (v) => {
          set.delete(w);
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
      };
      const onAbort = () => w.done(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(w);
    });
  }

  notify(partition: number): void {
    const set = this.#waiting[partition];
    if (set === undefined || set.size === 0) return;
    for (const w of [...set]) if (w.ready()) w.done(true);
  }

  /** Releases every waiter (false) and refuses new waits. */
  close(): void {
    this.#closed = true;
    for (const set of this.#waiting) for (const w of [...set]) w.done(false);
  }
}

interface Waiter {
  readonly ready: () => boolean;
  readonly done: (value: boolean) => void;
}
