/**
 * The stored form of an accepted event, shared by the writer (ingest) and every reader (HTTP reads, dedup
 * rebuild, engine, sinks).
 *
 * Layout (little-endian), version 2:
 *
 *   u8 version (2) | u8 flags (1 = event_time, 2 = replay_of) | u32 schema_version | f64 received_at
 *   | u8 type length | type (ASCII) | [f64 event_time] [f64 replay_of] | the client's envelope JSON, byte for
 *   byte as received
 *
 * The type sits in the header so a consumer can skip events of other types without parsing them.
 *
 * Ingest frames the client's bytes with this small binary header instead of serialising the parsed object
 * again: JSON.stringify per event was a third of ingest CPU, and the header is written without a native call.
 */
export interface EventRecord {
  type: string;
  data: Record<string, unknown>;
  id?: string;
  key?: string;
  /** Event time in ms, from the envelope's `ts`. */
  event_time?: number;
  /** Server arrival time, ms since the epoch. */
  received_at: number;
  /** 0 when the type had no schema and unknown types are accepted unvalidated. */
  schema_version: number;
  /** Set when the event was appended by a dead-letter replay: the dead letter's id. */
  replay_of?: number;
}

const VERSION = 2;
const FLAG_EVENT_TIME = 1;
const FLAG_REPLAY_OF = 2;
const FIXED = 15;

/** Writes one event record straight into the log's frame buffer (the log calls `writeTo`). */
export class EventRecordEncoder {
  readonly byteLength: number;
  readonly #receivedAt: number;
  readonly #schemaVersion: number;
  readonly #eventTime: number | undefined;
  readonly #replayOf: number | undefined;
  readonly #envelope: Uint8Array;
  readonly #type: string;

  /** `type` is a validated event type name: ASCII, at most 128 characters. */
  constructor(receivedAt: number, schemaVersion: number, type: string, eventTimeMs: number | undefined, replayOf: number | undefined, envelope: Uint8Array) {
    this.#type = type;
    this.#receivedAt = receivedAt;
    this.#schemaVersion = schemaVersion;
    this.#eventTime = eventTimeMs;
    this.#replayOf = replayOf;
    this.#envelope = envelope;
    this.byteLength = FIXED + type.length + (eventTimeMs === undefined ? 0 : 8) + (replayOf === undefined ? 0 : 8) + envelope.length;
  }

  writeTo(buf: Buffer, pos: number): number {
    let flags = 0;
    if (this.#eventTime !== undefined) flags |= FLAG_EVENT_TIME;
    if (this.#replayOf !== undefined) flags |= FLAG_REPLAY_OF;
    buf[pos] = VERSION;
    buf[pos + 1] = flags;
    buf.writeUInt32LE(this.#schemaVersion, pos + 2);
    buf.writeDoubleLE(this.#receivedAt, pos + 6);
    const type = this.#type;
    buf[pos + 14] = type.length;
    let p = pos + FIXED;
    for (let i = 0; i < type.length; i++) buf[p + i] = type.charCodeAt(i);
    p += type.length;
    if (this.#eventTime !== undefined) {
      buf.writeDoubleLE(this.#eventTime, p);
      p += 8;
    }
    if (this.#replayOf !== undefined) {
      buf.writeDoubleLE(this.#replayOf, p);
      p += 8;
    }
    buf.set(this.#envelope, p);
    return p + this.#envelope.length;
  }
}

/** The event type of the record starting at `at`, read from its header without parsing the event. */
export function eventRecordType(bytes: Uint8Array, at = 0): string {
  if (bytes[at] !== VERSION) throw new Error(`unknown event record version ${bytes[at]}`);
  const n = bytes[at + 14];
  let type = '';
  for (let i = 0; i < n; i++) type += String.fromCharCode(bytes[at + FIXED + i]);
  return type;
}

/** True when the record starting at `at` has type `type` (no allocation). */
export function eventRecordIs(bytes: Uint8Array, type: string, at = 0): boolean {
  if (bytes[at + 14] !== type.length) return false;
  for (let i = 0; i < type.length; i++) if (bytes[at + FIXED + i] !== type.charCodeAt(i)) return false;
  return true;
}

export function decodeEventRecord(bytes: Uint8Array): EventRecord {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf[0] !== VERSION) throw new Error(`unknown event record version ${buf[0]}`);
  const flags = buf[1];
  const schemaVersion = buf.readUInt32LE(2);
  const receivedAt = buf.readDoubleLE(6);
  let p = FIXED + buf[14];
  let eventTime: number | undefined;
  let replayOf: number | undefined;
  if (flags & FLAG_EVENT_TIME) {
    eventTime = buf.readDoubleLE(p);
    p += 8;
  }
  if (flags & FLAG_REPLAY_OF) {
    replayOf = buf.readDoubleLE(p);
    p += 8;
  }
  const env = JSON.parse(buf.toString('utf8', p)) as { type: string; data: Record<string, unknown>; id?: string; key?: string };
  const record = { type: env.type, data: env.data } as EventRecord;
  if (env.id !== undefined) record.id = env.id;
  if (env.key !== undefined) record.key = env.key;
  if (eventTime !== undefined) record.event_time = eventTime;
  record.received_at = receivedAt;
  record.schema_version = schemaVersion;
  if (replayOf !== undefined) record.replay_of = replayOf;
  return record;
}

/** The fields of a record the engine evaluates, decoded straight into the shape it uses (one object per event). */
export interface DecodedEvent {
  type: string;
  data: Record<string, unknown>;
  key: string | undefined;
  received_at: number;
  /** The envelope's `ts`, else `received_at`. */
  event_time: number;
}

export function decodeEventFields(bytes: Uint8Array): DecodedEvent {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = readEventHeader(buf);
  const env = JSON.parse(buf.toString('utf8', h.envelopeOffset)) as { type: string; data: Record<string, unknown>; key?: string };
  return { type: env.type, data: env.data, key: env.key, received_at: h.receivedAt, event_time: h.eventTime };
}

/**
 * The header fields of the record starting at `at` and where its envelope JSON starts, without touching the
 * envelope.
 */
export function readEventHeader(buf: Buffer, at = 0): { receivedAt: number; eventTime: number; envelopeOffset: number } {
  if (buf[at] !== VERSION) throw new Error(`unknown event record version ${buf[at]}`);
  const flags = buf[at + 1];
  const receivedAt = buf.readDoubleLE(at + 6);
  let p = at + FIXED + buf[at + 14];
  let eventTime = receivedAt;
  if (flags & FLAG_EVENT_TIME) {
    eventTime = buf.readDoubleLE(p);
    p += 8;
  }
  if (flags & FLAG_REPLAY_OF) p += 8;
  return { receivedAt, eventTime, envelopeOffset: p };
}
