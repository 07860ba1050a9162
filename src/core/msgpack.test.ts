import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr, unpack } from 'msgpackr';
import { MsgpackError, MsgpackWriter, readValue, skipValue, TooDeepError } from './msgpack.js';
import { wideJsonValue } from '../../test/helpers/arbitraries.js';

function encode(v: unknown, maxDepth?: number): Buffer {
  const w = new MsgpackWriter(8);
  w.value(v, maxDepth);
  return Buffer.from(w.buffer.subarray(0, w.pos));
}

function decode(buf: Buffer): unknown {
  const c = { pos: 0 };
  const v = readValue(buf, c, buf.length);
  assert.equal(c.pos, buf.length, 'the whole value is read');
  return v;
}

/** JSON values as JSON.parse makes them (no -0: JSON has one zero; strings with well-formed UTF-16). */
const jsonValue = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown);

test('property: JSON values round-trip, and skipValue ends where readValue ends', () => {
  fc.assert(
    fc.property(jsonValue, (v) => {
      const buf = encode(v);
      assert.deepStrictEqual(decode(buf), v);
      const c = { pos: 0 };
      skipValue(buf, c, buf.length);
      assert.equal(c.pos, buf.length);
    }),
    { numRuns: 2000 },
  );
});

test('property: standard MessagePack both ways (msgpackr reads ours, we read msgpackr\'s)', () => {
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  // msgpackr drops "__proto__" keys on purpose; ours keep them as data (tested below).
  fc.assert(
    fc.property(jsonValue.filter((v) => !JSON.stringify(v).includes('"__proto__"')), (v) => {
      assert.deepStrictEqual(unpack(encode(v)), v);
      assert.deepStrictEqual(decode(packr.pack(v)), v);
    }),
    { numRuns: 2000 },
  );
});

test('every integer width, floats, -0 and strings of every header size', () => {
  const cases: unknown[] = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, -32, -33, -128, -129, -32768, -32769,
    -(2 ** 31), -(2 ** 31) - 1, 1.5, -1e-300, 1e300, Number.MAX_VALUE, Number.MIN_VALUE,
    '', 'a'.repeat(31), 'a'.repeat(32), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(65535), 'a'.repeat(65536),
    'é', 'é'.repeat(15), 'é'.repeat(16), 'é'.repeat(200), '日本語'.repeat(30000), '😀', '\u0000',
    true, false, null, [], {}, Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70000 }, () => 1),
    Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])),
    Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'é'.repeat(i * 10)])),
    Object.fromEntries(Array.from({ length: 70000 }, (_, i) => [`k${i}`, i])),
  ];
  for (const v of cases) {
    assert.deepStrictEqual(decode(encode(v)), v);
    assert.deepStrictEqual(unpack(encode(v)), v);
  }
  assert.ok(Object.is(decode(encode(-0)), -0), '-0 survives');
  assert.equal(encode(127).length, 1);
  assert.equal(encode(-32).length, 1);
  assert.equal(encode('a'.repeat(31)).length, 32);
});

test('a lone surrogate becomes U+FFFD, as in any UTF-8 text', () => {
  assert.equal(decode(encode('a\ud800b')), 'a\ufffdb');
});

test('__proto__ and constructor keys stay data: no prototype is set or polluted', () => {
  const v = JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}},"a":1}') as Record<string, unknown>;
  const out = decode(encode(v)) as Record<string, unknown>;
  assert.deepStrictEqual(Object.keys(out), ['__proto__', 'constructor', 'a']);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepStrictEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, { polluted: 1 });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('nesting beyond the limit throws TooDeepError; at the limit it is written', () => {
  assert.deepStrictEqual(decode(encode({ a: [1] }, 2)), { a: [1] });
  assert.throws(() => encode({ a: [[1]] }, 2), TooDeepError);
  assert.throws(() => encode([], 0), TooDeepError);
  assert.deepStrictEqual(decode(encode(5, 0)), 5);
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.throws(() => encode(deep, 32), TooDeepError, 'no stack overflow on absurd nesting');
});

test('damaged bytes throw MsgpackError, never read past the end or allocate from a forged count', () => {
  const good = encode({ a: 'hello', b: [1, 2, 3], c: 1.5 });
  for (let cut = 0; cut < good.length; cut++) {
    assert.throws(() => readValue(good, { pos: 0 }, cut), MsgpackError, `cut at ${cut}`);
    assert.throws(() => skipValue(good, { pos: 0 }, cut), MsgpackError, `skip cut at ${cut}`);
  }
  assert.throws(() => readValue(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), { pos: 0 }, 5), MsgpackError);
  assert.throws(() => readValue(Buffer.from([0xc1]), { pos: 0 }, 1), /unsupported MessagePack type 0xc1/);
  assert.throws(() => readValue(Buffer.from([0x81, 0x01, 0x01]), { pos: 0 }, 3), /not a string/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const buf = Buffer.from(bytes);
      try {
        readValue(buf, { pos: 0 }, buf.length);
      } catch (err) {
        assert.ok(err instanceof MsgpackError, String(err));
      }
    }),
    { numRuns: 5000 },
  );
});

test('property: skipValue steps over every form (every string and integer width, bin, ext, nesting) exactly', () => {
  // msgpackr writes Buffers as bin and Dates as the timestamp ext: forms the writer never makes but a skip must pass.
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const extra = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.constantFrom(Buffer.alloc(70_000, 1)),
    fc.date({ noInvalidDate: true }),
  );
  const value = fc.oneof(wideJsonValue({ bigStrings: true }), extra, fc.array(fc.oneof(wideJsonValue(), extra), { maxLength: 20 }));
  fc.assert(
    fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), fc.nat(), (values, pick) => {
      // Values back to back: skipping the first k must land exactly on the (k+1)th, which then reads right.
      const parts = values.map((v) => packr.pack(v));
      const buf = Buffer.concat(parts);
      const k = pick % values.length;
      const c = { pos: 0 };
      for (let i = 0; i < k; i++) skipValue(buf, c, buf.length);
      assert.equal(c.pos, parts.slice(0, k).reduce((n, p) => n + p.length, 0));
      const next = values[k];
      if (!Buffer.isBuffer(next) && !(next instanceof Date) && !(Array.isArray(next) && next.some((x) => Buffer.isBuffer(x) || x instanceof Date))) {
        assert.deepStrictEqual(readValue(buf, c, buf.length), next);
      } else skipValue(buf, c, buf.length);
      for (let i = k + 1; i < values.length; i++) skipValue(buf, c, buf.length);
      assert.equal(c.pos, buf.length);
    }),
    { numRuns: 500 },
  );
});

test('our own encoding of wide values round-trips and skips to its end', () => {
  fc.assert(
    fc.property(wideJsonValue(), (v) => {
      const buf = encode(v);
      assert.deepStrictEqual(decode(buf), v);
      const c = { pos: 0 };
      skipValue(buf, c, buf.length);
      assert.equal(c.pos, buf.length);
    }),
    { numRuns: 1500 },
  );
});
