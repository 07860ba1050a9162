import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NumberColumn } from './columns.js';

test('a NumberColumn keeps every row across its first chunk doubling and later whole chunks, and converts losslessly', () => {
  const c = new NumberColumn((n) => new Uint32Array(n));
  const rows = 200_000; // past three 65,536-row chunks
  for (let r = 0; r < rows; r++) {
    c.ensure(r + 1);
    assert.equal(c.get(r), 0, 'a new row reads 0');
    c.set(r, r * 3);
  }
  for (let r = 0; r < rows; r += 997) assert.equal(c.get(r), r * 3);
  assert.equal(c.bytesPerRow, 4);
  const wide = c.convert((n) => new Float64Array(n));
  wide.set(5, 2 ** 40);
  assert.equal(wide.get(5), 2 ** 40);
  assert.equal(wide.get(rows - 1), (rows - 1) * 3);
  assert.equal(c.get(5), 15, 'the source is not changed');
  assert.equal(wide.bytesPerRow, 8);
});
