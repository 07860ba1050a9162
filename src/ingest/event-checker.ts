import type { IngestConfig } from '../config/index.js';
import { isUtf8 } from 'node:buffer';
import { MsgpackWriter, NonFiniteNumberError, TooDeepError, writeEventRecord } from '../core/index.js';
import type { CompiledSchema } from '../schema/index.js';
import { checkEnvelope, type Rejection } from './envelope.js';

export type BodyFormat = 'json' | 'ndjson';

/** The message of a body that is not JSON starts so; the parser's reason follows. */
export const MALFORMED_PREFIX = 'the body is not valid JSON: ';

/** The limits the checks apply (a slice of the ingest config). */
export type CheckLimits = Pick<IngestConfig, 'maxEventBytes' | 'maxDepth' | 'maxValidationSteps' | 'maxValidationMs' | 'maxEventsPerRequest' | 'maxEventTimeAheadMs' | 'maxEventTimeBehindMs' | 'unknownTypes' | 'deadLetterRawBytes' | 'priorities'>;

/** What overload sheds: 0 nothing, 1 low-priority events, 2 low and normal ones (high ones are never shed here). */
export type ShedLevel = 0 | 1 | 2;

const RANK = { low: 1, normal: 2, high: 3 } as const;

/** The latest compiled schema of a type, or undefined. */
export type SchemaLookup = (type: string) => CompiledSchema | undefined;

/** A refused event with what its dead letter keeps. */
export interface CheckedRejection extends Rejection {
  /** Position of the event in the request (for NDJSON: among the non-empty lines). */
  index: number;
  /** The input as text: the line or body as received, or the parsed event's JSON (bounded, see `rawTruncated`). */
  raw: string;
  rawTruncated: boolean;
  /** 'base64' when the input was not valid UTF-8: `raw` then holds its bytes, never text with replacement characters. */
  rawEncoding?: 'base64';
  type: string | null;
  schemaVersion: number | null;
}

/**
 * The outcome of checking a request body: accepted events encoded back to back in `records` (record i ends at
 * `ends[i]`), with their partition keys and ids; refused events; or, for a JSON body that does not parse,
 * `malformed` and nothing else.
 */
export interface CheckedEvents {
  records: Buffer;
  ends: number[];
  keys: (string | undefined)[];
  /** Each accepted record's event type. */
  types: string[];
  ids: (string | undefined)[];
  rejections: CheckedRejection[];
  malformed?: CheckedRejection;
  /** Set when an event's type is not among the request's allowed types (then the request is refused whole). */
  forbiddenType?: string;
  /** Set when the request holds more events than ingest.maxEventsPerRequest (then it is refused whole). */
  tooMany?: number;
  /** Events shed by overload (position in the request, type): neither stored nor dead-lettered. */
  shed: { index: number; type: string }[];
}

/** One input item: a parsed value (with its NDJSON line), or input refused before parsing. */
export type Item =
  | { value: unknown; line: Buffer | undefined; rejection?: undefined }
  | { value?: undefined; line: Buffer; rejection: Rejection };

export type CheckOutcome =
  | { kind: 'ok'; key: string | undefined; id: string | undefined; type: string }
  | { kind: 'rejected'; rejection: Rejection; type: string | null; schemaVersion: number | null };

/**
 * Envelope checks, limits, schema validation and encoding of events into stored records: everything ingest does
 * per event that needs no shared state, so it runs alike on the server thread and in ingest worker threads.
 */
export class EventChecker {
  readonly #limits: CheckLimits;
  readonly #lookup: SchemaLookup;

  constructor(limits: CheckLimits, lookup: SchemaLookup) {
    this.#limits = limits;
    this.#lookup = lookup;
  }

  /** Parses and checks a whole body; `allowedTypes` (null: any) limits the event types it may hold. */
  checkBody(body: Buffer, format: BodyFormat, receivedAt: number, allowedTypes: readonly string[] | null = null, shed: ShedLevel = 0): CheckedEvents {
    const parsed = this.parse(body, format);
    if (!Array.isArray(parsed)) return 'tooMany' in parsed ? { ...emptyChecked(), tooMany: parsed.tooMany } : { ...emptyChecked(), malformed: parsed };
    const out = emptyChecked();
    const w = new MsgpackWriter(Math.max(4096, body.length));
    this.checkItems(parsed, 0, parsed.length, receivedAt, w, out, allowedTypes, shed);
    out.records = w.buffer.subarray(0, w.pos);
    return out;
  }

  /** Parses a body into items, or returns the rejection of a JSON body that does not parse. */
  parse(body: Buffer, format: BodyFormat): Item[] | CheckedRejection | { tooMany: number } {
    // JSON is UTF-8 (RFC 8259): invalid bytes are refused, not silently replaced (a native check, ~10 µs per 250 KB).
    const utf8 = isUtf8(body);
    const max = this.#limits.maxEventsPerRequest;
    if (format === 'ndjson') {
      // Counted before anything is built: a million lines of `{}` are 3 MB, and would be a million events.
      const lines = countLines(body);
      return lines > max ? { tooMany: lines } : this.#splitNdjson(body, utf8);
    }
    if (!utf8) return this.rejection(-1, body, { code: 'MALFORMED_JSON', message: MALFORMED_PREFIX + 'the body is not valid UTF-8', path: '$' }, null, null);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      const rejection = { code: 'MALFORMED_JSON', message: MALFORMED_PREFIX + (err as Error).message, path: '$' };
      return this.rejection(-1, body, rejection, null, null);
    }
    const values = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
    if (values.length > max) return { tooMany: values.length };
    const items = new Array<Item>(values.length);
    for (let i = 0; i < values.length; i++) items[i] = { value: values[i], line: undefined };
    return items;
  }

  #splitNdjson(body: Buffer, utf8: boolean): Item[] {
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
      const line = body.subarray(s, e);
      // Refused before parsing: a line longer than the event limit cannot become a valid event.
      if (line.length > max) {
        items.push({ line, rejection: { code: 'EVENT_TOO_LARGE', message: `line ${lineNo}: the event is ${line.length} bytes, over the limit of ${max} (ingest.maxEventBytes)`, path: '$' } });
        continue;
      }
      if (!utf8 && !isUtf8(line)) {
        items.push({ line, rejection: { code: 'MALFORMED_JSON', message: `line ${lineNo} is not valid UTF-8`, path: '$' } });
        continue;
      }
      try {
        items.push({ value: JSON.parse(line.toString('utf8')), line });
      } catch (err) {
        items.push({ line, rejection: { code: 'MALFORMED_JSON', message: `line ${lineNo} is not valid JSON: ${(err as Error).message}`, path: '$' } });
      }
    }
    return items;
  }

  /**
   * Checks items[from, to) into `out`, appending accepted records to `w`. With `allowedTypes`, the first event of
   * another type (or of none) stops the checks and sets `out.forbiddenType`.
   */
  checkItems(
    items: readonly Item[],
    from: number,
    to: number,
    receivedAt: number,
    w: MsgpackWriter,
    out: CheckedEvents,
    allowedTypes: readonly string[] | null = null,
    shed: ShedLevel = 0,
  ): void {
    const priorities = this.#limits.priorities;
    for (let i = from; i < to; i++) {
      const item = items[i];
      const type = typeof (item.value as { type?: unknown } | null | undefined)?.type === 'string' ? (item.value as { type: string }).type : undefined;
      if (allowedTypes !== null && (type === undefined || !allowedTypes.includes(type))) {
        out.forbiddenType = type ?? '(no type)';
        return;
      }
      // Shed before encoding: under overload the work saved is the point. Events without a valid type are normal.
      if (shed > 0 && type !== undefined && RANK[(Object.hasOwn(priorities, type) ? priorities[type] : undefined) ?? 'normal'] <= shed) {
        out.shed.push({ index: i, type });
        continue;
      }
      if (item.rejection !== undefined) {
        out.rejections.push(this.rejection(i, item.line, item.rejection, null, null));
        continue;
      }
      const outcome = this.check(item.value, w, receivedAt, undefined);
      if (outcome.kind === 'rejected') {
        out.rejections.push(this.rejection(i, item.line ?? item.value, outcome.rejection, outcome.type, outcome.schemaVersion));
        continue;
      }
      out.keys.push(outcome.key);
      out.types.push(outcome.type);
      out.ids.push(outcome.id);
      out.ends.push(w.pos);
    }
  }

  /**
   * Envelope, depth, size and schema checks for one event. An accepted event's record is appended to `w`; a
   * rejected one leaves `w` as it was.
   */
  check(value: unknown, w: MsgpackWriter, receivedAt: number, replayOf: number | undefined): CheckOutcome {
    const env = checkEnvelope(value);
    if (!env.ok) {
      const type = typeof (value as { type?: unknown } | null)?.type === 'string' ? (value as { type: string }).type : null;
      return { kind: 'rejected', rejection: env.rejection, type, schemaVersion: null };
    }
    const { type, data, id, key } = env.envelope;
    const limits = this.#limits;
    // One event from the year 275760 would move its partition's watermark past every real window: event times are
    // trusted only within a window around the server's clock.
    const t = env.eventTimeMs;
    if (t !== undefined && (t > receivedAt + limits.maxEventTimeAheadMs || t < receivedAt - limits.maxEventTimeBehindMs)) {
      const ahead = t > receivedAt;
      const when = Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : String(t);
      const rejection = {
        code: 'EVENT_TIME_OUT_OF_RANGE',
        message: `"ts" (${when}) is more than ${ahead ? `${limits.maxEventTimeAheadMs} ms ahead of` : `${limits.maxEventTimeBehindMs} ms behind`} the server's clock (ingest.${ahead ? 'maxEventTimeAheadMs' : 'maxEventTimeBehindMs'})`,
        path: '$.ts',
      };
      return { kind: 'rejected', rejection, type, schemaVersion: null };
    }
    const schema = this.#lookup(type);
    const start = w.pos;
    try {
      writeEventRecord(w, { receivedAt, schemaVersion: schema?.version ?? 0, type, eventTimeMs: env.eventTimeMs, replayOf, id, data }, limits.maxDepth);
    } catch (err) {
      if (err instanceof NonFiniteNumberError) {
        w.pos = start;
        return {
          kind: 'rejected',
          rejection: { code: 'INVALID_EVENT', message: 'the event envelope is invalid: a number in data is too large to store (it parses to Infinity)', path: '$.data' },
          type,
          schemaVersion: null,
        };
      }
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
          rejection:
            v.code === 'SCHEMA_TOO_COSTLY'
              ? { code: v.code, message: `the event could not be checked against its schema: ${v.message}`, path: v.path }
              : { code: 'SCHEMA_VALIDATION', message: `the event does not match its schema: ${v.message}`, path: v.path },
          type,
          schemaVersion: schema.version,
        };
      }
    }
    return { kind: 'ok', key, id, type };
  }

  /**
   * A rejection with its dead letter's raw text: the bytes of an NDJSON line or of a body as received, or a parsed
   * event's JSON. Events that fail on content (not size) are kept whole so they can be replayed; the bound caps
   * the rest.
   */
  rejection(index: number, input: unknown, rejection: Rejection, type: string | null, schemaVersion: number | null): CheckedRejection {
    const bound = this.#limits.deadLetterRawBytes;
    const keepWhole = rejection.code === 'SCHEMA_VALIDATION' || rejection.code === 'UNKNOWN_TYPE' || rejection.code === 'INVALID_EVENT' || rejection.code === 'SCHEMA_TOO_COSTLY';
    let raw: string;
    let rawTruncated: boolean;
    if (input instanceof Uint8Array) {
      rawTruncated = !keepWhole && input.length > bound;
      const bytes = Buffer.from(input.buffer, input.byteOffset, rawTruncated ? bound : input.length);
      // Decoding invalid UTF-8 would replace the bad bytes and could turn the input into valid JSON, which a replay
      // would then store: such input is kept as its bytes.
      if (!isUtf8(bytes)) return { index, ...rejection, raw: bytes.toString('base64'), rawTruncated, rawEncoding: 'base64', type, schemaVersion };
      raw = bytes.toString('utf8');
    } else {
      try {
        raw = JSON.stringify(input) ?? 'null';
        rawTruncated = !keepWhole && raw.length > bound;
        if (rawTruncated) raw = raw.slice(0, bound);
      } catch {
        // JSON.stringify recurses: an event nested thousands deep overflows the stack. Its letter keeps the reason.
        raw = '';
        rawTruncated = true;
      }
    }
    return { index, ...rejection, raw, rawTruncated, type, schemaVersion };
  }
}

/** Lines with something other than blanks (the events of an NDJSON body), in one pass over the bytes. */
function countLines(body: Buffer): number {
  let lines = 0;
  let content = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === 0x0a) {
      if (content) lines++;
      content = false;
    } else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) content = true;
  }
  return content ? lines + 1 : lines;
}

export function emptyChecked(): CheckedEvents {
  return { records: Buffer.alloc(0), ends: [], keys: [], types: [], ids: [], rejections: [], shed: [] };
}
