import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './helpers/server.js';

/** What a client sends must not grow the server's counters without bound (issue #11 item 8). */
test('events of countless unregistered types are counted under one label', async () => {
  const t = await startServer();
  try {
    await t.server.app.inject({ method: 'PUT', url: '/v1/schemas/known', payload: { type: 'object' } });
    for (let b = 0; b < 4; b++) {
      // Half are names no schema has, half are not even valid names (too long).
      const events = Array.from({ length: 500 }, (_, i) => ({ type: i % 2 === 0 ? `t${b}_${i}` : `t${b}_${i}_${'x'.repeat(1000)}`, data: {} }));
      events.push({ type: 'known', data: {} });
      const res = await t.server.app.inject({ method: 'POST', url: '/v1/events', payload: events });
      assert.equal(res.json().accepted, 1);
    }
    const outcomes = t.server.ingestor.outcomes();
    assert.deepEqual(outcomes.map((o) => [o.type, o.result, o.reason, o.count]).sort(), [
      ['(unregistered)', 'rejected', 'INVALID_EVENT', 1000],
      ['(unregistered)', 'rejected', 'UNKNOWN_TYPE', 1000],
      ['known', 'accepted', '', 4],
    ]);
    const metrics = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /halflife_ingest_events_total\{[^}]*type="\(unregistered\)"[^}]*\} 1000/);
    assert.ok(!metrics.includes('xxxxxxxxxx'), 'no unregistered type name in the metrics');
  } finally {
    await t.cleanup();
  }
});
