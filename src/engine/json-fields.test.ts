import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { extractDataFields } from './json-fields.js';

function extract(json: string, wanted: string[]): Record<string, unknown> | undefined {
  const buf = Buffer.from(`xx${json}yy`);
  const out: Record<string, unknown> = {};
  return extractDataFields(buf, 2, buf.length - 2, wanted, out) ? out : undefined;
}

test('extracts wanted data fields of every JSON type, skipping the rest', () => {
  const env = JSON.stringify({ type: 't', key: 'k', data: { s: 'a"b\\\\c', n: -12, f: 1.5e3, big: 12345678901234567, t: true, x: false, z: null, o: { a: [1, { b: '}' }] }, skip: '{[', u: 'é' }, ts: 5 });
  const { skip: _skip, ...wantedData } = JSON.parse(env).data;
  assert.deepEqual(extract(env, ['s', 'n', 'f', 'big', 't', 'x', 'z', 'o', 'u']), wantedData);
  assert.deepEqual(extract('{"data":{"a":1}}', ['missing']), {});
  assert.deepEqual(extract(' { "type" : "t" , "data" : { "a" : "x" , "b" : 2 } } ', ['b']), { b: 2 });
  assert.deepEqual(extract('{"type":"t"}', ['a']), {});
  assert.equal(extract('{"data":{"a\\u0062":1}}', ['ab']), undefined, 'escaped keys fall back to the parser');
  assert.equal(extract('[1]', ['a']), undefined);
});

test('repeated keys mean what JSON.parse makes of them: the last one wins, or the full parser decides', () => {
  assert.deepEqual(extract('{"data":{"a":1,"b":2,"a":3}}', ['a', 'b']), { a: 3, b: 2 });
  assert.equal(extract('{"data":{"a":1},"data":{"a":2}}', ['a']), undefined);
  assert.equal(extract('{"data":{"a":1},"d\\u0061ta":{"a":2}}', ['a']), undefined);
  assert.equal(JSON.parse('{"data":{"a":1},"d\u0061ta":{"a":2}}').data.a, 2);
});

test('property: extracted fields equal JSON.parse of the same envelope', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 8 }),
      fc.boolean(),
      (data, pretty) => {
        const env = JSON.stringify({ type: 't', data, id: 'x' }, null, pretty ? 2 : undefined);
        const wanted = Object.keys(data).filter((k, i) => i % 2 === 0 && !/[\\"]/.test(k) && !/[\u0000-\u001f]/.test(k));
        const got = extract(env, wanted);
        if (got === undefined) return; // declined: the caller parses fully
        const parsed = JSON.parse(env).data as Record<string, unknown>;
        for (const k of wanted) assert.deepEqual(got[k], parsed[k]);
      },
    ),
    { numRuns: 500 },
  );
});
