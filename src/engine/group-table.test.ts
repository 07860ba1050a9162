import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { AggSpec, EventRow } from '../sql/index.js';
import { GroupTable, groupId } from './group-table.js';

const row = { data: {} } as unknown as EventRow;
const countStar: AggSpec = { fn: 'count_star', arg: undefined, param: undefined, label: 'COUNT(*)' };
const count = (t: GroupTable, keys: unknown[]): number | undefined => t.get(groupId(keys))?.accs[0].result() as number | undefined;

/** Key values of every kind a JSON event can carry, including the ones a naive hash table gets wrong. */
const keyArb = fc.oneof(
  fc.constantFrom<unknown>('5', 5, 5.5, -0, 0, Number.NaN, null, undefined, true, false, '', 'NaN', 'null', 'true'),
  fc.string({ maxLength: 6 }),
  fc.integer(),
  fc.double(),
  fc.dictionary(fc.constantFrom('a', 'b'), fc.integer({ min: 0, max: 3 }), { maxKeys: 2 }),
);

test('rows are found again by key: each distinct key value (5 apart from "5", NaN equal to NaN, equal objects equal) has one row', () => {
  fc.assert(
    fc.property(fc.array(fc.array(keyArb, { minLength: 1, maxLength: 2 }), { maxLength: 300 }), fc.boolean(), (keyLists, two) => {
      const width = two ? 2 : 1;
      const table = new GroupTable([countStar], null, null, width);
      const model = new Map<unknown, number>();
      for (const ks of keyLists) {
        const keys = Array.from({ length: width }, (_, i) => ks[i % ks.length]);
        const id = groupId(keys);
        table.add(id, keys, row, 1);
        model.set(id, (model.get(id) ?? 0) + 1);
      }
      assert.equal(table.size, model.size);
      for (const [id, n] of model) assert.equal(table.get(id)?.accs[0].result(), n);
      assert.deepEqual(
        [...table.entries()].map(([id]) => (id === 0 ? 0 : id)), // a Map keeps -0 as 0
        [...model.keys()],
      );
    }),
    { numRuns: 200 },
  );
});

test('a table of 100,000 keys keeps every count, and counts past 2^32 widen instead of wrapping', () => {
  const table = new GroupTable([countStar], 0, 60_000, 1);
  for (let i = 0; i < 100_000; i++) table.add(`k${i}`, [`k${i}`], row, i);
  for (let i = 0; i < 100_000; i += 7) table.add(`k${i}`, [`k${i}`], row, 100_000 + i);
  assert.equal(table.size, 100_000);
  assert.equal(count(table, ['k0']), 2);
  assert.equal(count(table, ['k1']), 1);
  assert.equal(count(table, ['k99995']), 2);
  assert.equal(count(table, ['missing']), undefined);
  assert.equal(table.get('k7')?.version, 100_007);

  const big = new GroupTable([countStar], null, null, 1);
  big.absorb('x', ['x'], [{ save: () => 2 ** 32 - 1 } as never], 1);
  big.add('x', ['x'], row, 2 ** 40);
  assert.equal(count(big, ['x']), 2 ** 32);
  assert.equal(big.get('x')?.version, 2 ** 40);
});
