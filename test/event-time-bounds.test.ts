import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, startServer } from './helpers/server.js';

/** A write key must not be able to poison event-time views with a far-future time (issue #11 item 5). */
test('one far-future event among normal traffic is rejected and moves no watermark; times far behind are refused too', async () => {
  const t = await startServer();
  try {
    const inject = async (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown) => {
      const res = await t.server.app.inject({ method, url, payload: payload === undefined ? undefined : JSON.stringify(payload), headers: payload === undefined ? {} : { 'content-type': 'application/json' } });
      return res.json() as any;
    };
    await inject('PUT', '/v1/schemas/trade', { type: 'object', properties: { pair: { type: 'string' } } });
    await inject('PUT', '/v1/views/per_minute', { sql: "CREATE VIEW per_minute WITH (max_lateness = '1m') AS SELECT pair, COUNT(*) AS n FROM trade GROUP BY pair, TUMBLE(event_time, INTERVAL '1' MINUTE)" });
    const now = Date.now();
    const normal = (i: number) => ({ type: 'trade', key: `k${i % 8}`, ts: now - 1000 + i, data: { pair: 'EURUSD' } });
    const sent = await inject('POST', '/v1/events', [normal(0), normal(1), { type: 'trade', key: 'k2', ts: 8.64e15, data: { pair: 'EURUSD' } }, normal(2), { type: 'trade', ts: now - 31 * 86_400_000, data: { pair: 'EURUSD' } }]);
    assert.equal(sent.accepted, 3);
    assert.deepEqual(sent.errors.map((e: { index: number; code: string; path: string }) => [e.index, e.code, e.path]), [
      [2, 'EVENT_TIME_OUT_OF_RANGE', '$.ts'],
      [4, 'EVENT_TIME_OUT_OF_RANGE', '$.ts'],
    ]);
    assert.match(sent.errors[0].message, /\+275760-09-13T00:00:00\.000Z\) is more than 86400000 ms ahead of the server's clock \(ingest\.maxEventTimeAheadMs\)/);
    assert.match(sent.errors[1].message, /behind the server's clock \(ingest\.maxEventTimeBehindMs\)/);
    // Normal traffic goes on counting in its own windows: nothing late, nothing in the year 275760.
    const later = await inject('POST', '/v1/events', [normal(3), normal(4)]);
    assert.equal(later.accepted, 2);
    await caughtUp(t, 'per_minute');
    const rows = (await inject('GET', '/v1/views/per_minute?pair=EURUSD')).rows as { n: number; window_start: number }[];
    assert.equal(rows.reduce((a, r) => a + r.n, 0), 5);
    assert.ok(rows.every((r) => r.window_start <= now + 60_000), JSON.stringify(rows));
    assert.equal((await inject('GET', '/v1/views/per_minute/late')).count, 0);
    // Dead-lettered, so a fixed client can replay them.
    const letters = (await inject('GET', '/v1/deadletters?code=EVENT_TIME_OUT_OF_RANGE')).deadletters;
    assert.equal(letters.length, 2);
  } finally {
    await t.cleanup();
  }
});
