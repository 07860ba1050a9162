import { crc32 } from 'node:zlib';
import { crc32c } from './crc32c.js';
import type { RecordValue } from './log.js';

if (typeof crc32 !== 'function') throw new Error('halflife needs Node.js 20.15 or later (zlib.crc32)');

/**
 * Segment files, format 2 (little-endian):
 *
 *   file header: "HLSG" | u8 format (2) | 3 reserved zero bytes
 *   batch:       u32 bodyLength | u32 crc32(body) | body
 *   body:        f64 baseOffset | u32 count | record × count
 *   record:      u32 recordLength (after this field) | f64 timestampMs | u16 keyLength+1 (0 = no key) | key | value
 *
 * One batch per partition per group commit (split past `MAX_BATCH_BYTES`), as Kafka's record batches: the CRC
 * (zlib's native CRC-32, ~3 GB/s) is computed once per batch instead of once per record in JS, and a torn or
 * corrupt tail is cut at the last whole batch, which is exactly the unit a group commit acknowledges. Offsets are
 * `baseOffset + i`, so a scan still proves the sequence is unbroken. A batch of no records is a gap marker written
 * by `halflife repair` in place of a damaged range: its base is the offset after the gap (see `gapMarker`).
 *
 * Only an incomplete last batch is a torn tail (`isTornTail`); a batch that fails its checks with data after it
 * is corruption, never cut at start-up (SEGMENT_CORRUPT). The 8-byte file header has no CRC: a header that is not
 * the format-2 header and does not begin a valid format-1 frame is reported as damaged.
 *
 * Format 1 (no file header; one frame per record: u32 bodyLength | u32 crc32c(body) | f64 offset | f64 timestampMs
 * | u16 keyLength+1 | key | value) is still read; a log opened with a format-1 active segment rolls to a new one.
 * Its first word, as a length, would exceed `MAX_FRAME_BODY_BYTES`, so the header cannot be mistaken for a frame.
 */
export const SEGMENT_FORMAT = 2;
export const FILE_HEADER_BYTES = 8;
const MAGIC = [0x48, 0x4c, 0x53, 0x47]; // "HLSG"
export const BATCH_HEADER_BYTES = 20;
export const RECORD_HEADER_BYTES = 14;
const V1_FRAME_HEADER_BYTES = 8;
const V1_BODY_FIXED_BYTES = 18;
export const MAX_KEY_BYTES = 0xfffe;
/** Guard against reading a garbage length as a multi-gigabyte frame. */
export const MAX_FRAME_BODY_BYTES = 256 * 1024 * 1024;
/** A group commit's records for one partition are split into batches of about this size. */
export const MAX_BATCH_BYTES = 1024 * 1024;

/** The file header of a format-2 segment. */
export function fileHeader(): Buffer {
  return Buffer.from([...MAGIC, SEGMENT_FORMAT, 0, 0, 0]);
}

/**
 * The format of a segment from its bytes (at least its first frame): 2 with the format-2 header, 1 for a file that
 * begins with a whole, CRC-valid format-1 frame, undefined when there is no record to lose (an empty file, a torn
 * header, or a header damaged with nothing after it: the file is started afresh as format 2), and 'damaged' for a
 * header that is neither, with bytes after it (the header has no CRC: a damaged byte there is found this way).
 */
export function segmentFormat(buf: Uint8Array): 1 | 2 | 'damaged' | undefined {
  const header = fileHeader();
  let same = true;
  for (let i = 0; i < Math.min(buf.length, FILE_HEADER_BYTES); i++) if (buf[i] !== header[i]) same = false;
  if (same) return buf.length >= FILE_HEADER_BYTES ? 2 : undefined;
  if (buf.length >= V1_FRAME_HEADER_BYTES) {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
    const len = b.readUInt32LE(0);
    if (len >= V1_BODY_FIXED_BYTES && len <= MAX_FRAME_BODY_BYTES && V1_FRAME_HEADER_BYTES + len <= b.length) {
      if (crc32c(b, V1_FRAME_HEADER_BYTES, V1_FRAME_HEADER_BYTES + len) === b.readUInt32LE(4)) return 1;
    }
  }
  return buf.length > FILE_HEADER_BYTES ? 'damaged' : undefined;
}

export interface DecodedRecord {
  offset: number;
  timestampMs: number;
  /** The key is scanned[keyStart, keyEnd) (keyStart -1: no key); decode it with `readUtf8` (core) when needed. */
  keyStart: number;
  keyEnd: number;
  /** The value is scanned[valueStart, valueEnd) (no view is made per record; take one if you keep it). */
  valueStart: number;
  valueEnd: number;
  /** Byte position of the record's batch (format 1: of its frame) within the scanned buffer. */
  batchPosition: number;
  /** True for the first record of its batch. */
  firstInBatch: boolean;
  /** Bytes the record takes, its share of the batch header included for the first one. */
  recordBytes: number;
}

/** Writes a batch header for `count` records at `pos` (length and CRC come with `endBatch`); returns the first record's position. */
export function beginBatch(buf: Buffer, pos: number, baseOffset: number, count: number): number {
  buf.writeDoubleLE(baseOffset, pos + 8);
  buf.writeUInt32LE(count, pos + 16);
  return pos + BATCH_HEADER_BYTES;
}

/** Completes the batch that starts at `batchPos` and ends at `end`: its length and CRC. */
export function endBatch(buf: Buffer, batchPos: number, end: number): void {
  const bodyStart = batchPos + 8;
  buf.writeUInt32LE(end - bodyStart, batchPos);
  buf.writeUInt32LE(crc32(buf.subarray(bodyStart, end)), batchPos + 4);
}

/** Writes one record at `pos` of `buf` and returns the position after it. */
export function writeRecord(
  buf: Buffer,
  pos: number,
  timestampMs: number,
  key: string | undefined,
  keyBytes: number,
  value: RecordValue,
  valueBytes: number,
): number {
  buf.writeUInt32LE(RECORD_HEADER_BYTES - 4 + keyBytes + valueBytes, pos);
  buf.writeDoubleLE(timestampMs, pos + 4);
  let p = pos + RECORD_HEADER_BYTES;
  if (key === undefined) {
    buf[pos + 12] = 0;
    buf[pos + 13] = 0;
  } else {
    buf.writeUInt16LE(keyBytes + 1, pos + 12);
    p = writeKey(buf, p, key, keyBytes);
  }
  if (typeof value === 'string') p += buf.write(value, p, 'utf8');
  else if (value instanceof Uint8Array) {
    buf.set(value, p);
    p += value.length;
  } else p = value.writeTo(buf, p);
  return p;
}

/**
 * Keys are short and nearly always ASCII: a JS loop beats the native call's fixed cost (~100 ns) for them.
 * `keyBytes === key.length` means the key is ASCII (see `keyByteLength`).
 */
function writeKey(buf: Buffer, pos: number, key: string, keyBytes: number): number {
  if (keyBytes !== key.length || key.length > 64) return pos + buf.write(key, pos, 'utf8');
  for (let i = 0; i < key.length; i++) buf[pos + i] = key.charCodeAt(i);
  return pos + key.length;
}

/** UTF-8 length of a key, without a native call for short ASCII keys. */
export function keyByteLength(key: string): number {
  if (key.length > 64) return Buffer.byteLength(key, 'utf8');
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) > 0x7f) return Buffer.byteLength(key, 'utf8');
  return key.length;
}

export type ScanStop =
  | { kind: 'end' }
  | { kind: 'visitor' }
  | { kind: 'partial'; reason: string; /** Bytes the torn batch needs in all, when its length was readable. */ needBytes?: number }
  | { kind: 'corrupt'; reason: string };

export interface ScanResult {
  /** Position after the last batch that was checked and visited whole. */
  end: number;
  stop: ScanStop;
  /** Records passed to the visitor. */
  visited: number;
  /** With an expected offset: the offset the next batch after `end` must have (gap markers move it on). */
  nextOffset?: number | undefined;
}

/**
 * Walks the records of `buf` from `start` (a batch boundary), calling `visit` for each, and stops at the first torn
 * or corrupt batch or when `visit` returns false. `expectedOffset`, when given, must match each record's offset
 * in turn. With `verify` false the CRCs are not checked (for bytes already verified or written by this process).
 * A batch is checked whole before any of its records is visited.
 */
export function scanRecords(
  buf: Buffer,
  start: number,
  format: 1 | 2,
  expectedOffset: number | undefined,
  visit: (record: DecodedRecord) => boolean | void,
  verify = true,
): ScanResult {
  return format === 2 ? scanBatches(buf, start, expectedOffset, visit, verify) : scanV1Frames(buf, start, expectedOffset, visit, verify);
}

function scanBatches(
  buf: Buffer,
  start: number,
  expectedOffset: number | undefined,
  visit: (record: DecodedRecord) => boolean | void,
  verify: boolean,
): ScanResult {
  let pos = start;
  let expect = expectedOffset;
  let visited = 0;
  // One record object per scan, refilled per record: visitors copy what they keep.
  const rec: DecodedRecord = { offset: 0, timestampMs: 0, keyStart: -1, keyEnd: -1, valueStart: 0, valueEnd: 0, batchPosition: 0, firstInBatch: true, recordBytes: 0 };
  while (pos < buf.length) {
    const batch = checkBatch(buf, pos, verify);
    if (batch.kind !== 'batch') return { end: pos, stop: batch, visited, nextOffset: expect };
    const { base, count, end: batchEnd } = batch;
    if (expect !== undefined && (count === 0 ? base < expect : base !== expect)) {
      const want = count === 0 ? `at least ${expect}` : String(expect);
      return { end: pos, stop: { kind: 'corrupt', reason: `offset ${base} where ${want} was expected` }, visited, nextOffset: expect };
    }
    let p = pos + BATCH_HEADER_BYTES;
    rec.batchPosition = pos;
    for (let i = 0; i < count; i++) {
      const len = buf.readUInt32LE(p);
      const keyField = buf.readUInt16LE(p + 12);
      const recEnd = p + 4 + len;
      let v = p + RECORD_HEADER_BYTES;
      if (keyField === 0) rec.keyStart = rec.keyEnd = -1;
      else {
        rec.keyStart = v;
        v += keyField - 1;
        rec.keyEnd = v;
      }
      rec.offset = base + i;
      rec.timestampMs = buf.readDoubleLE(p + 4);
      rec.valueStart = v;
      rec.valueEnd = recEnd;
      rec.firstInBatch = i === 0;
      rec.recordBytes = recEnd - p + (i === 0 ? BATCH_HEADER_BYTES : 0);
      p = recEnd;
      visited++;
      if (visit(rec) === false) {
        // Stopped inside a batch: the next scan starts at its beginning (and skips what it has seen by offset).
        const whole = i === count - 1;
        return { end: whole ? batchEnd : pos, stop: { kind: 'visitor' }, visited, nextOffset: expect === undefined ? undefined : whole ? base + count : expect };
      }
    }
    pos = batchEnd;
    // A gap marker (no records) moves the expected offset to its base: the offsets before it were set aside.
    if (expect !== undefined) expect = base + count;
  }
  return { end: pos, stop: { kind: 'end' }, visited, nextOffset: expect };
}

/** A format-2 batch at `pos`, checked whole (length, CRC when `verify`, record layout), or why it is not one. */
export type BatchCheck = { kind: 'batch'; base: number; count: number; end: number } | Extract<ScanStop, { kind: 'partial' | 'corrupt' }>;

export function checkBatch(buf: Buffer, pos: number, verify = true): BatchCheck {
  if (pos + 8 > buf.length) return { kind: 'partial', reason: 'torn batch header' };
  const bodyLen = buf.readUInt32LE(pos);
  if (bodyLen < BATCH_HEADER_BYTES - 8 || bodyLen > MAX_FRAME_BODY_BYTES) return { kind: 'corrupt', reason: `impossible batch length ${bodyLen}` };
  const bodyStart = pos + 8;
  const batchEnd = bodyStart + bodyLen;
  if (batchEnd > buf.length) return { kind: 'partial', reason: 'torn batch', needBytes: batchEnd - pos };
  if (verify && crc32(buf.subarray(bodyStart, batchEnd)) !== buf.readUInt32LE(pos + 4)) return { kind: 'corrupt', reason: 'CRC mismatch' };
  const base = buf.readDoubleLE(bodyStart);
  const count = buf.readUInt32LE(bodyStart + 8);
  if (verify && !(Number.isSafeInteger(base) && base >= 0)) return { kind: 'corrupt', reason: `impossible base offset ${base}` };
  // Check the record layout before visiting any record, so a batch is visited whole or not at all. Bytes this
  // process wrote or has checked before (`verify` false) are known to be well formed.
  let p = pos + BATCH_HEADER_BYTES;
  for (let i = 0; verify && i < count; i++) {
    if (p + RECORD_HEADER_BYTES > batchEnd) return { kind: 'corrupt', reason: 'records overrun their batch' };
    const len = buf.readUInt32LE(p);
    const keyField = buf.readUInt16LE(p + 12);
    if (len < RECORD_HEADER_BYTES - 4 + (keyField === 0 ? 0 : keyField - 1) || p + 4 + len > batchEnd) {
      return { kind: 'corrupt', reason: 'records overrun their batch' };
    }
    p += 4 + len;
  }
  if (verify && p !== batchEnd) return { kind: 'corrupt', reason: 'batch length does not match its records' };
  return { kind: 'batch', base, count, end: batchEnd };
}

/**
 * A gap marker: a batch of no records whose base offset is the next offset after a range set aside by
 * `halflife repair`. Scans accept it where a batch at or below its base was expected, so offsets after a repaired
 * batch keep their values and are never reused.
 */
export function gapMarker(nextOffset: number): Buffer {
  const buf = Buffer.alloc(BATCH_HEADER_BYTES);
  beginBatch(buf, 0, nextOffset, 0);
  endBatch(buf, 0, BATCH_HEADER_BYTES);
  return buf;
}

/**
 * The first position from `from` on where a whole, valid format-2 batch starts whose base offset is at least
 * `minBase`: where the records after a damaged batch resume. Cheap tests come first (a base offset must be a whole
 * number), so only plausible candidates are CRC-checked.
 */
export function findNextBatch(buf: Buffer, from: number, minBase: number): { position: number; base: number } | undefined {
  for (let q = from; q + BATCH_HEADER_BYTES <= buf.length; q++) {
    const bodyLen = buf.readUInt32LE(q);
    if (bodyLen < BATCH_HEADER_BYTES - 8 || q + 8 + bodyLen > buf.length) continue;
    const base = buf.readDoubleLE(q + 8);
    if (!Number.isSafeInteger(base) || base < minBase) continue;
    const batch = checkBatch(buf, q);
    if (batch.kind === 'batch') return { position: q, base };
  }
  return undefined;
}

/**
 * Whether a scan that stopped at `pos` met a torn tail, one that may be cut: bytes never written whole (zeros from
 * blocks allocated but not written, or a last batch whose declared length runs past the end of the file) with no
 * whole batch after them. A complete batch whose CRC fails, or a length that was damaged (the bytes to the end
 * match the batch's CRC), or anything followed by a valid batch, is corruption: acknowledged data may lie there.
 */
export function isTornTail(buf: Buffer, pos: number, stop: ScanStop, format: 1 | 2, expectedOffset: number): boolean {
  if (stop.kind === 'end' || stop.kind === 'visitor') return false;
  let zeros = true;
  for (let i = pos; i < buf.length && zeros; i++) zeros = buf[i] === 0;
  if (zeros) return true;
  if (stop.kind !== 'partial') return false;
  if (format === 1) return true;
  if (pos + 8 < buf.length && crc32(buf.subarray(pos + 8)) === buf.readUInt32LE(pos + 4)) return false;
  return findNextBatch(buf, pos + 1, expectedOffset) === undefined;
}

function scanV1Frames(
  buf: Buffer,
  start: number,
  expectedOffset: number | undefined,
  visit: (record: DecodedRecord) => boolean | void,
  verify: boolean,
): ScanResult {
  let pos = start;
  let expect = expectedOffset;
  let visited = 0;
  const rec: DecodedRecord = { offset: 0, timestampMs: 0, keyStart: -1, keyEnd: -1, valueStart: 0, valueEnd: 0, batchPosition: 0, firstInBatch: true, recordBytes: 0 };
  while (pos < buf.length) {
    if (pos + V1_FRAME_HEADER_BYTES > buf.length) return { end: pos, stop: { kind: 'partial', reason: 'torn frame header' }, visited, nextOffset: expect };
    const bodyLen = buf.readUInt32LE(pos);
    if (bodyLen < V1_BODY_FIXED_BYTES || bodyLen > MAX_FRAME_BODY_BYTES) {
      return { end: pos, stop: { kind: 'corrupt', reason: `impossible frame length ${bodyLen}` }, visited, nextOffset: expect };
    }
    const bodyStart = pos + V1_FRAME_HEADER_BYTES;
    const bodyEnd = bodyStart + bodyLen;
    if (bodyEnd > buf.length) return { end: pos, stop: { kind: 'partial', reason: 'torn frame body', needBytes: bodyEnd - pos }, visited, nextOffset: expect };
    if (verify && crc32c(buf, bodyStart, bodyEnd) !== buf.readUInt32LE(pos + 4)) {
      return { end: pos, stop: { kind: 'corrupt', reason: 'CRC mismatch' }, visited, nextOffset: expect };
    }
    const offset = buf.readDoubleLE(bodyStart);
    if (expect !== undefined && offset !== expect) {
      return { end: pos, stop: { kind: 'corrupt', reason: `offset ${offset} where ${expect} was expected` }, visited, nextOffset: expect };
    }
    const keyField = buf.readUInt16LE(bodyStart + 16);
    let p = bodyStart + V1_BODY_FIXED_BYTES;
    rec.keyStart = rec.keyEnd = -1;
    if (keyField !== 0) {
      rec.keyStart = p;
      rec.keyEnd = p + keyField - 1;
      if (rec.keyEnd > bodyEnd) return { end: pos, stop: { kind: 'corrupt', reason: 'key longer than frame' }, visited, nextOffset: expect };
      p = rec.keyEnd;
    }
    rec.offset = offset;
    rec.timestampMs = buf.readDoubleLE(bodyStart + 8);
    rec.valueStart = p;
    rec.valueEnd = bodyEnd;
    rec.batchPosition = pos;
    rec.recordBytes = bodyEnd - pos;
    pos = bodyEnd;
    if (expect !== undefined) expect++;
    visited++;
    if (visit(rec) === false) return { end: pos, stop: { kind: 'visitor' }, visited, nextOffset: expect };
  }
  return { end: pos, stop: { kind: 'end' }, visited, nextOffset: expect };
}
