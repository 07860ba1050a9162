import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c } from './crc32c.js';

test('crc32c matches the RFC 3720 check values', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e);
});

test('crc32c of a sub-range equals crc32c of the copied bytes', () => {
  const buf = Buffer.from('xxhello, halflife log recordyy');
  assert.equal(crc32c(buf, 2, buf.length - 2), crc32c(Buffer.from('hello, halflife log record')));
});
