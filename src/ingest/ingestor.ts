import type { IngestConfig } from '../config/index.js';
import {
  eventRecordId,
  HalflifeError,
  LifecycleState,
  MsgpackWriter,
  eventRecordReplayOf,
  silentLogger,
  TooDeepError,
  writeEventRecord,
  type Clock,
  type Logger,
} from '../core/index.js';
import type { AppendRecord, Log } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterStore } from './dead-letters.js';
import { DedupWindow } from './dedup.js';
import { checkEnvelope, type Rejection } from './envelope.js';
import './errors.js';

export interface IngestSource {
  /** Remote address of the client. */
  readonly address: string;
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
  errors: EventError[];
}

export interface ReplayResult {
  /** Dead letters that now pass and were appended to the event log. */
  replayed: number;
  /** Dead letters that still fail (they stay in the store). */
  failed: number;
  /** Dead letters replayed before (or whose event id was already accepted). */
  skipped: number;
}

export type BodyFormat = 'json' | 'ndjson';

export interface IngestorOptions {
  readonly limits: IngestConfig;
  readonly log: Log;
  readonly registry: SchemaRegistry;
  readonly deadLetters: DeadLetterStore;
  readonly clock: Clock;
  readonly logger?: Logger;
}

/**
 * One input item: a parsed value (with its line's bytes for NDJSON, kept for its dead letter), or input that was
 * refused before parsing (`rejection`).
 */
type Item =
  | { value: unknown; raw: Uint8Array | undefined; rejection?: undefined }
  | { value?: undefined; raw: Uint8Array; rejection: Rejection };

const REPLAY_CHUNK = 1000;
/** Bounds of the per-request record buffer's first size, which follows what the previous request wrote. */
const MIN_WRITER_BYTES = 4 * 1024;
const MAX_WRITER_BYTES = 8 * 1024 * 1024;
/** Events checked between two chances for other requests to run. */
const YIELD_EVERY = 250;

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
  readonly #state = new LifecycleState('ingest');
  #replaying: Promise<unknown> = Promise.resolve();
  /**
   * Appends in flight, by event id. A repeat of an id whose first append is still in flight waits for it: if that
   * append fails, the repeat's request fails too (retryable), so the event is never acknowledged without being
   * stored.
   */
  readonly #pendingIds = new Map<string, Promise<unknown>>();
  #inFlight = 0;
  #writerBytes = MIN_WRITER_BYTES;
  #idle: (() => void) | undefined;

  constructor(options: IngestorOptions) {
    this.#o = options;
    this.#limits = options.limits;
    this.#logger = options.logger ?? silentLogger;
    this.#dedup = new DedupWindow(options.limits.dedupWindowMs, options.limits.dedupMaxIds);
  }

  /** Rebuilds the dedup window from the recent log, so a retry after a restart is still recognised. */
  async start(): Promise<void> {
    this.#state.assertOpen();
    const { dedupWindowMs, dedupMaxIds } = this.#limits;
    if (dedupWindowMs <= 0 || dedupMaxIds <= 0) return;
    const log = this.#o.log;
    const now = this.#o.clock.now();
    const perPartition = Math.ceil(dedupMaxIds / log.partitionCount);
    const replayedIds: number[] = [];
    let ids = 0;
    for (const p of log.stats().partitions) {
      let from = Math.max(p.firstOffset, p.nextOffset - perPartition, await log.offsetForTime(p.partition, now - dedupWindowMs));
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
        from = batch[batch.length - 1].offset + 1;
      }
    }
    // A crash between a replay's append and its ledger entry: finish the ledger now.
    await this.#o.deadLetters.markReplayed(replayedIds);
    if (ids > 0) this.#logger.info({ ids }, 'dedup window rebuilt from the log');
  }

  /**
   * Ingests a request body. A JSON body that does not parse is dead-lettered (bounded) and answered with
   * `MALFORMED_JSON`; in NDJSON only the bad lines are rejected.
   */
  async ingestBody(body: Buffer, format: BodyFormat, source: IngestSource): Promise<IngestResult> {
    this.#state.assertOpen();
    const receivedAt = this.#o.clock.now();
    let items: Item[];
    if (format === 'ndjson') items = this.#splitNdjson(body);
    else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (err) {
        const reason = (err as Error).message;
        const rejection = { code: 'MALFORMED_JSON', message: `the body is not valid JSON: ${reason}`, path: '$' };
        await this.#track(this.#o.deadLetters.add([this.#deadLetter(body, rejection, null, null, receivedAt, source)]));
        throw new HalflifeError('MALFORMED_JSON', { reason });
      }
      const values = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
      items = new Array<Item>(values.length);
      for (let i = 0; i < values.length; i++) items[i] = { value: values[i], raw: undefined };
    }
    return this.#track(this.#ingest(items, receivedAt, source));
  }

  #splitNdjson(body: Buffer): Item[] {
    const items: Item[] = [];
    const max = this.#limits.maxEventBytes;
    let start = 0;
    let lineNo = 0;
    while (start < body.length) {
      let end = body.indexOf(0x0a, start);
      if (end < 0) end = body.length;
      lineNo++;
      let s = start;
      let e = end;
      start = end + 1;
      while (s < e && (body[s] === 0x20 || body[s] === 0x09 || body[s] === 0x0d)) s++;
      while (e > s && (body[e - 1] === 0x20 || body[e - 1] === 0x09 || body[e - 1] === 0x0d)) e--;
      if (s === e) continue;
      const raw = body.subarray(s, e);
      // Refused before parsing: a line longer than the event limit cannot become a valid event.
      if (raw.length > max) {
        items.push({ raw, rejection: { code: 'EVENT_TOO_LARGE', message: `line ${lineNo}: the event is ${raw.length} bytes, over the limit of ${max} (ingest.maxEventBytes)`, path: '$' } });
        continue;
      }
      try {
        items.push({ value: JSON.parse(raw.toString('utf8')), raw });
      } catch (err) {
        items.push({ raw, rejection: { code: 'MALFORMED_JSON', message: `line ${lineNo} is not valid JSON: ${(err as Error).message}`, path: '$' } });
      }
    }
    return items;
  }

  async #ingest(items: readonly Item[], receivedAt: number, source: IngestSource): Promise<IngestResult> {
    const result: IngestResult = { accepted: 0, rejected: 0, duplicates: 0, errors: [] };
    // Accepted events are written one after another into one buffer; records are views of it, taken at the end
    // (the buffer may be replaced while it grows).
    const w = new MsgpackWriter(this.#writerBytes);
    const keys: (string | undefined)[] = [];
    const ends: number[] = [];
    const ids: string[] = [];
    const letters: DeadLetter[] = [];
    let waitFor: Set<Promise<unknown>> | undefined;
    for (let i = 0; i < items.length; i++) {
      // A 1,000-event body is a few milliseconds of checks: let other requests (view queries) in between.
      if (i > 0 && i % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
      const item = items[i];
      if (item.rejection !== undefined) {
        result.rejected++;
        result.errors.push({ index: i, ...item.rejection });
        letters.push(this.#deadLetter(item.raw, item.rejection, null, null, receivedAt, source));
        continue;
      }
      const start = w.pos;
      const outcome = this.#check(item.value, w, receivedAt, undefined);
      if (outcome.kind === 'rejected') {
        result.rejected++;
        result.errors.push({ index: i, ...outcome.rejection });
        letters.push(this.#deadLetter(item.raw ?? item.value, outcome.rejection, outcome.type, outcome.schemaVersion, receivedAt, source));
        continue;
      }
      if (outcome.id !== undefined) {
        if (this.#dedup.checkAndAdd(outcome.id, receivedAt)) {
          result.duplicates++;
          w.pos = start;
          const pending = this.#pendingIds.get(outcome.id);
          if (pending !== undefined) (waitFor ??= new Set()).add(pending);
          continue;
        }
        ids.push(outcome.id);
      }
      keys.push(outcome.key);
      ends.push(w.pos);
    }
    const records = new Array<AppendRecord>(ends.length);
    const buf = w.buffer;
    for (let r = 0, start = 0; r < ends.length; r++) {
      records[r] = { key: keys[r], timestampMs: receivedAt, value: buf.subarray(start, ends[r]) };
      start = ends[r];
    }
    // The next request starts with room for as much as this one wrote.
    this.#writerBytes = Math.min(MAX_WRITER_BYTES, Math.max(MIN_WRITER_BYTES, w.pos + (w.pos >> 3)));
    const appended = this.#o.log.append(records);
    for (const id of ids) this.#pendingIds.set(id, appended);
    try {
      await Promise.all([appended, this.#o.deadLetters.add(letters)]);
    } catch (err) {
      // Nothing of this request is acknowledged: let the client's retry through the dedup window.
      this.#dedup.forget(ids);
      throw err;
    } finally {
      for (const id of ids) if (this.#pendingIds.get(id) === appended) this.#pendingIds.delete(id);
    }
    // A duplicate is acknowledged only once its original is durable.
    if (waitFor !== undefined) await Promise.all(waitFor);
    result.accepted = records.length;
    return result;
  }

  /**
   * Envelope, depth, size and schema checks for one event. An accepted event's record is appended to `w`; a
   * rejected one leaves `w` as it was.
   */
  #check(
    value: unknown,
    w: MsgpackWriter,
    receivedAt: number,
    replayOf: number | undefined,
  ):
    | { kind: 'ok'; key: string | undefined; id: string | undefined; type: string }
    | { kind: 'rejected'; rejection: Rejection; type: string | null; schemaVersion: number | null } {
    const env = checkEnvelope(value);
    if (!env.ok) {
      const type = typeof (value as { type?: unknown } | null)?.type === 'string' ? (value as { type: string }).type : null;
      return { kind: 'rejected', rejection: env.rejection, type, schemaVersion: null };
    }
    const { type, data, id, key } = env.envelope;
    const limits = this.#limits;
    const schema = this.#o.registry.latest(type);
    const start = w.pos;
    try {
      writeEventRecord(w, { receivedAt, schemaVersion: schema?.version ?? 0, type, eventTimeMs: env.eventTimeMs, replayOf, id, data }, limits.maxDepth);
    } catch (err) {
      if (!(err instanceof TooDeepError)) throw err;
      return {
        kind: 'rejected',
        rejection: { code: 'TOO_DEEP', message: `the event nests deeper than ${limits.maxDepth} levels (ingest.maxDepth)`, path: '$.data' },
        type,
        schemaVersion: null,
      };
    }
    const bytes = w.pos - start;
    if (bytes > limits.maxEventBytes) {
      w.pos = start;
      return {
        kind: 'rejected',
        rejection: { code: 'EVENT_TOO_LARGE', message: `the event is ${bytes} bytes stored, over the limit of ${limits.maxEventBytes} (ingest.maxEventBytes)`, path: '$' },
        type,
        schemaVersion: null,
      };
    }
    if (schema === undefined) {
      if (limits.unknownTypes === 'reject') {
        w.pos = start;
        return {
          kind: 'rejected',
          rejection: { code: 'UNKNOWN_TYPE', message: `no schema is registered for event type ${type}`, path: '$.type' },
          type,
          schemaVersion: null,
        };
      }
    } else {
      const v = schema.validate(data);
      if (!v.ok) {
        w.pos = start;
        return {
          kind: 'rejected',
          rejection: { code: 'SCHEMA_VALIDATION', message: `the event does not match its schema: ${v.message}`, path: v.path },
          type,
          schemaVersion: schema.version,
        };
      }
    }
    return { kind: 'ok', key, id, type };
  }

  /**
   * A dead letter for `input`: the bytes of an NDJSON line or of a body as received, or a parsed event (then its
   * JSON text).
   */
  #deadLetter(
    input: unknown,
    rejection: Rejection,
    type: string | null,
    schemaVersion: number | null,
    receivedAt: number,
    source: IngestSource,
  ): DeadLetter {
    const bound = this.#limits.deadLetterRawBytes;
    // Events that fail on content (not size) are kept whole so they can be replayed; the bound caps the rest.
    const keepWhole = rejection.code === 'SCHEMA_VALIDATION' || rejection.code === 'UNKNOWN_TYPE' || rejection.code === 'INVALID_EVENT';
    let raw: string;
    let truncated: boolean;
    if (input instanceof Uint8Array) {
      truncated = !keepWhole && input.length > bound;
      raw = Buffer.from(input.buffer, input.byteOffset, truncated ? bound : input.length).toString('utf8');
    } else {
      raw = JSON.stringify(input) ?? 'null';
      truncated = !keepWhole && raw.length > bound;
      if (truncated) raw = raw.slice(0, bound);
    }
    return {
      raw,
      raw_truncated: truncated,
      code: rejection.code,
      message: rejection.message,
      path: rejection.path,
      type,
      schema_version: schemaVersion,
      received_at: receivedAt,
      source: { address: source.address },
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
    const result: ReplayResult = { replayed: 0, failed: 0, skipped: 0 };
    const store = this.#o.deadLetters;
    let w = new MsgpackWriter(MIN_WRITER_BYTES);
    let records: { key: string | undefined; timestampMs: number; start: number; end: number }[] = [];
    let letterIds: number[] = [];
    let skippedIds: number[] = [];
    const flush = async () => {
      const buf = w.buffer;
      await this.#o.log.append(records.map((r) => ({ key: r.key, timestampMs: r.timestampMs, value: buf.subarray(r.start, r.end) })));
      w = new MsgpackWriter(MIN_WRITER_BYTES);
      await store.markReplayed([...letterIds, ...skippedIds]);
      result.replayed += letterIds.length;
      records = [];
      letterIds = [];
      skippedIds = [];
    };
    await store.scan(filter, async (letter) => {
      if (letter.replayed) {
        result.skipped++;
        return true;
      }
      if (letter.raw_truncated) {
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
      const outcome = this.#check(value, w, letter.received_at, letter.id);
      if (outcome.kind === 'rejected') {
        result.failed++;
        return true;
      }
      if (outcome.id !== undefined && this.#dedup.checkAndAdd(outcome.id, this.#o.clock.now())) {
        w.pos = start;
        result.skipped++;
        skippedIds.push(letter.id);
        return true;
      }
      records.push({ key: outcome.key, timestampMs: letter.received_at, start, end: w.pos });
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
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    });
  }
}
