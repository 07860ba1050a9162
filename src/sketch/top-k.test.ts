import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TopK } from './top-k.js';

const stream = fc.array(fc.integer({ min: 0, max: 300 }).map((n) => `v${Math.floor(Math.sqrt(n * 90))}`), { maxLength: 3000 });

function truth(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

test('property: counts bound the truth (count - error <= true <= count) and heavy hitters are found', () => {
  fc.assert(
    fc.property(stream, fc.integer({ min: 1, max: 10 }), (xs, k) => {
      const t = new TopK(k, 20);
      xs.forEach((x) => t.add(x));
      const real = truth(xs);
      for (const e of t.top()) {
        const n = real.get(e.value) ?? 0;
        assert.ok(e.count - e.error <= n && n <= e.count, `${e.value}: true ${n}, reported ${e.count}±${e.error}`);
      }
      // Any value with more than n / capacity occurrences is guaranteed to be tracked.
      const all = new TopK(20, 20);
      xs.forEach((x) => all.add(x));
      const kept = new Set(all.top().map((e) => e.value));
      for (const [v, n] of real) if (n > xs.length / 20) assert.ok(kept.has(v), `${v} (${n}) missing`);
    }),
    { numRuns: 150 },
  );
});

test('exact when the distinct values fit; merge of disjoint-free streams adds counts', () => {
  const a = new TopK(3);
  const b = new TopK(3);
  ['x', 'x', 'y', 'z', 'x'].forEach((v) => a.add(v));
  ['y', 'y', 'w'].forEach((v) => b.add(v));
  assert.deepEqual(a.top(), [
    { value: 'x', count: 3, error: 0 },
    { value: 'y', count: 1, error: 0 },
    { value: 'z', count: 1, error: 0 },
  ]);
  assert.deepEqual(a.clone().merge(b).top(), [
    { value: 'x', count: 3, error: 0 },
    { value: 'y', count: 3, error: 0 },
    { value: 'w', count: 1, error: 0 },
  ]);
  assert.deepEqual(TopK.deserialize(a.serialize()).top(), a.top());
});

test('property: merged summaries still bound the truth of the combined stream', () => {
  fc.assert(
    fc.property(stream, stream, (xs, ys) => {
      const a = new TopK(5, 25);
      const b = new TopK(5, 25);
      xs.forEach((x) => a.add(x));
      ys.forEach((y) => b.add(y));
      const m = a.merge(b);
      const real = truth([...xs, ...ys]);
      for (const e of m.top()) {
        const n = real.get(e.value) ?? 0;
        assert.ok(e.count - e.error <= n && n <= e.count, `${e.value}: true ${n}, reported ${e.count}±${e.error}`);
      }
    }),
    { numRuns: 150 },
  );
});
