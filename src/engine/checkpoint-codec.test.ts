import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deserialize, serialize } from 'node:v8';
import fc from 'fast-check';
import { decodeCheckpoint, encodeCheckpoint, isEncodedCheckpoint } from './checkpoint-codec.js';

/** What save() produces: undefined, null, booleans, any double, strings, byte arrays, arrays, plain objects. */
const value = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom<unknown>(undefined, null, true, false, -0, 0, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31), 2 ** 53, '', '__proto__'),
    fc.double(),
    fc.integer(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(fc.string({ unit: 'grapheme' }), tie('v'), { maxKeys: 5 }),
  ),
})).v;

test('a checkpoint decodes to what was encoded, as v8 (the codec it replaces) round-trips it', () => {
  fc.assert(
    fc.property(value, (v) => {
      const bytes = encodeCheckpoint(v);
      assert.ok(isEncodedCheckpoint(bytes));
      const back = decodeCheckpoint(bytes);
      // (v8 gives plain objects for objects without a prototype, too.)
      assert.deepStrictEqual(back, deserialize(serialize(v)));
    }),
    { numRuns: 3000 },
  );
});

test('every truncation and unknown format is refused, never misread', () => {
  const bytes = encodeCheckpoint({ offsets: [1, 2, 3], state: { groups: [[['a'], 0, 60_000, false, [1, new Uint8Array([1, 2, 3])]]], watermark: -Infinity } });
  for (let n = 0; n < bytes.length; n++) assert.throws(() => decodeCheckpoint(bytes.subarray(0, n)), /the checkpoint cannot be read/, `${n} bytes`);
  const newer = Buffer.from(bytes);
  newer[4] = 99;
  assert.throws(() => decodeCheckpoint(newer), /format 99 is newer/);
  assert.throws(() => decodeCheckpoint(Buffer.concat([bytes, Buffer.from([0])])), /1 bytes after the end/);
  assert.equal(isEncodedCheckpoint(serialize({ a: 1 })), false);
  assert.throws(() => encodeCheckpoint({ m: new Map() }), /a checkpoint cannot hold \[object Map\]/);
  assert.throws(() => encodeCheckpoint([1n]), /a checkpoint cannot hold/);
});
