import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEventRecord, EventRecordEncoder, eventRecordIs, eventRecordType } from './event-record.js';

test('an event record round-trips: header fields and the envelope bytes as sent', () => {
  const envelope = Buffer.from('{ "type":"page_view", "data":{"a":"é"}, "id":"x1", "key":"k", "ts":"2026-01-01T00:00:00Z" }');
  for (const [eventTime, replayOf] of [[undefined, undefined], [1767225600000, undefined], [undefined, 42], [5, 7]] as const) {
    const enc = new EventRecordEncoder(1795333816355, 3, 'page_view', eventTime, replayOf, envelope);
    const buf = Buffer.alloc(enc.byteLength + 4);
    assert.equal(enc.writeTo(buf, 2), 2 + enc.byteLength);
    const bytes = buf.subarray(2, 2 + enc.byteLength);
    assert.equal(eventRecordType(bytes), 'page_view');
    assert.ok(eventRecordIs(bytes, 'page_view'));
    assert.ok(!eventRecordIs(bytes, 'page_vie'));
    const rec = decodeEventRecord(bytes);
    assert.deepEqual(rec, {
      type: 'page_view',
      data: { a: 'é' },
      id: 'x1',
      key: 'k',
      ...(eventTime === undefined ? {} : { event_time: eventTime }),
      received_at: 1795333816355,
      schema_version: 3,
      ...(replayOf === undefined ? {} : { replay_of: replayOf }),
    });
  }
});

test('an unknown record version is refused', () => {
  assert.throws(() => decodeEventRecord(Buffer.from([9, 0, 0, 0, 0, 0])), /unknown event record version 9/);
});
