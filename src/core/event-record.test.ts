import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeEventRecord,
  encodeEventRecord,
  eventRecordId,
  eventRecordIs,
  eventRecordReplayOf,
  eventRecordType,
  readEventData,
  readEventHeader,
} from './event-record.js';
import { wideJsonValue } from '../../test/helpers/arbitraries.js';

test('an event record round-trips: header fields, id and data', () => {
  const data = { a: 'é', n: 1.5, nested: { x: [1, null, true] } };
  for (const [eventTimeMs, replayOf, id] of [[undefined, undefined, undefined], [1767225600000, undefined, 'x1'], [undefined, 42, undefined], [5, 7, 'id-é']] as const) {
    const bytes = encodeEventRecord({ receivedAt: 1795333816355, schemaVersion: 3, type: 'page_view', eventTimeMs, replayOf, id, data });
    assert.equal(eventRecordType(bytes), 'page_view');
    assert.ok(eventRecordIs(bytes, 'page_view'));
    assert.ok(!eventRecordIs(bytes, 'page_vie'));
    assert.equal(eventRecordId(bytes), id);
    assert.equal(eventRecordReplayOf(bytes), replayOf);
    assert.deepEqual(decodeEventRecord(bytes, 'k'), {
      type: 'page_view',
      data,
      ...(id === undefined ? {} : { id }),
      key: 'k',
      ...(eventTimeMs === undefined ? {} : { event_time: eventTimeMs }),
      received_at: 1795333816355,
      schema_version: 3,
      ...(replayOf === undefined ? {} : { replay_of: replayOf }),
    });
  }
});

test('version 2 records (the envelope JSON) are still read', () => {
  const env = Buffer.from('{ "type":"t", "data":{"a":"é"}, "id":"x1", "key":"k" }');
  const head = Buffer.alloc(15 + 1 + 8);
  head[0] = 2;
  head[1] = 1; // event_time
  head.writeUInt32LE(4, 2);
  head.writeDoubleLE(1000, 6);
  head[14] = 1;
  head[15] = 't'.charCodeAt(0);
  head.writeDoubleLE(500, 16);
  const bytes = Buffer.concat([head, env]);
  assert.deepEqual(decodeEventRecord(bytes), { type: 't', data: { a: 'é' }, id: 'x1', key: 'k', event_time: 500, received_at: 1000, schema_version: 4 });
  assert.equal(eventRecordId(bytes), 'x1');
  assert.equal(readEventData(bytes, 0, bytes.length, readEventHeader(bytes).payloadOffset, ['a'], {}, { pos: 0 }), false);
});

test('an unknown record version is refused', () => {
  assert.throws(() => decodeEventRecord(Buffer.from([9, 0, 0, 0, 0, 0])), /unknown event record version 9/);
});

test('property: readEventData returns exactly the wanted fields of data, among other records in one buffer', () => {
  const key = fc.oneof(fc.constantFrom('a', 'b', 'é', '__proto__', 'toString'), fc.string({ maxLength: 6 }));
  fc.assert(
    fc.property(
      fc.dictionary(key, fc.jsonValue()),
      fc.array(key, { maxLength: 5 }),
      fc.option(fc.string({ minLength: 1 }), { nil: undefined }),
      (dataIn, wanted, id) => {
        const data = JSON.parse(JSON.stringify(dataIn)) as Record<string, unknown>;
        const rec = encodeEventRecord({ receivedAt: 1, schemaVersion: 1, type: 'e', id, data });
        const buf = Buffer.concat([Buffer.from('xyz'), rec, Buffer.from('abc')]);
        const out: Record<string, unknown> = {};
        const h = readEventHeader(buf, 3);
        assert.ok(readEventData(buf, 3, 3 + rec.length, h.payloadOffset, [...new Set(wanted)], out, { pos: 0 }));
        const expected: Record<string, unknown> = {};
        for (const w of new Set(wanted)) if (Object.hasOwn(data, w)) Object.defineProperty(expected, w, { value: data[w], enumerable: true, writable: true, configurable: true });
        assert.deepStrictEqual(out, expected);
        assert.equal(Object.getPrototypeOf(out), Object.prototype);
      },
    ),
    { numRuns: 1000 },
  );
});

test('issue #10 reproduction: a string of 32 bytes or more is skipped whole, so later fields read right', () => {
  const events = [{ note: 'a'.repeat(40), n: 5 }, { note: 'short', n: 7 }, { note: 'y'.repeat(31), n: 11 }];
  for (const data of events) {
    const rec = encodeEventRecord({ receivedAt: 1, schemaVersion: 1, type: 'note', data });
    const out: Record<string, unknown> = {};
    assert.ok(readEventData(rec, 0, rec.length, readEventHeader(rec).payloadOffset, ['n'], out, { pos: 0 }));
    assert.deepStrictEqual(out, { n: data.n });
  }
  // A wanted name whose characters equal the UTF-8 bytes of another key ("Ã©" vs "é") is not that key.
  const rec = encodeEventRecord({ receivedAt: 1, schemaVersion: 1, type: 'e', data: { 'é': 1, 'Ã©': 2 } });
  const out: Record<string, unknown> = {};
  readEventData(rec, 0, rec.length, readEventHeader(rec).payloadOffset, ['Ã©'], out, { pos: 0 });
  assert.deepStrictEqual(out, { 'Ã©': 2 });
});

test('property: the field reader returns what JSON.parse of the event gives, for any subset in any order, undisturbed by other reads', () => {
  const fieldName = fc.oneof(fc.constantFrom('a', 'n', 'note', 'é', 'Ã©', '__proto__', 'toString', 'x'.repeat(40)), fc.string({ maxLength: 40 }));
  const dataArb = fc.dictionary(fieldName, wideJsonValue(), { maxKeys: 20 });
  fc.assert(
    fc.property(
      dataArb,
      fc.array(fc.array(fc.oneof(fieldName, fc.nat()), { maxLength: 8 }), { minLength: 1, maxLength: 4 }),
      fc.option(fc.string({ minLength: 1, maxLength: 300 }), { nil: undefined }),
      (dataIn, reads, id) => {
        const text = JSON.stringify({ type: 'e', data: dataIn, id });
        const oracle = (JSON.parse(text) as { data: Record<string, unknown> }).data;
        const names = Object.keys(oracle);
        const rec = encodeEventRecord({ receivedAt: 1, schemaVersion: 1, type: 'e', id, data: oracle });
        const buf = Buffer.concat([Buffer.from('xyz'), rec, Buffer.from('abc')]);
        const h = readEventHeader(buf, 3);
        const cursor = { pos: 0 };
        // Several reads of one record through one cursor, as the engine does for several views.
        for (const read of reads) {
          const wanted = [...new Set(read.map((w) => (typeof w === 'number' ? (names[w % Math.max(1, names.length)] ?? 'absent') : w)))];
          const out: Record<string, unknown> = {};
          assert.ok(readEventData(buf, 3, 3 + rec.length, h.payloadOffset, wanted, out, cursor));
          const expected: Record<string, unknown> = {};
          for (const w of wanted) if (Object.hasOwn(oracle, w)) Object.defineProperty(expected, w, { value: oracle[w], enumerable: true, writable: true, configurable: true });
          assert.deepStrictEqual(out, expected);
          assert.equal(Object.getPrototypeOf(out), Object.prototype);
        }
        // The whole record decodes to the oracle too.
        assert.deepStrictEqual(decodeEventRecord(rec).data, oracle);
      },
    ),
    { numRuns: 1500 },
  );
});
