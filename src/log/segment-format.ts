import { crc32c } from './crc32c.js';
import type { RecordValue } from './log.js';

/**
 * On-disk record frame (little-endian):
 *
 *   u32 bodyLength | u32 crc32c(body) | body
 *   body = f64 offset | f64 timestampMs | u16 keyLength+1 (0 = no key) | key (UTF-8) | value
 *
 * The offset is stored so a scan can prove the sequence is unbroken; the CRC covers everything after it.
 */
export const FRAME_HEADER_BYTES = 8;
export const BODY_FIXED_BYTES = 18;
export const MAX_KEY_BYTES = 0xfffe;
/** Guard against reading a garbage length as a multi-gigabyte frame. */
export const MAX_FRAME_BODY_BYTES = 256 * 1024 * 1024;

export interface DecodedFrame {
  offset: number;
  timestampMs: number;
  /** The key is scanned[keyStart, keyEnd) (keyStart -1: no key); decode it with `readKey` when needed. */
  keyStart: number;
  keyEnd: number;
  /** The value is scanned[valueStart, valueEnd) (no view is made per record; take one if you keep it). */
  valueStart: number;
  valueEnd: number;
  /** Byte position of the frame within the scanned buffer. */
  position: number;
  /** Whole frame length including the header. */
  frameBytes: number;
}

/** Writes one frame at `pos` of `buf` and returns the position after it. */
export function writeFrame(
  buf: Buffer,
  pos: number,
  offset: number,
  timestampMs: number,
  key: string | undefined,
  keyBytes: number,
  value: RecordValue,
  valueBytes: number,
): number {
  const bodyStart = pos + FRAME_HEADER_BYTES;
  const bodyLen = BODY_FIXED_BYTES + keyBytes + valueBytes;
  buf.writeUInt32LE(bodyLen, pos);
  buf.writeDoubleLE(offset, bodyStart);
  buf.writeDoubleLE(timestampMs, bodyStart + 8);
  let p = bodyStart + BODY_FIXED_BYTES;
  if (key === undefined) {
    buf.writeUInt16LE(0, bodyStart + 16);
  } else {
    buf.writeUInt16LE(keyBytes + 1, bodyStart + 16);
    p = writeKey(buf, p, key, keyBytes);
  }
  if (typeof value === 'string') p += buf.write(value, p, 'utf8');
  else if (value instanceof Uint8Array) {
    buf.set(value, p);
    p += value.length;
  } else p = value.writeTo(buf, p);
  buf.writeUInt32LE(crc32c(buf, bodyStart, p), pos + 4);
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

/** Keys are short and nearly always ASCII: a JS loop beats the native decoder's fixed cost for them. */
export function readKey(buf: Buffer, start: number, end: number): string {
  if (end - start > 24) return buf.toString('utf8', start, end);
  let s = '';
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c > 0x7f) return buf.toString('utf8', start, end);
    s += String.fromCharCode(c);
  }
  return s;
}

export type ScanStop =
  | { kind: 'end' }
  | { kind: 'partial'; reason: string }
  | { kind: 'corrupt'; reason: string };

/**
 * Walks the frames of `buf` from `start`, calling `visit` for each valid one, and stops at the first torn or
 * corrupt frame. `expectedOffset`, when given, must match each frame's offset in turn. With `verify` false the
 * CRCs are not checked (for bytes already verified or written by this process).
 * Returns the position after the last valid frame and why the scan stopped.
 */
export function scanFrames(
  buf: Buffer,
  start: number,
  expectedOffset: number | undefined,
  visit: (frame: DecodedFrame) => boolean | void,
  verify = true,
): { end: number; stop: ScanStop } {
  let pos = start;
  let expect = expectedOffset;
  const frame: DecodedFrame = { offset: 0, timestampMs: 0, keyStart: -1, keyEnd: -1, valueStart: 0, valueEnd: 0, position: 0, frameBytes: 0 };
  while (pos < buf.length) {
    if (pos + FRAME_HEADER_BYTES > buf.length) return { end: pos, stop: { kind: 'partial', reason: 'torn frame header' } };
    const bodyLen = buf.readUInt32LE(pos);
    if (bodyLen < BODY_FIXED_BYTES || bodyLen > MAX_FRAME_BODY_BYTES) {
      return { end: pos, stop: { kind: 'corrupt', reason: `impossible frame length ${bodyLen}` } };
    }
    const bodyStart = pos + FRAME_HEADER_BYTES;
    const bodyEnd = bodyStart + bodyLen;
    if (bodyEnd > buf.length) return { end: pos, stop: { kind: 'partial', reason: 'torn frame body' } };
    if (verify && crc32c(buf, bodyStart, bodyEnd) !== buf.readUInt32LE(pos + 4)) {
      return { end: pos, stop: { kind: 'corrupt', reason: 'CRC mismatch' } };
    }
    const offset = buf.readDoubleLE(bodyStart);
    if (expect !== undefined && offset !== expect) {
      return { end: pos, stop: { kind: 'corrupt', reason: `offset ${offset} where ${expect} was expected` } };
    }
    const timestampMs = buf.readDoubleLE(bodyStart + 8);
    const keyField = buf.readUInt16LE(bodyStart + 16);
    let p = bodyStart + BODY_FIXED_BYTES;
    let keyStart = -1;
    let keyEnd = -1;
    if (keyField !== 0) {
      keyStart = p;
      keyEnd = p + keyField - 1;
      if (keyEnd > bodyEnd) return { end: pos, stop: { kind: 'corrupt', reason: 'key longer than frame' } };
      p = keyEnd;
    }
    // One frame object per scan, refilled per record: visitors copy what they keep.
    frame.offset = offset;
    frame.timestampMs = timestampMs;
    frame.keyStart = keyStart;
    frame.keyEnd = keyEnd;
    frame.valueStart = p;
    frame.valueEnd = bodyEnd;
    frame.position = pos;
    frame.frameBytes = bodyEnd - pos;
    pos = bodyEnd;
    if (expect !== undefined) expect++;
    if (visit(frame) === false) return { end: pos, stop: { kind: 'end' } };
  }
  return { end: pos, stop: { kind: 'end' } };
}
