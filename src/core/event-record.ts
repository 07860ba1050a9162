import { MsgpackError, MsgpackWriter, readMapHeader, readStringHeader, readUtf8, readValue, skipValue, type Cursor } from './msgpack.js';

/**
 * The stored form of an accepted event, shared by the writer (ingest) and every reader (HTTP reads, dedup
 * rebuild, engine, sinks).
 *
 * Layout (little-endian), version 3:
 *
 *   u8 version (3) | u8 flags (1 = event_time, 2 = replay_of, 4 = id) | u32 schema_version | f64 received_at
 *   | u8 type length | type (ASCII) | [f64 event_time] [f64 replay_of] | [id: MessagePack string]
 *   | data: MessagePack map
 *
 * The type sits in the header so a consumer can skip events of other types without decoding them; the partition
 * key is the log record's key and is not repeated here.
 *
 * Parse once: ingest has each event parsed for validation and writes that object as MessagePack, so readers take
 * the fields they need by skipping length-prefixed values instead of scanning or parsing JSON text again
 * (JSON.parse is the pipeline's largest cost). Version 2 records (the client's envelope JSON after the same header)
 * are still read, through JSON.parse.
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

const VERSION = 3;
const VERSION_JSON = 2;
const FLAG_EVENT_TIME = 1;
const FLAG_REPLAY_OF = 2;
const FLAG_ID = 4;
/** The flag of a record whose header is followed by an `id` (a MessagePack string) before its data. */
export const EVENT_RECORD_HAS_ID = FLAG_ID;
/** The version byte of the records written now (MessagePack data). */
export const EVENT_RECORD_VERSION = VERSION;
const FIXED = 15;

/** The fields of an event record, as ingest has them after its checks. */
export interface EventRecordFields {
  readonly receivedAt: number;
  readonly schemaVersion: number;
  /** A validated event type name: ASCII, at most 128 characters. */
  readonly type: string;
  readonly eventTimeMs?: number | undefined;
  readonly replayOf?: number | undefined;
  readonly id?: string | undefined;
  readonly data: Record<string, unknown>;
}

/**
 * Appends one event record to `w`. `maxDepth` bounds the nesting of `data` as the ingest limit counts it for the
 * whole envelope (`data` itself sits one level down); deeper data throws `TooDeepError` (see msgpack.ts) and leaves
 * `w.pos` where the record started.
 */
export function writeEventRecord(w: MsgpackWriter, f: EventRecordFields, maxDepth = Infinity): void {
  const start = w.pos;
  let flags = 0;
  if (f.eventTimeMs !== undefined) flags |= FLAG_EVENT_TIME;
  if (f.replayOf !== undefined) flags |= FLAG_REPLAY_OF;
  if (f.id !== undefined) flags |= FLAG_ID;
  w.ensure(FIXED + f.type.length);
  const b = w.buffer;
  b[w.pos] = VERSION;
  b[w.pos + 1] = flags;
  w.pos += 2;
  w.u32le(f.schemaVersion);
  w.f64le(f.receivedAt);
  w.byte(f.type.length);
  w.ascii(f.type);
  if (f.eventTimeMs !== undefined) w.f64le(f.eventTimeMs);
  if (f.replayOf !== undefined) w.f64le(f.replayOf);
  if (f.id !== undefined) w.string(f.id);
  try {
    w.value(f.data, maxDepth - 1);
  } catch (err) {
    w.pos = start;
    throw err;
  }
}

/** One event record as bytes (tests, benchmarks, tools). */
export function encodeEventRecord(f: EventRecordFields): Buffer {
  const w = new MsgpackWriter(256);
  writeEventRecord(w, f);
  return Buffer.from(w.buffer.subarray(0, w.pos));
}

function checkVersion(v: number): void {
  if (v !== VERSION && v !== VERSION_JSON) throw new Error(`unknown event record version ${v}`);
}

/** The event type of the record starting at `at`, read from its header without decoding the event. */
export function eventRecordType(bytes: Uint8Array, at = 0): string {
  checkVersion(bytes[at]);
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

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a whole record. `key` is the log record's key (version 3 records do not repeat it). */
export function decodeEventRecord(bytes: Uint8Array, key?: string): EventRecord {
  const buf = asBuffer(bytes);
  const h = readEventHeader(buf);
  const record = { type: eventRecordType(buf) } as EventRecord;
  if (h.version === VERSION_JSON) {
    const env = JSON.parse(buf.toString('utf8', h.payloadOffset)) as { type: string; data: Record<string, unknown>; id?: string; key?: string };
    record.data = env.data;
    if (env.id !== undefined) record.id = env.id;
    if (env.key !== undefined) record.key = env.key;
  } else {
    const c: Cursor = { pos: h.payloadOffset };
    if (buf[1] & FLAG_ID) record.id = readValue(buf, c, buf.length) as string;
    record.data = readValue(buf, c, buf.length) as Record<string, unknown>;
    if (key !== undefined) record.key = key;
  }
  if (buf[1] & FLAG_EVENT_TIME) record.event_time = h.eventTime;
  record.received_at = h.receivedAt;
  record.schema_version = buf.readUInt32LE(2);
  if (buf[1] & FLAG_REPLAY_OF) record.replay_of = buf.readDoubleLE(h.payloadOffset - 8);
  return record;
}

/** The `id` of the record (no decoding of its data), or undefined. */
export function eventRecordId(bytes: Uint8Array): string | undefined {
  const buf = asBuffer(bytes);
  if (!(buf[1] & FLAG_ID)) return buf[0] === VERSION_JSON ? decodeEventRecord(buf).id : undefined;
  const h = readEventHeader(buf);
  if (h.version === VERSION_JSON) return decodeEventRecord(buf).id;
  return readValue(buf, { pos: h.payloadOffset }, buf.length) as string;
}

/** The `replay_of` of the record (the dead letter it replayed), or undefined. */
export function eventRecordReplayOf(bytes: Uint8Array): number | undefined {
  const buf = asBuffer(bytes);
  if (!(buf[1] & FLAG_REPLAY_OF)) return undefined;
  return buf.readDoubleLE(readEventHeader(buf).payloadOffset - 8);
}

export interface EventHeader {
  version: number;
  receivedAt: number;
  /** The envelope's `ts`, else `received_at`. */
  eventTime: number;
  /** Where the payload starts: the id (if any) and data of version 3, the envelope JSON of version 2. */
  payloadOffset: number;
  /** Appended by a dead-letter replay: a correction of the past, which views apply to the windows it belongs to. */
  replay: boolean;
}

/**
 * The header fields of the record starting at `at`, without touching its payload. `out`, when given, is filled
 * and returned (a reader of millions of records allocates nothing per record).
 */
export function readEventHeader(buf: Buffer, at = 0, out?: EventHeader): EventHeader {
  const version = buf[at];
  checkVersion(version);
  const flags = buf[at + 1];
  const receivedAt = buf.readDoubleLE(at + 6);
  let p = at + FIXED + buf[at + 14];
  let eventTime = receivedAt;
  if (flags & FLAG_EVENT_TIME) {
    eventTime = buf.readDoubleLE(p);
    p += 8;
  }
  if (flags & FLAG_REPLAY_OF) p += 8;
  const replay = (flags & FLAG_REPLAY_OF) !== 0;
  if (out === undefined) return { version, receivedAt, eventTime, payloadOffset: p, replay };
  out.replay = replay;
  out.version = version;
  out.receivedAt = receivedAt;
  out.eventTime = eventTime;
  out.payloadOffset = p;
  return out;
}

/**
 * Fills `out` with the `wanted` top-level fields of the data of the version 3 record in buf[start, end), skipping
 * every other field and stopping once all are found; absent fields stay absent. `c` is scratch. Returns false
 * for a version 2 record (decode it whole with `decodeEventRecord`). Throws `MsgpackError` on damaged bytes.
 */
export function readEventData(buf: Buffer, start: number, end: number, payloadOffset: number, wanted: readonly string[], out: Record<string, unknown>, c: Cursor): boolean {
  if (buf[start] !== VERSION) return false;
  c.pos = payloadOffset;
  if (buf[start + 1] & FLAG_ID) skipValue(buf, c, end);
  const n = readMapHeader(buf, c, end);
  if (n < 0) throw new MsgpackError(`event record at byte ${start}: data is not a map`);
  let found = 0;
  const nWanted = wanted.length;
  for (let i = 0; i < n && found < nWanted; i++) {
    const len = readStringHeader(buf, c, end);
    if (len < 0) throw new MsgpackError(`event record at byte ${start}: a data key that is not a string`);
    const k = c.pos;
    c.pos = k + len;
    let hit = -1;
    for (let w = 0; w < nWanted; w++) {
      const name = wanted[w];
      if (name.length !== len) continue;
      // Byte-for-character comparison holds for ASCII only: "Ã©" (two characters) must not match the UTF-8 bytes of
      // "é"; a non-ASCII key is compared decoded below.
      let j = 0;
      while (j < len && buf[k + j] < 0x80 && buf[k + j] === name.charCodeAt(j)) j++;
      if (j === len) {
        hit = w;
        break;
      }
    }
    if (hit < 0) {
      // A wanted name with non-ASCII characters is compared decoded.
      if (len > 0 && hasNonAscii(buf, k, k + len)) hit = wanted.indexOf(readUtf8(buf, k, k + len));
      if (hit < 0) {
        skipValue(buf, c, end);
        continue;
      }
    }
    const name = wanted[hit];
    const v = readValue(buf, c, end);
    // A field named __proto__ is data, not the prototype.
    if (name === '__proto__') Object.defineProperty(out, name, { value: v, enumerable: true, writable: true, configurable: true });
    else out[name] = v;
    found++;
  }
  return true;
}

function hasNonAscii(buf: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (buf[i] > 0x7f) return true;
  return false;
}
