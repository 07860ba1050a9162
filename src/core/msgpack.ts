/**
 * MessagePack for JSON values: the encoding of an event's `data` in stored event records.
 *
 * Ingest already holds each event parsed (validation needs the object), so it writes that object once in
 * MessagePack instead of keeping the client's JSON text: readers then take the fields they need by skipping
 * length-prefixed values, never scanning or parsing text again, and numbers arrive as numbers. The stored value
 * is exactly the value that was validated.
 *
 * Written here rather than taken from a library: the log's format is halflife's core, ingest writes straight
 * into its own buffer with a depth limit, and the engine reads single fields without decoding whole records,
 * which no MessagePack library offers. The output is standard MessagePack (the property tests read it with
 * msgpackr and read msgpackr's output back).
 *
 * Mapping: null, booleans, strings (UTF-8; a lone surrogate becomes U+FFFD, as in any UTF-8 text), arrays and
 * objects as themselves; integers of up to 32 bits in the shortest integer form, every other number (including
 * -0) as float64. Decoding maps integers of any width to numbers (64-bit ones beyond 2^53 lose precision), binary
 * and extension types are refused.
 */

/** Thrown by `MsgpackWriter.value` when nesting exceeds the depth limit. */
export class TooDeepError extends Error {}

/** Thrown by `MsgpackWriter.value` for Infinity or NaN (what JSON.parse makes of a number too large for a double). */
export class NonFiniteNumberError extends Error {}

const DOUBLE = new Float64Array(1);
const DOUBLE_BYTES = new Uint8Array(DOUBLE.buffer);

/**
 * Small buffers come from Node's shared pool; from 4 KiB on, each has an ArrayBuffer of its own, which can be
 * transferred to another thread without detaching anyone else's bytes.
 */
function alloc(bytes: number): Buffer {
  return bytes < 4096 ? Buffer.allocUnsafe(bytes) : Buffer.allocUnsafeSlow(bytes);
}

/**
 * Appends MessagePack to a growing buffer. `pos` is the write position; `buffer` may be replaced when it grows,
 * so take views of it only once writing is done.
 */
export class MsgpackWriter {
  buffer: Buffer;
  pos = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buffer = alloc(Math.max(64, initialBytes));
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buffer.length) return;
    const next = alloc(Math.max(need, this.buffer.length * 2));
    this.buffer.copy(next, 0, 0, this.pos);
    this.buffer = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buffer[this.pos++] = b;
  }

  /** Little-endian raw integers and doubles, for record headers around the MessagePack. */
  u32le(v: number): void {
    this.ensure(4);
    this.buffer.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }

  f64le(v: number): void {
    this.ensure(8);
    DOUBLE[0] = v;
    const b = this.buffer;
    const p = this.pos;
    for (let i = 0; i < 8; i++) b[p + i] = DOUBLE_BYTES[i];
    this.pos = p + 8;
  }

  /** Writes ASCII text as raw bytes (no MessagePack header). */
  ascii(s: string): void {
    this.ensure(s.length);
    const b = this.buffer;
    const p = this.pos;
    for (let i = 0; i < s.length; i++) b[p + i] = s.charCodeAt(i);
    this.pos = p + s.length;
  }

  /**
   * Writes a JSON value. `maxDepth` bounds nesting as the ingest limit counts it: a primitive is 0, `{}` is 1,
   * `{"a":[1]}` is 2; deeper input throws `TooDeepError` before recursing further.
   */
  value(v: unknown, maxDepth = Infinity): void {
    this.#value(v, 0, maxDepth);
  }

  #value(v: unknown, depth: number, maxDepth: number): void {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return;
      case 'number':
        this.number(v);
        return;
      case 'boolean':
        this.byte(v ? 0xc3 : 0xc2);
        return;
      case 'object':
        if (v === null) {
          this.byte(0xc0);
          return;
        }
        if (depth >= maxDepth) throw new TooDeepError();
        if (Array.isArray(v)) {
          const n = v.length;
          this.ensure(5);
          const b = this.buffer;
          if (n < 16) b[this.pos++] = 0x90 | n;
          else if (n < 0x10000) {
            b[this.pos] = 0xdc;
            b.writeUInt16BE(n, this.pos + 1);
            this.pos += 3;
          } else {
            b[this.pos] = 0xdd;
            b.writeUInt32BE(n, this.pos + 1);
            this.pos += 5;
          }
          for (let i = 0; i < n; i++) this.#value(v[i], depth + 1, maxDepth);
          return;
        }
        this.#map(v as Record<string, unknown>, depth, maxDepth);
        return;
      default:
        // undefined, functions, symbols, bigints: not JSON. Written as nil, as JSON.stringify drops them.
        this.byte(0xc0);
    }
  }

  #map(obj: Record<string, unknown>, depth: number, maxDepth: number): void {
    // The key count is known only after the walk: reserve a fixmap byte and widen the header in the rare case
    // of 16 keys or more. for-in without an own-property check (7-13 % faster than with it, and than
    // Object.keys): objects from JSON.parse inherit only Object.prototype, which has no enumerable keys.
    this.ensure(1);
    const at = this.pos++;
    let n = 0;
    for (const k in obj) {
      this.string(k);
      this.#value(obj[k], depth + 1, maxDepth);
      n++;
    }
    if (n < 16) {
      this.buffer[at] = 0x80 | n;
      return;
    }
    const extra = n < 0x10000 ? 2 : 4;
    this.ensure(extra);
    const b = this.buffer;
    b.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    if (extra === 2) {
      b[at] = 0xde;
      b.writeUInt16BE(n, at + 1);
    } else {
      b[at] = 0xdf;
      b.writeUInt32BE(n, at + 1);
    }
  }

  number(v: number): void {
    this.ensure(9);
    const b = this.buffer;
    const p = this.pos;
    if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
      // A 32-bit integer (not -0).
      if (v >= 0) {
        if (v < 0x80) {
          b[p] = v;
          this.pos = p + 1;
        } else if (v < 0x100) {
          b[p] = 0xcc;
          b[p + 1] = v;
          this.pos = p + 2;
        } else if (v < 0x10000) {
          b[p] = 0xcd;
          b[p + 1] = v >>> 8;
          b[p + 2] = v & 0xff;
          this.pos = p + 3;
        } else {
          b[p] = 0xce;
          b.writeUInt32BE(v, p + 1);
          this.pos = p + 5;
        }
      } else if (v >= -32) {
        b[p] = v & 0xff;
        this.pos = p + 1;
      } else if (v >= -128) {
        b[p] = 0xd0;
        b[p + 1] = v & 0xff;
        this.pos = p + 2;
      } else if (v >= -32768) {
        b[p] = 0xd1;
        b[p + 1] = (v >> 8) & 0xff;
        b[p + 2] = v & 0xff;
        this.pos = p + 3;
      } else {
        b[p] = 0xd2;
        b.writeInt32BE(v, p + 1);
        this.pos = p + 5;
      }
      return;
    }
    if (v > 0x7fffffff && v <= 0xffffffff && Number.isInteger(v)) {
      b[p] = 0xce;
      b.writeUInt32BE(v, p + 1);
      this.pos = p + 5;
      return;
    }
    if (!Number.isFinite(v)) throw new NonFiniteNumberError();
    b[p] = 0xcb;
    DOUBLE[0] = v;
    // Big-endian, as MessagePack wants.
    for (let i = 0; i < 8; i++) b[p + 1 + i] = DOUBLE_BYTES[7 - i];
    this.pos = p + 9;
  }

  string(s: string): void {
    const n = s.length;
    // ASCII strings of up to 255 characters (nearly every key and most values) are written by this loop: for
    // them the native UTF-8 encoder's call costs more than the copy.
    if (n < 0x100) {
      const head = n < 32 ? 1 : 2;
      this.ensure(n + head);
      const b = this.buffer;
      const p = this.pos;
      const q = p + head;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        b[q + i] = c;
      }
      if (i === n) {
        if (head === 1) b[p] = 0xa0 | n;
        else {
          b[p] = 0xd9;
          b[p + 1] = n;
        }
        this.pos = q + n;
        return;
      }
    }
    this.#utf8String(s);
  }

  #utf8String(s: string): void {
    // The header's size depends on the byte length: reserve the widest header the string can need, then move the
    // bytes back if a shorter one fits.
    const maxBytes = s.length * 3;
    const head = maxBytes < 32 ? 1 : maxBytes < 0x100 ? 2 : maxBytes < 0x10000 ? 3 : 5;
    this.ensure(head + maxBytes);
    const b = this.buffer;
    const p = this.pos;
    const bytes = b.write(s, p + head, maxBytes, 'utf8');
    const fit = bytes < 32 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5;
    if (fit < head) b.copyWithin(p + fit, p + head, p + head + bytes);
    if (fit === 1) b[p] = 0xa0 | bytes;
    else if (fit === 2) {
      b[p] = 0xd9;
      b[p + 1] = bytes;
    } else if (fit === 3) {
      b[p] = 0xda;
      b.writeUInt16BE(bytes, p + 1);
    } else {
      b[p] = 0xdb;
      b.writeUInt32BE(bytes, p + 1);
    }
    this.pos = p + fit + bytes;
  }
}

/** Thrown by the readers on bytes that are not MessagePack this module reads. */
export class MsgpackError extends Error {}

/** A reading position, shared with the caller so one object serves a whole scan. */
export interface Cursor {
  pos: number;
}

function need(buf: Uint8Array, pos: number, n: number, end: number): void {
  if (pos + n > end) throw new MsgpackError(`truncated MessagePack at byte ${pos}`);
}

function readDouble(buf: Uint8Array, p: number): number {
  for (let i = 0; i < 8; i++) DOUBLE_BYTES[7 - i] = buf[p + i];
  return DOUBLE[0];
}

function readFloat(buf: Buffer, p: number): number {
  return buf.readFloatBE(p);
}

/**
 * UTF-8 bytes as a string. Short ASCII strings (keys, most values) decode in a JS loop; longer or non-ASCII ones
 * through the native decoder, whose fixed cost is higher than the loop's for a few characters. Shared by MessagePack
 * strings and log record keys.
 */
export function readUtf8(buf: Buffer, start: number, end: number): string {
  if (end - start > 24) return buf.toString('utf8', start, end);
  let s = '';
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c > 0x7f) return buf.toString('utf8', start, end);
    s += String.fromCharCode(c);
  }
  return s;
}

/** Length of the string whose header is at `c.pos` (advancing past the header), or -1 when it is not a string. */
export function readStringHeader(buf: Buffer, c: Cursor, end: number): number {
  const p = c.pos;
  need(buf, p, 1, end);
  const t = buf[p];
  let n: number;
  if (t >= 0xa0 && t <= 0xbf) {
    n = t & 0x1f;
    c.pos = p + 1;
  } else if (t === 0xd9) {
    need(buf, p, 2, end);
    n = buf[p + 1];
    c.pos = p + 2;
  } else if (t === 0xda) {
    need(buf, p, 3, end);
    n = buf.readUInt16BE(p + 1);
    c.pos = p + 3;
  } else if (t === 0xdb) {
    need(buf, p, 5, end);
    n = buf.readUInt32BE(p + 1);
    c.pos = p + 5;
  } else return -1;
  need(buf, c.pos, n, end);
  return n;
}

/**
 * Number of entries of the map whose header is at `c.pos` (advancing past the header), or -1 when it is not a
 * map.
 */
export function readMapHeader(buf: Buffer, c: Cursor, end: number): number {
  const p = c.pos;
  need(buf, p, 1, end);
  const t = buf[p];
  if (t >= 0x80 && t <= 0x8f) {
    c.pos = p + 1;
    return t & 0x0f;
  }
  if (t === 0xde) {
    need(buf, p, 3, end);
    c.pos = p + 3;
    return buf.readUInt16BE(p + 1);
  }
  if (t === 0xdf) {
    need(buf, p, 5, end);
    c.pos = p + 5;
    return buf.readUInt32BE(p + 1);
  }
  return -1;
}

/** Decodes the value at `c.pos` and advances past it. Objects are plain objects; `__proto__` is an own key. */
export function readValue(buf: Buffer, c: Cursor, end: number): unknown {
  const p = c.pos;
  need(buf, p, 1, end);
  const t = buf[p];
  if (t < 0x80) {
    c.pos = p + 1;
    return t;
  }
  if (t >= 0xa0 && t <= 0xbf) {
    const n = t & 0x1f;
    need(buf, p + 1, n, end);
    c.pos = p + 1 + n;
    return readUtf8(buf, p + 1, p + 1 + n);
  }
  if (t >= 0xe0) {
    c.pos = p + 1;
    return t - 0x100;
  }
  if (t >= 0x80 && t <= 0x8f) return readMapEntries(buf, c, end, t & 0x0f, p + 1);
  if (t >= 0x90 && t <= 0x9f) return readArrayItems(buf, c, end, t & 0x0f, p + 1);
  switch (t) {
    case 0xc0:
      c.pos = p + 1;
      return null;
    case 0xc2:
      c.pos = p + 1;
      return false;
    case 0xc3:
      c.pos = p + 1;
      return true;
    case 0xcc:
      need(buf, p, 2, end);
      c.pos = p + 2;
      return buf[p + 1];
    case 0xcd:
      need(buf, p, 3, end);
      c.pos = p + 3;
      return buf.readUInt16BE(p + 1);
    case 0xce:
      need(buf, p, 5, end);
      c.pos = p + 5;
      return buf.readUInt32BE(p + 1);
    case 0xcf:
      need(buf, p, 9, end);
      c.pos = p + 9;
      return Number(buf.readBigUInt64BE(p + 1));
    case 0xd0:
      need(buf, p, 2, end);
      c.pos = p + 2;
      return buf.readInt8(p + 1);
    case 0xd1:
      need(buf, p, 3, end);
      c.pos = p + 3;
      return buf.readInt16BE(p + 1);
    case 0xd2:
      need(buf, p, 5, end);
      c.pos = p + 5;
      return buf.readInt32BE(p + 1);
    case 0xd3:
      need(buf, p, 9, end);
      c.pos = p + 9;
      return Number(buf.readBigInt64BE(p + 1));
    case 0xca:
      need(buf, p, 5, end);
      c.pos = p + 5;
      return readFloat(buf, p + 1);
    case 0xcb:
      need(buf, p, 9, end);
      c.pos = p + 9;
      return readDouble(buf, p + 1);
    case 0xd9:
    case 0xda:
    case 0xdb: {
      const n = readStringHeader(buf, c, end);
      const s = c.pos;
      c.pos = s + n;
      return readUtf8(buf, s, s + n);
    }
    case 0xdc:
      need(buf, p, 3, end);
      return readArrayItems(buf, c, end, buf.readUInt16BE(p + 1), p + 3);
    case 0xdd:
      need(buf, p, 5, end);
      return readArrayItems(buf, c, end, buf.readUInt32BE(p + 1), p + 5);
    case 0xde:
      need(buf, p, 3, end);
      return readMapEntries(buf, c, end, buf.readUInt16BE(p + 1), p + 3);
    case 0xdf:
      need(buf, p, 5, end);
      return readMapEntries(buf, c, end, buf.readUInt32BE(p + 1), p + 5);
    default:
      throw new MsgpackError(`unsupported MessagePack type 0x${t.toString(16)} at byte ${p}`);
  }
}

function readArrayItems(buf: Buffer, c: Cursor, end: number, n: number, at: number): unknown[] {
  // Each item takes at least one byte: a count beyond the bytes left is corrupt (and must not allocate).
  if (n > end - at) throw new MsgpackError(`truncated MessagePack array at byte ${at}`);
  c.pos = at;
  const out = new Array<unknown>(n);
  for (let i = 0; i < n; i++) out[i] = readValue(buf, c, end);
  return out;
}

function readMapEntries(buf: Buffer, c: Cursor, end: number, n: number, at: number): Record<string, unknown> {
  if (n * 2 > end - at) throw new MsgpackError(`truncated MessagePack map at byte ${at}`);
  c.pos = at;
  const out: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const len = readStringHeader(buf, c, end);
    if (len < 0) throw new MsgpackError(`a map key that is not a string at byte ${c.pos}`);
    const k = readUtf8(buf, c.pos, c.pos + len);
    c.pos += len;
    const v = readValue(buf, c, end);
    // An own property even for "__proto__": assignment would set the prototype instead.
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
    else out[k] = v;
  }
  return out;
}

/** Header plus payload length of a bin/ext value at `p` whose length field is 1, 2 or 4 bytes (`width` 0, 1, 2). */
function skipSized(buf: Buffer, p: number, end: number, width: number): number {
  const lenBytes = 1 << width;
  need(buf, p, 1 + lenBytes, end);
  const n = width === 0 ? buf[p + 1] : width === 1 ? buf.readUInt16BE(p + 1) : buf.readUInt32BE(p + 1);
  return 1 + lenBytes + n;
}

/**
 * Advances `c.pos` past the value at `c.pos` without building it. Steps over every MessagePack type, including
 * bin and ext, which `readValue` refuses: a reader taking one field must not fail on another it does not want.
 */
export function skipValue(buf: Buffer, c: Cursor, end: number): void {
  const p = c.pos;
  need(buf, p, 1, end);
  const t = buf[p];
  if (t < 0x80 || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
    c.pos = p + 1;
    return;
  }
  if (t >= 0xa0 && t <= 0xbf) {
    c.pos = p + 1 + (t & 0x1f);
    need(buf, p + 1, t & 0x1f, end);
    return;
  }
  let items = -1;
  switch (t) {
    case 0xcc:
    case 0xd0:
      c.pos = p + 2;
      break;
    case 0xcd:
    case 0xd1:
      c.pos = p + 3;
      break;
    case 0xce:
    case 0xd2:
    case 0xca:
      c.pos = p + 5;
      break;
    case 0xcf:
    case 0xd3:
    case 0xcb:
      c.pos = p + 9;
      break;
    case 0xd9:
    case 0xda:
    case 0xdb: {
      // Not `c.pos += readStringHeader(…)`: that reads c.pos before the call moves it past the header.
      const n = readStringHeader(buf, c, end);
      c.pos += n;
      break;
    }
    case 0xc4:
    case 0xc5:
    case 0xc6:
      // bin 8/16/32: never written from JSON, but valid MessagePack that a skip must step over whole.
      c.pos = p + skipSized(buf, p, end, t - 0xc4);
      break;
    case 0xc7:
    case 0xc8:
    case 0xc9:
      // ext 8/16/32: a length, a type byte, the data.
      c.pos = p + skipSized(buf, p, end, t - 0xc7) + 1;
      break;
    case 0xd4:
      c.pos = p + 3;
      break;
    case 0xd5:
      c.pos = p + 4;
      break;
    case 0xd6:
      c.pos = p + 6;
      break;
    case 0xd7:
      c.pos = p + 10;
      break;
    case 0xd8:
      c.pos = p + 18;
      break;
    default:
      if (t >= 0x80 && t <= 0x8f) {
        items = (t & 0x0f) * 2;
        c.pos = p + 1;
      } else if (t >= 0x90 && t <= 0x9f) {
        items = t & 0x0f;
        c.pos = p + 1;
      } else if (t === 0xdc || t === 0xde) {
        need(buf, p, 3, end);
        items = buf.readUInt16BE(p + 1) * (t === 0xde ? 2 : 1);
        c.pos = p + 3;
      } else if (t === 0xdd || t === 0xdf) {
        need(buf, p, 5, end);
        items = buf.readUInt32BE(p + 1) * (t === 0xdf ? 2 : 1);
        c.pos = p + 5;
      } else throw new MsgpackError(`unsupported MessagePack type 0x${t.toString(16)} at byte ${p}`);
  }
  for (let i = 0; i < items; i++) skipValue(buf, c, end);
  if (c.pos > end) throw new MsgpackError(`truncated MessagePack at byte ${p}`);
}
