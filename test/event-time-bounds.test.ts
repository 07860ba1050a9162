import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, inject, startServer } from './helpers/server.js';

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

/**
 * An event time ahead of the server's clock but within ingest.maxEventTimeAheadMs is counted in its own window and
 * moves no watermark past its arrival: once every partition is quiet, the watermark follows the slowest clock it
 * supports, not the hostile event, and the next normal event is not late (issue #11 item 5).
 */
test('an accepted event 12 hours ahead moves no watermark past its arrival, also once every partition is quiet', async () => {
  const t = await startServer();
  try {
    await inject(t, 'PUT', '/v1/schemas/trade', { type: 'object', properties: { pair: { type: 'string' } } });
    await inject(t, 'PUT', '/v1/views/per_minute', { sql: "CREATE VIEW per_minute WITH (max_lateness = '1m', idle_timeout = '100ms') AS SELECT pair, COUNT(*) AS n FROM trade GROUP BY pair, TUMBLE(event_time, INTERVAL '1' MINUTE)" });
    const now = Date.now();
    const normal = (i: number) => ({ type: 'trade', key: `k${i % 8}`, ts: now - 1000 + i, data: { pair: 'EURUSD' } });
    const ahead = now + 12 * 3_600_000;
    const sent = await inject(t, 'POST', '/v1/events', [normal(0), normal(1), { type: 'trade', key: 'k2', ts: ahead, data: { pair: 'EURUSD' } }, normal(3)]);
    assert.equal(sent.body.accepted, 4);
    await caughtUp(t, 'per_minute');
    // Every partition goes quiet: the watermark moves to the newest clock any partition supports. Before that the
    // slowest partition holds it at about now - 61 s; the hostile event arrived after \`now\`.
    let watermark: number | null = null;
    for (let i = 0; i < 1000 && (watermark === null || watermark < now - 60_000); i++) {
      await new Promise((r) => setTimeout(r, 10));
      watermark = (await t.server.engine.info('per_minute')).watermark;
    }
    assert.ok(watermark !== null && watermark >= now - 60_000, `watermark ${watermark} did not move once the partitions were quiet`);
    assert.ok(watermark <= Date.now() - 60_000, `watermark ${new Date(watermark).toISOString()} passed the server's clock`);
    const later = await inject(t, 'POST', '/v1/events', [normal(4)]);
    assert.equal(later.body.accepted, 1);
    await caughtUp(t, 'per_minute');
    assert.equal((await inject(t, 'GET', '/v1/views/per_minute/late')).body.count, 0);
    const rows = (await inject(t, 'GET', '/v1/views/per_minute?pair=EURUSD')).body.rows as { n: number; window_start: number }[];
    assert.equal(rows.reduce((a, r) => a + r.n, 0), 5);
    assert.ok(rows.some((r) => r.window_start === Math.floor(ahead / 60_000) * 60_000 && r.n === 1), JSON.stringify(rows));
  } finally {
    await t.cleanup();
  }
});
