import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { depthOf, splitTopLevel } from './json-split.js';

function depthOfValue(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  const children = Array.isArray(v) ? v : Object.values(v);
  return 1 + children.reduce((m: number, c) => Math.max(m, depthOfValue(c)), 0);
}

test('splits an array into its elements with depths, through strings with brackets, commas and escapes', () => {
  const body = Buffer.from(' [ {"a":"x,]\\"}"} , 12,"s\\\\",[1,[2]] ,{ } ] ');
  const r = splitTopLevel(body);
  assert.equal(r.isArray, true);
  const parts = r.starts.map((s, i) => body.toString('utf8', s, r.ends[i]));
  assert.deepEqual(parts, ['{"a":"x,]\\"}"}', '12', '"s\\\\"', '[1,[2]]', '{ }']);
  assert.deepEqual(r.depths, [1, 0, 0, 2, 1]);
  assert.deepEqual(splitTopLevel(Buffer.from('[]')).starts, []);
  const single = splitTopLevel(Buffer.from('\n{"x":{"y":1}}\n'));
  assert.equal(single.isArray, false);
  assert.deepEqual(single.depths, [2]);
});

test('property: for any JSON array, the slices parse back to the elements, with their depths', () => {
  fc.assert(
    fc.property(fc.array(fc.jsonValue({ maxDepth: 4 })), fc.boolean(), (values, pretty) => {
      const body = Buffer.from(JSON.stringify(values, null, pretty ? 2 : undefined));
      const r = splitTopLevel(body);
      assert.equal(r.starts.length, values.length);
      r.starts.forEach((s, i) => {
        assert.deepEqual(JSON.parse(body.toString('utf8', s, r.ends[i])), JSON.parse(JSON.stringify(values[i])));
        assert.equal(r.depths[i], depthOfValue(values[i]));
      });
    }),
    { numRuns: 300 },
  );
});

test('depthOf counts nesting of a single value', () => {
  assert.equal(depthOf(Buffer.from('{"a":{"b":{"c":"{{{{"}}}'), 0, 23), 3);
});
