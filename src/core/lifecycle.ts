import { HalflifeError } from './errors.js';

/** The shape every component has: explicit start, idempotent close. */
export interface Lifecycle {
  start(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/**
 * Tracks a component's state. `close()` runs the closer once; later calls return the same promise.
 * Work attempted after close throws `COMPONENT_CLOSED`.
 */
export class LifecycleState {
  readonly #component: string;
  #closing: Promise<void> | undefined;

  constructor(component: string) {
    this.#component = component;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  assertOpen(): void {
    if (this.#closing !== undefined) {
      throw new HalflifeError('COMPONENT_CLOSED', { component: this.#component });
    }
  }

  close(closer: () => Promise<void>): Promise<void> {
    this.#closing ??= closer();
    return this.#closing;
  }
}
