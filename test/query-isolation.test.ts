import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, startServer } from './helpers/server.js';

/**
 * An expensive ad-hoc query must not hold up the views (issue #11 item 4): it runs in slices between which the engine
 * applies events and answers reads, and stops with SQL_TIMEOUT at engine.queryTimeoutMs.
 */
test('a slow query is stopped at its time limit, and reads and new events go on while it runs', async () => {
  const t = await startServer({ engine: { queryTimeoutMs: 2000 } });
  try {
    const inject = async (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown) => {
      const res = await t.server.app.inject({ method, url, payload: payload === undefined ? undefined : JSON.stringify(payload), headers: payload === undefined ? {} : { 'content-type': 'application/json' } });
      return { status: res.statusCode, body: JSON.parse(res.body) as any };
    };
    assert.equal((await inject('PUT', '/v1/schemas/doc', { type: 'object', properties: { k: { type: 'string' } } })).status, 201);
    // 2,000 groups whose keys are 5,000 characters long.
    for (let b = 0; b < 10; b++) {
      const events = Array.from({ length: 200 }, (_, i) => ({ type: 'doc', data: { k: `${b * 200 + i}:${'a'.repeat(5_000)}` } }));
      assert.equal((await inject('POST', '/v1/events', events)).body.accepted, 200);
    }
    assert.equal((await inject('PUT', '/v1/views/docs', { sql: 'CREATE VIEW docs AS SELECT k, COUNT(*) AS n FROM doc GROUP BY k' })).status, 201);
    await caughtUp(t, 'docs');
    // Each row costs about text length × pattern length (milliseconds): all 2,000 would take many seconds.
    const slow = inject('POST', '/v1/query', { sql: `SELECT k FROM docs WHERE k LIKE '%${'_'.repeat(1000)}b%'` });
    let settled = false;
    void slow.then(() => (settled = true));
    const latencies: number[] = [];
    let sent = 0;
    while (!settled && latencies.length < 1000) {
      const t0 = performance.now();
      const read = await inject('GET', '/v1/views/docs?limit=1');
      assert.equal(read.status, 200);
      if (!settled) latencies.push(performance.now() - t0);
      // New events are applied while the query runs, too.
      if (sent === 0 && !settled) {
        assert.equal((await inject('POST', '/v1/events', [{ type: 'doc', data: { k: 'new' } }])).body.accepted, 1);
        sent = 1;
      }
    }
    const answer = await slow;
    assert.equal(answer.status, 400, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, 'SQL_TIMEOUT');
    assert.match(answer.body.error.message, /2000 ms/);
    assert.ok(latencies.length >= 20, `only ${latencies.length} reads were answered while the slow query ran`);
    latencies.sort((a, b) => a - b);
    console.log(`reads while a slow query ran: ${latencies.length}, median ${latencies[latencies.length >> 1]!.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
    await caughtUp(t, 'docs');
    const fresh = await inject('POST', '/v1/query', { sql: `SELECT n FROM docs WHERE k = 'new'` });
    assert.deepEqual(fresh.body.rows, [{ n: 1 }]);
    // A query within its limit answers as before.
    const count = await inject('POST', '/v1/query', { sql: 'SELECT COUNT(*) AS groups FROM docs' });
    assert.deepEqual(count.body.rows, [{ groups: 2001 }]);
  } finally {
    await t.cleanup();
  }
});
