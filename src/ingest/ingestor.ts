import type { IngestConfig } from '../config/index.js';
import {
  eventRecordId,
  eventRecordReplayOf,
  HalflifeError,
  LifecycleState,
  MsgpackWriter,
  silentLogger,
  type Clock,
  type Logger,
} from '../core/index.js';
import { storedBeforeFailure, type AppendRecord, type Log } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterStore } from './dead-letters.js';
import { DedupWindow } from './dedup.js';
import { emptyChecked, EventChecker, MALFORMED_PREFIX, type BodyFormat, type CheckedEvents, type CheckedRejection, type ShedLevel } from './event-checker.js';
import type { IngestWorkers } from './ingest-workers.js';
import { TokenBuckets } from './token-bucket.js';
import './errors.js';

export interface IngestSource {
  /** Remote address of the client. */
  readonly address: string;
  /** The API key's id, when the request had one, and the event types it may write (null: any). */
  readonly key?: string;
  readonly types?: readonly string[] | null;
}

export interface EventError {
  /** Position of the event in the request (for NDJSON: among the non-empty lines). */
  readonly index: number;
  readonly code: string;
  readonly message: string;
  readonly path: string;
}

export interface IngestResult {
  accepted: number;
  rejected: number;
  duplicates: number;
  /** Events shed by overload (code OVERLOADED in `errors`): not stored, not dead-lettered; send them again later. */
  shed: number;
  /** The first MAX_ERRORS_LISTED errors (by index); `errorsOmitted` counts the rest. */
  errors: EventError[];
  errorsOmitted?: number;
  /** Rejected events whose dead letter was not kept: their sender is past its dead-letter budget. */
  deadLettersDropped?: number;
}

/** An answer lists at most this many event errors: a request of 10,000 bad events must not answer megabytes. */
export const MAX_ERRORS_LISTED = 100;

/** What a request may do, from the API key that sent it. */
export interface RequestPolicy {
  /** Event types the request may hold (null: any); another type refuses the request whole (FORBIDDEN). */
  readonly allowedTypes?: readonly string[] | null;
  /** A token bucket in events, by name (the key's id): over it the request is refused whole (RATE_LIMITED). */
  readonly rateLimit?: { readonly name: string; readonly eventsPerS: number; readonly burstEvents: number } | undefined;
}

/** Hot partition keys: beyond its bucket, a key's events go to the overflow partition instead of its own. */
export interface HotKeyLimit {
  readonly eventsPerS: number;
  readonly burstEvents: number;
  readonly overflowPartition: number;
}

/** What overload sheds now, and why (the signal under most pressure). */
export interface Shedding {
  readonly level: ShedLevel;
  readonly reason: string;
}

export interface ReplayResult {
  /** Dead letters that now pass and were appended to the event log. */
  replayed: number;
  /** Dead letters that still fail (they stay in the store). */
  failed: number;
  /** Dead letters replayed before (or whose event id was already accepted). */
  skipped: number;
  /** Dead letters whose event the key that sent it may not write (their type is outside its types). */
  refused: number;
}

export interface IngestorOptions {
  readonly limits: IngestConfig;
  readonly log: Log;
  readonly registry: SchemaRegistry;
  readonly deadLetters: DeadLetterStore;
  readonly clock: Clock;
  readonly logger?: Logger;
  /** Worker threads that parse and check bodies of 16 KiB or more; without them (or while none runs), this thread does. */
  readonly workers?: IngestWorkers;
  /** The current shedding decision (default: nothing is shed). */
  readonly shedding?: () => Shedding;
  readonly hotKeys?: HotKeyLimit;
}

const NO_SHEDDING: Shedding = { level: 0, reason: 'none' };

const REPLAY_CHUNK = 1000;
/**
 * When this thread checks a body itself (or replays dead letters), it lets other requests run once it has worked
 * this long, looking at the time after every event (one event costs at most ingest.maxValidationSteps).
 */
const YIELD_AFTER_MS = 5;
/**
 * Smaller bodies are checked on this thread: for a few events the trip to a worker costs more than the work, and
 * single events (browsers, markers) are answered sooner.
 */
const WORKER_MIN_BODY_BYTES = 16 * 1024;

/**
 * Envelope checks, limits, schema validation, dedup, dead-lettering and the durable append. A request is
 * answered only after its accepted events are durable under the log's fsync policy and its rejected ones are in
 * the dead-letter store.
 */
export class Ingestor {
  readonly #o: IngestorOptions;
  readonly #limits: IngestConfig;
  readonly #logger: Logger;
  readonly #dedup: DedupWindow;
  #stopWatchingIds: (() => void) | undefined;
  readonly #state = new LifecycleState('ingest');
  #replaying: Promise<unknown> = Promise.resolve();
  /**
   * Appends in flight, by event id. A repeat of an id whose first append is still in flight waits for it: if that
   * append fails, the repeat's request fails too (retryable), so the event is never acknowledged without being
   * stored.
   */
  readonly #pendingIds = new Map<string, Promise<unknown>>();
  #inFlight = 0;
  readonly #checker: EventChecker;
  readonly #keyBuckets = new TokenBuckets(0, 0);
  /** Dead-letter bytes by sender: one client sending garbage must not fill the disk (ingest.deadLetterBytesPerS). */
  readonly #letterBuckets: TokenBuckets | undefined;
  #lettersDropped = 0;
  /** Events by type, outcome and reason since start (key: type NUL result NUL reason), and dead letters by code. */
  readonly #outcomes = new Map<string, number>();
  readonly #letterCodes = new Map<string, number>();
  readonly #hotBuckets: TokenBuckets | undefined;
  #diverted = 0;
  #idle: (() => void) | undefined;

  constructor(options: IngestorOptions) {
    this.#o = options;
    this.#limits = options.limits;
    this.#logger = options.logger ?? silentLogger;
    this.#dedup = new DedupWindow(options.limits.dedupWindowMs, options.limits.dedupMaxIds);
    this.#checker = new EventChecker(options.limits, (type) => options.registry.latest(type));
    const hot = options.hotKeys;
    const letterRate = options.limits.deadLetterBytesPerS;
    this.#letterBuckets = letterRate > 0 ? new TokenBuckets(letterRate, options.limits.deadLetterBurstBytes) : undefined;
    this.#hotBuckets = hot === undefined || hot.eventsPerS <= 0 ? undefined : new TokenBuckets(hot.eventsPerS, Math.max(1, hot.burstEvents));
  }

  /** Events diverted to the overflow partition because their key was over its rate. */
  get divertedEvents(): number {
    return this.#diverted;
  }

  /** Rebuilds the dedup window from the recent log, so a retry after a restart is still recognised. */
  async start(): Promise<void> {
    this.#state.assertOpen();
    const { dedupWindowMs, dedupMaxIds } = this.#limits;
    if (dedupWindowMs <= 0 || dedupMaxIds <= 0) return;
    // A log shared with other processes (JetStream) tells of the ids they store: a retry sent here is recognised too.
    this.#stopWatchingIds = this.#o.log.watchIds?.((ids, timestampMs) => {
      for (const id of ids) this.#dedup.remember(id, timestampMs);
    });
    const log = this.#o.log;
    const now = this.#o.clock.now();
    const perPartition = Math.ceil(dedupMaxIds / log.partitionCount);
    const replayedIds: number[] = [];
    let ids = 0;
    for (const p of log.stats().partitions) {
      let from = await this.#recentStart(p.partition, now - dedupWindowMs, now, perPartition);
      while (from < p.nextOffset) {
        const batch = await log.read(p.partition, from, { maxRecords: 5000, maxBytes: 8 * 1024 * 1024 });
        if (batch.length === 0) break;
        for (const r of batch) {
          const id = eventRecordId(r.value);
          if (id !== undefined) {
            this.#dedup.remember(id, r.timestampMs);
            ids++;
          }
          const replayOf = eventRecordReplayOf(r.value);
          if (replayOf !== undefined && !this.#o.deadLetters.isReplayed(replayOf)) replayedIds.push(replayOf);
        }
        from = batch[batch.length - 1].next;
      }
    }
    // A crash between a replay's append and its ledger entry: finish the ledger now.
    await this.#o.deadLetters.markReplayed(replayedIds);
    if (ids > 0) this.#logger.info({ ids }, 'dedup window rebuilt from the log');
  }

  /**
   * Where to start reading a partition to see its records since `sinceMs`, but at most about `max` of them (the
   * newest): positions are not counts, so this searches by time for the point `lag` says is close enough.
   */
  async #recentStart(partition: number, sinceMs: number, nowMs: number, max: number): Promise<number> {
    const log = this.#o.log;
    let from = await log.offsetForTime(partition, sinceMs);
    if (log.lag(partition, from) <= max) return from;
    let lo = sinceMs;
    let hi = Math.max(nowMs, sinceMs + 1);
    from = await log.offsetForTime(partition, hi);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      const at = await log.offsetForTime(partition, mid);
      if (log.lag(partition, at) > max) lo = mid;
      else {
        hi = mid;
        from = at;
      }
    }
    return from;
  }

  /**
   * Ingests a request body. A JSON body that does not parse is dead-lettered (bounded) and answered with
   * `MALFORMED_JSON`; in NDJSON only the bad lines are rejected. A large body is parsed and checked on an ingest
   * worker thread when there is one; its bytes are then handed over, and `body` is empty afterwards.
   */
  ingestBody(body: Buffer, format: BodyFormat, source: IngestSource, policy: RequestPolicy = {}): Promise<IngestResult> {
    this.#state.assertOpen();
    const receivedAt = this.#o.clock.now();
    const allowedTypes = policy.allowedTypes ?? null;
    const limit = policy.rateLimit;
    // An empty bucket refuses before the body is parsed; a request larger than what is left, once it is counted.
    if (limit !== undefined && this.#bucket(limit, receivedAt).available(receivedAt) < 1) {
      return Promise.reject(this.#rateLimited(limit, 1, receivedAt));
    }
    const workers = this.#o.workers;
    const shedding = this.#o.shedding?.() ?? NO_SHEDDING;
    const checked =
      workers !== undefined && workers.available && body.length >= WORKER_MIN_BODY_BYTES
        ? workers.check(body, format, receivedAt, allowedTypes, shedding.level)
        : this.#checkHere(body, format, receivedAt, allowedTypes, shedding.level);
    return this.#track(
      checked.then((c) => {
        if (limit !== undefined) {
          const events = c.ends.length + c.rejections.length + c.shed.length;
          if (!this.#bucket(limit, receivedAt).take(events, receivedAt)) throw this.#rateLimited(limit, events, receivedAt);
        }
        return this.#ingest(c, receivedAt, source, shedding);
      }),
    );
  }

  #bucket(limit: NonNullable<RequestPolicy['rateLimit']>, nowMs: number) {
    return this.#keyBuckets.get(limit.name, nowMs, limit.eventsPerS, Math.max(1, limit.burstEvents));
  }

  #rateLimited(limit: NonNullable<RequestPolicy['rateLimit']>, events: number, nowMs: number): HalflifeError {
    const retryAfterS = this.#bucket(limit, nowMs).retryAfterS(events, nowMs);
    return new HalflifeError('RATE_LIMITED', {
      rate: limit.eventsPerS,
      burst: limit.burstEvents,
      events,
      retryAfterS: Number.isFinite(retryAfterS) ? retryAfterS : 'never (more events than the burst: split the request)',
    });
  }

  /**
   * Events since start by type and outcome: `accepted`, `duplicate`, `rejected` (reason: the code), `shed` (reason:
   * the overload signal). Events that could not be read as events (a body that is not JSON) have type `(none)`;
   * events of a type without a schema, `(unregistered)`.
   */
  outcomes(): { type: string; result: string; reason: string; count: number }[] {
    return [...this.#outcomes].map(([k, count]) => {
      const [type, result, reason] = k.split('\u0000');
      return { type, result, reason, count };
    });
  }

  /** Dead letters written since start, by code. */
  deadLetterCounts(): Record<string, number> {
    return Object.fromEntries(this.#letterCodes);
  }

  #count(type: string, result: string, reason: string, n = 1): void {
    // A type without a schema could be any string a client sends (2,000 unique 20 KB names held 37 MB for good):
    // they are all counted as one, so the counters stay as few as the registered types.
    const label = type === '(none)' || this.#o.registry.latest(type) !== undefined ? type : '(unregistered)';
    const k = `${label}\u0000${result}\u0000${reason}`;
    this.#outcomes.set(k, (this.#outcomes.get(k) ?? 0) + n);
  }

  /** Events shed by overload so far, by type and reason. */
  shedCounts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const o of this.outcomes()) if (o.result === 'shed') (out[o.type] ??= {})[o.reason] = o.count;
    return out;
  }

  /**
   * Checks a body on this thread (small bodies, or any with ingest.workers 0), letting other requests in every few
   * milliseconds. What one event can cost is bounded: schema patterns run on a linear-time engine (RE2, see
   * schema/linear-regexp.ts), uniqueItems in linear time, and a metered schema (see CompiledSchema) at most
   * ingest.maxValidationSteps / ingest.maxValidationMs. Events of metered types go to a worker; while none runs (one
   * is being replaced) they are refused, retryable, rather than checked here. ingest.workerTimeoutMs bounds the
   * whole request here as on a worker.
   */
  async #checkHere(body: Buffer, format: BodyFormat, receivedAt: number, allowedTypes: readonly string[] | null, shed: ShedLevel): Promise<CheckedEvents> {
    const items = this.#checker.parse(body, format);
    if (!Array.isArray(items)) return 'tooMany' in items ? { ...emptyChecked(), tooMany: items.tooMany } : { ...emptyChecked(), malformed: items };
    const workers = this.#o.workers;
    if (workers !== undefined && items.some((item) => this.#metered(item.value))) {
      if (!workers.available) throw new HalflifeError('INGEST_WORKER_FAILED', { reason: 'no worker is running (a stopped one is being replaced)' });
      return workers.check(body, format, receivedAt, allowedTypes, shed);
    }
    const out = emptyChecked();
    const w = new MsgpackWriter(Math.max(4096, body.length));
    const budgetMs = this.#limits.workerTimeoutMs;
    const started = performance.now();
    let sliceStart = started;
    for (let i = 0; i < items.length; i++) {
      this.#checker.checkItems(items, i, i + 1, receivedAt, w, out, allowedTypes, shed);
      if (out.forbiddenType !== undefined) break;
      if (performance.now() - started > budgetMs) throw new HalflifeError('INGEST_TIMEOUT', { budgetMs });
      if (performance.now() - sliceStart >= YIELD_AFTER_MS) {
        // Let other requests (view queries, health checks) in between.
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
    out.records = w.buffer.subarray(0, w.pos);
    return out;
  }

  /** Whether an input item is an event of a type whose validation is metered, as it may be costly (see CompiledSchema). */
  #metered(value: unknown): boolean {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'type')) return false;
    const type = (value as { type: unknown }).type;
    return typeof type === 'string' && this.#o.registry.latest(type)?.metered === true;
  }

  async #ingest(checked: CheckedEvents, receivedAt: number, source: IngestSource, shedding: Shedding): Promise<IngestResult> {
    if (checked.malformed !== undefined) {
      const m = checked.malformed;
      this.#count('(none)', 'rejected', m.code);
      const letter = this.#deadLetter(m, receivedAt, source);
      if (this.#budget(letter, source, receivedAt)) await this.#o.deadLetters.add([letter]);
      throw new HalflifeError('MALFORMED_JSON', { reason: m.message.slice(MALFORMED_PREFIX.length) });
    }
    if (checked.tooMany !== undefined) {
      // Refused whole, before any event is checked: nothing is stored or dead-lettered.
      this.#count('(none)', 'rejected', 'TOO_MANY_EVENTS', checked.tooMany);
      throw new HalflifeError('TOO_MANY_EVENTS', { count: checked.tooMany, max: this.#limits.maxEventsPerRequest });
    }
    if (checked.forbiddenType !== undefined) {
      // Nothing of the request is stored or dead-lettered: the key may not send it.
      throw new HalflifeError('FORBIDDEN', { reason: `it may not send events of type ${checked.forbiddenType}` });
    }
    if (checked.shed.length > 0) {
      for (const { type } of checked.shed) this.#count(type, 'shed', shedding.reason);
      // Nothing of the request would be stored: refuse it whole (no dead letters either), so a retry sends it all.
      if (checked.ends.length === 0) {
        throw new HalflifeError('OVERLOADED', { reason: shedding.reason, priority: shedding.level === 1 ? 'low' : 'low- and normal', shed: checked.shed.length });
      }
    }
    const result: IngestResult = { accepted: 0, rejected: checked.rejections.length, duplicates: 0, shed: checked.shed.length, errors: [] };
    const letters: DeadLetter[] = [];
    for (const r of checked.rejections) {
      this.#count(r.type ?? '(none)', 'rejected', r.code);
      result.errors.push({ index: r.index, code: r.code, message: r.message, path: r.path });
      const letter = this.#deadLetter(r, receivedAt, source);
      if (this.#budget(letter, source, receivedAt)) letters.push(letter);
      else result.deadLettersDropped = (result.deadLettersDropped ?? 0) + 1;
    }
    if (checked.shed.length > 0) {
      const message = new HalflifeError('OVERLOADED', { reason: shedding.reason, priority: shedding.level === 1 ? 'low' : 'low- and normal' }).message;
      for (const s of checked.shed) result.errors.push({ index: s.index, code: 'OVERLOADED', message, path: '$.type' });
      result.errors.sort((a, b) => a.index - b.index);
    }
    const { records: buf, ends, keys } = checked;
    const records: AppendRecord[] = [];
    const recordTypes: string[] = [];
    const ids: string[] = [];
    let waitFor: Set<Promise<unknown>> | undefined;
    for (let r = 0, start = 0; r < ends.length; start = ends[r], r++) {
      const id = checked.ids[r];
      if (id !== undefined) {
        if (this.#dedup.checkAndAdd(id, receivedAt)) {
          result.duplicates++;
          this.#count(checked.types[r], 'duplicate', '');
          const pending = this.#pendingIds.get(id);
          if (pending !== undefined) (waitFor ??= new Set()).add(pending);
          continue;
        }
        ids.push(id);
      }
      const key = keys[r];
      recordTypes.push(checked.types[r]);
      // A hot key beyond its bucket goes to the overflow partition: its events are kept, its partition stays fair.
      if (key !== undefined && this.#hotBuckets !== undefined && !this.#hotBuckets.get(key, receivedAt).take(1, receivedAt)) {
        this.#diverted++;
        records.push({ key, timestampMs: receivedAt, value: buf.subarray(start, ends[r]), partition: this.#o.hotKeys!.overflowPartition, id });
      } else records.push({ key, timestampMs: receivedAt, value: buf.subarray(start, ends[r]), id });
    }
    const appended = this.#o.log.append(records);
    for (const id of ids) this.#pendingIds.set(id, appended);
    try {
      await Promise.all([appended, this.#o.deadLetters.add(letters)]);
    } catch (err) {
      // Nothing of this request is acknowledged: let the client's retry through the dedup window, but for events the
      // log stored nonetheless (a retry of those is a duplicate).
      const stored = storedBeforeFailure(err);
      this.#dedup.forget(stored.size === 0 ? ids : records.flatMap((r, i) => (r.id !== undefined && !stored.has(i) ? [r.id] : [])));
      throw err;
    } finally {
      for (const id of ids) if (this.#pendingIds.get(id) === appended) this.#pendingIds.delete(id);
    }
    // A duplicate is acknowledged only once its original is durable.
    if (waitFor !== undefined) await Promise.all(waitFor);
    result.accepted = records.length;
    for (const l of letters) this.#letterCodes.set(l.code, (this.#letterCodes.get(l.code) ?? 0) + 1);
    // Counted once durable: a failed append acknowledged nothing. Per type per request, not per event.
    const perType = new Map<string, number>();
    for (const t of recordTypes) perType.set(t, (perType.get(t) ?? 0) + 1);
    for (const [t, n] of perType) this.#count(t, 'accepted', '', n);
    if (result.errors.length > MAX_ERRORS_LISTED) {
      result.errorsOmitted = result.errors.length - MAX_ERRORS_LISTED;
      result.errors.length = MAX_ERRORS_LISTED;
    }
    return result;
  }

  /** Whether the sender's dead-letter budget has room for this letter (counted as dropped when not). */
  #budget(letter: DeadLetter, source: IngestSource, nowMs: number): boolean {
    if (this.#letterBuckets === undefined) return true;
    const bytes = letter.raw.length + letter.message.length + 256;
    if (this.#letterBuckets.get(source.key ?? `address ${source.address}`, nowMs).take(bytes, nowMs)) return true;
    this.#lettersDropped++;
    return false;
  }

  /** Dead letters not kept since start because their sender was past its budget. */
  get deadLettersDropped(): number {
    return this.#lettersDropped;
  }

  #deadLetter(r: CheckedRejection, receivedAt: number, source: IngestSource): DeadLetter {
    return {
      raw: r.raw,
      raw_truncated: r.rawTruncated,
      ...(r.rawEncoding === undefined ? {} : { raw_encoding: r.rawEncoding }),
      code: r.code,
      message: r.message,
      path: r.path,
      type: r.type,
      schema_version: r.schemaVersion,
      received_at: receivedAt,
      source: { address: source.address, ...(source.key === undefined ? {} : { key: source.key }), ...(source.types === undefined ? {} : { types: source.types }) },
    };
  }

  /**
   * Re-validates matching dead letters against the current schemas and appends those that now pass, each at
   * most once ever: the replay ledger records them, and a crash between the append and the ledger entry is
   * repaired at start from the events' `replay_of`.
   */
  replayDeadLetters(filter: DeadLetterFilter): Promise<ReplayResult> {
    this.#state.assertOpen();
    const run = this.#replaying.then(() => this.#track(this.#replay(filter)));
    this.#replaying = run.catch(() => {});
    return run;
  }

  async #replay(filter: DeadLetterFilter): Promise<ReplayResult> {
    const result: ReplayResult = { replayed: 0, failed: 0, skipped: 0, refused: 0 };
    const store = this.#o.deadLetters;
    let w = new MsgpackWriter(64 * 1024);
    let records: { key: string | undefined; timestampMs: number; start: number; end: number; id: string | undefined }[] = [];
    let letterIds: number[] = [];
    let skippedIds: number[] = [];
    const flush = async () => {
      const buf = w.buffer;
      await this.#o.log.append(records.map((r) => ({ key: r.key, timestampMs: r.timestampMs, value: buf.subarray(r.start, r.end), id: r.id })));
      w = new MsgpackWriter(64 * 1024);
      await store.markReplayed([...letterIds, ...skippedIds]);
      result.replayed += letterIds.length;
      records = [];
      letterIds = [];
      skippedIds = [];
    };
    let sliceStart = performance.now();
    await store.scan(filter, async (letter) => {
      // Each letter is validated on this thread (a metered schema: up to ingest.maxValidationMs): let requests in.
      if (performance.now() - sliceStart >= YIELD_AFTER_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
      if (letter.replayed) {
        result.skipped++;
        return true;
      }
      if (letter.raw_truncated || letter.raw_encoding !== undefined) {
        result.failed++;
        return true;
      }
      let value: unknown;
      try {
        value = JSON.parse(letter.raw);
      } catch {
        result.failed++;
        return true;
      }
      const start = w.pos;
      const outcome = this.#checker.check(value, w, letter.received_at, letter.id);
      if (outcome.kind === 'rejected') {
        result.failed++;
        return true;
      }
      // The sending key's limits hold for its letters too: a replay must not store what it could not.
      const allowed = letter.source.types;
      if (allowed !== undefined && allowed !== null && !allowed.includes(outcome.type)) {
        w.pos = start;
        result.refused++;
        return true;
      }
      if (outcome.id !== undefined && this.#dedup.checkAndAdd(outcome.id, this.#o.clock.now())) {
        w.pos = start;
        result.skipped++;
        skippedIds.push(letter.id);
        return true;
      }
      records.push({ key: outcome.key, timestampMs: letter.received_at, start, end: w.pos, id: outcome.id });
      letterIds.push(letter.id);
      if (records.length >= REPLAY_CHUNK) await flush();
      return true;
    });
    await flush();
    if (result.replayed > 0) this.#logger.info({ ...result }, 'dead letters replayed');
    return result;
  }

  async #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await work;
    } finally {
      if (--this.#inFlight === 0) this.#idle?.();
    }
  }

  /** Stops taking new requests and waits for in-flight ones to be durable. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#stopWatchingIds?.();
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    });
  }
}
