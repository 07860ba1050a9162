import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DDSketch } from './ddsketch.js';

function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))];
}

const values = fc.array(fc.oneof(fc.double({ min: 1e-3, max: 1e9, noNaN: true }), fc.double({ min: -1e6, max: -1e-3, noNaN: true }), fc.constant(0)), {
  minLength: 1,
  maxLength: 2000,
});

test('property: every quantile is within the relative accuracy of the exact one', () => {
  fc.assert(
    fc.property(values, fc.constantFrom(0.01, 0.02, 0.05), (xs, alpha) => {
      const d = new DDSketch(alpha);
      xs.forEach((x) => d.add(x));
      const sorted = [...xs].sort((a, b) => a - b);
      for (const q of [0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1]) {
        const exact = exactQuantile(sorted, q);
        const got = d.quantile(q)!;
        assert.ok(Math.abs(got - exact) <= alpha * Math.abs(exact) + 1e-9, `q=${q}: ${got} vs ${exact}`);
      }
      assert.equal(d.count, xs.length);
    }),
    { numRuns: 150 },
  );
});

test('property: merge equals the sketch of the union; serialisation round-trips', () => {
  fc.assert(
    fc.property(values, values, (xs, ys) => {
      const a = new DDSketch();
      const b = new DDSketch();
      const u = new DDSketch();
      xs.forEach((x) => (a.add(x), u.add(x)));
      ys.forEach((y) => (b.add(y), u.add(y)));
      const m = a.clone().merge(b);
      for (const q of [0, 0.1, 0.5, 0.99, 1]) assert.equal(m.quantile(q), u.quantile(q));
      assert.equal(DDSketch.deserialize(m.serialize()).quantile(0.5), m.quantile(0.5));
    }),
    { numRuns: 100 },
  );
});

test('an empty sketch has no quantiles; the bucket count stays bounded and high quantiles stay accurate', () => {
  assert.equal(new DDSketch().quantile(0.5), null);
  const d = new DDSketch(0.01, 128);
  const xs: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const x = Math.exp((i % 1000) / 20);
    xs.push(x);
    d.add(x);
  }
  assert.ok(d.bytes < 64 + 2 * 128 * 8 + 16);
  const sorted = xs.sort((a, b) => a - b);
  const p99 = exactQuantile(sorted, 0.99);
  assert.ok(Math.abs(d.quantile(0.99)! - p99) <= 0.01 * p99);
});

test('property: fine accuracies hold on narrow spreads (prices within 1 %) and across four orders of magnitude', () => {
  const narrow = fc.array(fc.double({ min: 100, max: 101, noNaN: true }), { minLength: 1, maxLength: 1000 });
  const wide = fc.array(fc.double({ min: 0.01, max: 100, noNaN: true }), { minLength: 1, maxLength: 1000 });
  fc.assert(
    fc.property(fc.oneof(narrow, wide), fc.constantFrom(0.001, 0.0001, 0.00001), (xs, alpha) => {
      const d = new DDSketch(alpha);
      xs.forEach((x) => d.add(x));
      const sorted = [...xs].sort((a, b) => a - b);
      for (const q of [0.01, 0.05, 0.5, 0.95, 0.99]) {
        const exact = exactQuantile(sorted, q);
        const got = d.quantile(q)!;
        assert.ok(Math.abs(got - exact) <= alpha * Math.abs(exact) + 1e-9, `alpha=${alpha} q=${q}: ${got} vs ${exact}`);
      }
    }),
    { numRuns: 100 },
  );
  // The case: at the default 1 % a p95 on a 1 % spread can only say "about 100"; at 0.01 % it is the p95.
  const prices = Array.from({ length: 1000 }, (_, i) => 100 + i / 1000);
  const fine = new DDSketch(0.0001);
  prices.forEach((p) => fine.add(p));
  assert.ok(Math.abs(fine.quantile(0.95)! - 100.949) < 0.02, String(fine.quantile(0.95)));
});
