import { LifecycleState, type Clock } from '../core/index.js';
import type { Log as EventLog } from '../log/index.js';

/** One rejected input, as stored and as listed by GET /v1/deadletters. */
export interface DeadLetter {
  /** The input: the event as JSON, or the raw body/line for malformed input; cut at the configured bound. */
  raw: string;
  raw_truncated: boolean;
  /** 'base64' when the input was not valid UTF-8 (`raw` holds its bytes); such a letter is never replayed. */
  raw_encoding?: 'base64';
  code: string;
  message: string;
  path: string;
  /** The event type when it could be read. */
  type: string | null;
  /** The schema version validated against, when there was one. */
  schema_version: number | null;
  received_at: number;
  source: {
    address: string;
    /** The API key that sent it, and the event types that key may write (null: any), enforced again on replay. */
    key?: string;
    types?: readonly string[] | null;
  };
}

export interface StoredDeadLetter extends DeadLetter {
  /** Position in the dead-letter log: the dead letter's stable id. */
  id: number;
  /** True once replayed into the event log. */
  replayed: boolean;
}

export interface DeadLetterFilter {
  readonly type?: string | undefined;
  readonly code?: string | undefined;
  /** Only dead letters received at or after this time (ms). */
  readonly sinceMs?: number | undefined;
  /** Only dead letters with id >= this (a cursor from a previous page). */
  readonly fromId?: number | undefined;
}

/**
 * The dead-letter store: an append-only log (one partition) of rejected inputs, plus a ledger log of the ids
 * already replayed, so that a dead letter is replayed at most once ever.
 */
export class DeadLetterStore {
  readonly #log: EventLog;
  readonly #ledger: EventLog;
  readonly #replayed = new Set<number>();
  readonly #state = new LifecycleState('dead-letter store');
  readonly #clock: Clock;

  constructor(log: EventLog, ledger: EventLog, clock: Clock) {
    this.#log = log;
    this.#ledger = ledger;
    this.#clock = clock;
  }

  /** Loads the replay ledger. The logs themselves are started by their owner. */
  async start(): Promise<void> {
    this.#state.assertOpen();
    let from = 0;
    for (;;) {
      const batch = await this.#ledger.read(0, from, { maxRecords: 10_000 });
      if (batch.length === 0) break;
      for (const r of batch) this.#replayed.add(Number(Buffer.from(r.value).toString('utf8')));
      from = batch[batch.length - 1].next;
    }
  }

  async add(letters: readonly DeadLetter[]): Promise<void> {
    this.#state.assertOpen();
    if (letters.length === 0) return;
    await this.#log.append(
      letters.map((l) => ({ timestampMs: l.received_at, value: JSON.stringify(l), partition: 0 })),
    );
  }

  get count(): number {
    const p = this.#log.stats().partitions[0];
    return p === undefined ? 0 : p.records;
  }

  isReplayed(id: number): boolean {
    return this.#replayed.has(id);
  }

  /** Marks dead letters as replayed, durably, before the replay reports them. */
  async markReplayed(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#ledger.append(ids.map((id) => ({ timestampMs: this.#clock.now(), value: String(id), partition: 0 })));
    for (const id of ids) this.#replayed.add(id);
  }

  /**
   * Dead letters matching `filter`, oldest first, at most `limit`; `next` is the id to continue from.
   * Scans from the time index when `sinceMs` is given.
   */
  async list(filter: DeadLetterFilter, limit: number): Promise<{ deadletters: StoredDeadLetter[]; next: number | null }> {
    const out: StoredDeadLetter[] = [];
    let next: number | null = null;
    await this.scan(filter, (letter) => {
      if (out.length >= limit) {
        next = letter.id;
        return false;
      }
      out.push(letter);
      return true;
    });
    return { deadletters: out, next };
  }

  /** Visits matching dead letters in order until `visit` returns false. */
  async scan(filter: DeadLetterFilter, visit: (letter: StoredDeadLetter) => boolean | Promise<boolean>): Promise<void> {
    this.#state.assertOpen();
    let from = filter.fromId ?? 0;
    if (filter.sinceMs !== undefined) from = Math.max(from, await this.#log.offsetForTime(0, filter.sinceMs));
    const end = this.#log.stats().partitions[0].nextOffset;
    while (from < end) {
      const batch = await this.#log.read(0, from, { maxRecords: 1000 });
      if (batch.length === 0) break;
      for (const r of batch) {
        if (r.offset >= end) return;
        const letter = JSON.parse(Buffer.from(r.value).toString('utf8')) as StoredDeadLetter;
        letter.id = r.offset;
        letter.replayed = this.#replayed.has(r.offset);
        if (filter.type !== undefined && letter.type !== filter.type) continue;
        if (filter.code !== undefined && letter.code !== filter.code) continue;
        if (filter.sinceMs !== undefined && letter.received_at < filter.sinceMs) continue;
        if (!(await visit(letter))) return;
      }
      from = batch[batch.length - 1].next;
    }
  }

  close(): Promise<void> {
    return this.#state.close(async () => {});
  }
}
