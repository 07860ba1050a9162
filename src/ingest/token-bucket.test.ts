import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket, TokenBuckets } from './token-bucket.js';

test('a bucket spends its burst, refills at its rate, and says when n tokens will be there', () => {
  const b = new TokenBucket(100, 500, 0);
  assert.ok(b.take(500, 0));
  assert.ok(!b.take(1, 0));
  assert.equal(b.retryAfterS(100, 0), 1);
  assert.equal(b.retryAfterS(250, 0), 3);
  assert.ok(!b.take(100, 999));
  assert.ok(b.take(100, 1000));
  assert.ok(b.take(500, 60_000), 'refills up to the burst');
  assert.ok(!b.take(1, 60_000));
  assert.equal(b.retryAfterS(501, 60_000), Infinity);
});

test('buckets by name keep at most maxBuckets, dropping the least recently used', () => {
  const bs = new TokenBuckets(1, 2, 3);
  for (const k of ['a', 'b', 'c']) assert.ok(bs.get(k, 0).take(2, 0));
  bs.get('a', 0); // a is now the most recent
  bs.get('d', 0);
  assert.equal(bs.size, 3);
  assert.ok(!bs.get('a', 0).take(1, 0), 'a kept its empty bucket');
  assert.ok(bs.get('b', 0).take(2, 0), 'b was dropped and starts full');
  assert.ok(!bs.get('x', 0, 5, 10).take(11, 0));
  assert.ok(bs.get('x', 0, 5, 10).take(10, 0), 'a bucket with its own rate and burst');
});
