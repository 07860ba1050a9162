/** Time source. Components read time only from a Clock so tests can drive it. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
}

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  #nowMs: number;
  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs;
  }
  now(): number {
    return this.#nowMs;
  }
  advance(ms: number): void {
    this.#nowMs += ms;
  }
  set(ms: number): void {
    this.#nowMs = ms;
  }
}
