/**
 * The checkpoint codec: a view's saved state as bytes that any halflife reads back the same, on any Node version
 * and any machine (v8.serialize's format belongs to the V8 that wrote it, and a partition's state must move between
 * workers and nodes). Versioned: `HLCP` and a format byte, then one value.
 *
 * Values are what `save()` produces: undefined, null, booleans, numbers (any double: -0, NaN and the infinities
 * survive), strings, byte arrays (sketches), arrays and plain objects. Anything else is refused when encoding, so a
 * checkpoint never silently loses part of a state. Hand-written: the format is part of the engine's contract, and a
 * general serialiser would carry more than this needs.
 */
import { HalflifeError } from '../core/index.js';

const MAGIC = Buffer.from('HLCP', 'ascii');
/** Format of the bytes after the magic; a reader refuses formats it does not know. */
export const CHECKPOINT_CODEC_FORMAT = 1;

const T_UNDEFINED = 0;
const T_NULL = 1;
const T_FALSE = 2;
const T_TRUE = 3;
const T_DOUBLE = 4;
const T_INT32 = 5;
const T_STRING = 6;
const T_BYTES = 7;
const T_ARRAY = 8;
const T_OBJECT = 9;

/** Whether `bytes` were written by this codec (else: an older checkpoint, written by v8.serialize). */
export function isEncodedCheckpoint(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length + 1 && Buffer.from(bytes.buffer, bytes.byteOffset, MAGIC.length).equals(MAGIC);
}

export function encodeCheckpoint(value: unknown): Buffer {
  const w = new Writer();
  w.bytes(MAGIC);
  w.u8(CHECKPOINT_CODEC_FORMAT);
  w.value(value);
  return w.done();
}

export function decodeCheckpoint(bytes: Uint8Array): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isEncodedCheckpoint(buf)) throw corrupt('it does not start with HLCP');
  const format = buf[MAGIC.length];
  if (format !== CHECKPOINT_CODEC_FORMAT) throw corrupt(`format ${format} is newer than this halflife reads (${CHECKPOINT_CODEC_FORMAT})`);
  const r = new Reader(buf, MAGIC.length + 1);
  const v = r.value();
  if (r.pos !== buf.length) throw corrupt(`${buf.length - r.pos} bytes after the end`);
  return v;
}

function corrupt(reason: string): Error {
  return new HalflifeError('INTERNAL', { reason: `the checkpoint cannot be read: ${reason}` });
}

class Writer {
  buf = Buffer.allocUnsafe(64 * 1024);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  u32(n: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(n, this.pos);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    this.ensure(5 + s.length * 3);
    this.buf[this.pos] = T_STRING;
    const n = this.buf.write(s, this.pos + 5, 'utf8');
    this.buf.writeUInt32BE(n, this.pos + 1);
    this.pos += 5 + n;
  }

  value(v: unknown): void {
    switch (typeof v) {
      case 'undefined':
        this.u8(T_UNDEFINED);
        return;
      case 'boolean':
        this.u8(v ? T_TRUE : T_FALSE);
        return;
      case 'number':
        if ((v | 0) === v && !Object.is(v, -0)) {
          this.ensure(5);
          this.buf[this.pos] = T_INT32;
          this.buf.writeInt32BE(v, this.pos + 1);
          this.pos += 5;
        } else {
          this.ensure(9);
          this.buf[this.pos] = T_DOUBLE;
          this.buf.writeDoubleBE(v, this.pos + 1);
          this.pos += 9;
        }
        return;
      case 'string':
        this.string(v);
        return;
      case 'object': {
        if (v === null) {
          this.u8(T_NULL);
          return;
        }
        if (v instanceof Uint8Array) {
          this.u8(T_BYTES);
          this.u32(v.length);
          this.bytes(v);
          return;
        }
        if (Array.isArray(v)) {
          this.u8(T_ARRAY);
          this.u32(v.length);
          for (const x of v) this.value(x);
          return;
        }
        const proto = Object.getPrototypeOf(v) as unknown;
        if (proto !== Object.prototype && proto !== null) break;
        const keys = Object.keys(v);
        this.u8(T_OBJECT);
        this.u32(keys.length);
        for (const k of keys) {
          this.string(k);
          this.value((v as Record<string, unknown>)[k]);
        }
        return;
      }
    }
    throw new HalflifeError('INTERNAL', { reason: `a checkpoint cannot hold ${Object.prototype.toString.call(v)}` });
  }

  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
  ) {}

  need(n: number): void {
    if (this.pos + n > this.buf.length) throw corrupt('it ends in the middle of a value');
  }

  u32(): number {
    this.need(4);
    const n = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return n;
  }

  string(): string {
    this.need(1);
    if (this.buf[this.pos++] !== T_STRING) throw corrupt('an object key is not a string');
    return this.stringBody();
  }

  stringBody(): string {
    const n = this.u32();
    this.need(n);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  value(): unknown {
    this.need(1);
    const t = this.buf[this.pos++];
    switch (t) {
      case T_UNDEFINED:
        return undefined;
      case T_NULL:
        return null;
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_INT32: {
        this.need(4);
        const v = this.buf.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      }
      case T_DOUBLE: {
        this.need(8);
        const v = this.buf.readDoubleBE(this.pos);
        this.pos += 8;
        return v;
      }
      case T_STRING:
        return this.stringBody();
      case T_BYTES: {
        const n = this.u32();
        this.need(n);
        const v = new Uint8Array(this.buf.subarray(this.pos, this.pos + n));
        this.pos += n;
        return v;
      }
      case T_ARRAY: {
        const n = this.u32();
        // Each item takes at least a byte: a count past the end is corruption, not an allocation to attempt.
        this.need(n);
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) out[i] = this.value();
        return out;
      }
      case T_OBJECT: {
        const n = this.u32();
        this.need(n * 6);
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const k = this.string();
          // Own data properties, also for "__proto__".
          Object.defineProperty(out, k, { value: this.value(), enumerable: true, writable: true, configurable: true });
        }
        return out;
      }
      default:
        throw corrupt(`unknown tag ${t} at byte ${this.pos - 1}`);
    }
  }
}
