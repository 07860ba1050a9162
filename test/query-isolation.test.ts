import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, inject, startServer, type TestServer } from './helpers/server.js';

/** A server with a view `docs` of 2,000 groups whose keys are 5,000 characters long: slow to scan with LIKE. */
async function withDocs(): Promise<TestServer> {
  const t = await startServer({ engine: { queryTimeoutMs: 2000 } });
  assert.equal((await inject(t, 'PUT', '/v1/schemas/doc', { type: 'object', properties: { k: { type: 'string' } } })).status, 201);
  for (let b = 0; b < 10; b++) {
    const events = Array.from({ length: 200 }, (_, i) => ({ type: 'doc', data: { k: `${b * 200 + i}:${'a'.repeat(5_000)}` } }));
    assert.equal((await inject(t, 'POST', '/v1/events', events)).body.accepted, 200);
  }
  assert.equal((await inject(t, 'PUT', '/v1/views/docs', { sql: 'CREATE VIEW docs AS SELECT k, COUNT(*) AS n FROM doc GROUP BY k' })).status, 201);
  await caughtUp(t, 'docs');
  return t;
}

/** Each row costs about text length × pattern length (milliseconds): all 2,000 would take many seconds. */
const SLOW_LIKE = `SELECT k FROM docs WHERE k LIKE '%${'_'.repeat(1000)}b%'`;

/**
 * An expensive ad-hoc query must not hold up the views (issue #11 item 4): it runs in slices between which the engine
 * applies events and answers reads, and stops with SQL_TIMEOUT at engine.queryTimeoutMs.
 */
test('a slow query is stopped at its time limit, and reads and new events go on while it runs', async () => {
  const t = await withDocs();
  try {
    const slow = inject(t, 'POST', '/v1/query', { sql: SLOW_LIKE });
    let settled = false;
    void slow.then(() => (settled = true));
    const latencies: number[] = [];
    let sent = 0;
    while (!settled && latencies.length < 1000) {
      const t0 = performance.now();
      const read = await inject(t, 'GET', '/v1/views/docs?limit=1');
      assert.equal(read.status, 200);
      if (!settled) latencies.push(performance.now() - t0);
      // New events are applied while the query runs, too.
      if (sent === 0 && !settled) {
        assert.equal((await inject(t, 'POST', '/v1/events', [{ type: 'doc', data: { k: 'new' } }])).body.accepted, 1);
        sent = 1;
      }
    }
    const answer = await slow;
    assert.equal(answer.status, 400, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, 'SQL_TIMEOUT');
    assert.match(answer.body.error.message, /2000 ms/);
    assert.ok(latencies.length >= 20, `only ${latencies.length} reads were answered while the slow query ran`);
    await caughtUp(t, 'docs');
    const fresh = await inject(t, 'POST', '/v1/query', { sql: `SELECT n FROM docs WHERE k = 'new'` });
    assert.deepEqual(fresh.body.rows, [{ n: 1 }]);
    // A query within its limit answers as before.
    const count = await inject(t, 'POST', '/v1/query', { sql: 'SELECT COUNT(*) AS groups FROM docs' });
    assert.deepEqual(count.body.rows, [{ groups: 2001 }]);
  } finally {
    await t.cleanup();
  }
});

/**
 * The closing test (issue #11, items 1–3): one client sends pathological queries (names every object
 * inherits, SQL nested and long past the limits, an unterminated string, a LIKE that scans for seconds) while
 * another reads a view and ingests. The other client's reads stay fast (p99 under 100 ms), every pathological query
 * is answered (a 4xx in the error shape, or rows), never with a 5xx, and the engine never restarts.
 */
test('pathological queries from one client leave another client\'s reads under 100 ms (p99), and the engine never restarts', async () => {
  const t = await withDocs();
  try {
    const pathological = [
      'SELECT constructor FROM docs',
      'SELECT toString, __proto__ FROM docs GROUP BY hasOwnProperty',
      'SELECT k FROM docs WHERE valueOf = 1',
      `SELECT ${'('.repeat(300)}1${')'.repeat(300)} AS x FROM docs`,
      `SELECT k FROM docs WHERE ${'NOT '.repeat(5_000)}n = 1`,
      `SELECT ${'k, '.repeat(40_000)}k FROM docs`,
      `SELECT k FROM docs WHERE k = '${'a'.repeat(99_000)}`,
      `SELECT k FROM docs WHERE k LIKE '${'%a'.repeat(2_000)}b'`,
      SLOW_LIKE,
    ];
    let done = false;
    const codes = new Map<string, number>();
    const attacker = (async () => {
      for (let i = 0; !done; i++) {
        const sql = pathological[i % pathological.length];
        const res = await inject(t, 'POST', '/v1/query', { sql });
        // A LIKE with many wildcards is linear now: it may simply answer.
        assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `${sql.slice(0, 60)}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
        const code = res.status === 200 ? 'answered' : res.body.error.code;
        assert.equal(typeof code, 'string');
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    })();
    const latencies: number[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const t0 = performance.now();
        const read = await inject(t, 'GET', '/v1/views/docs?limit=1');
        latencies.push(performance.now() - t0);
        assert.equal(read.status, 200);
        if (i % 10 === 0) assert.equal((await inject(t, 'POST', '/v1/events', [{ type: 'doc', data: { k: `new${i}` } }])).body.accepted, 1);
      }
    } finally {
      done = true;
      await attacker;
    }
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    console.log(`reads beside pathological queries: ${latencies.length}, median ${latencies[latencies.length >> 1]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms; answers ${JSON.stringify(Object.fromEntries(codes))}`);
    assert.ok(p99 < 100, `p99 read latency ${p99.toFixed(1)} ms`);
    for (const code of ['SQL_PLAN', 'SQL_TOO_DEEP', 'SQL_TOO_LARGE', 'SQL_SYNTAX']) assert.ok(codes.has(code), `no ${code} among ${[...codes.keys()]}`);
    assert.equal(t.server.engine.restarts, 0);
    assert.deepEqual((await inject(t, 'GET', '/healthz')).body, { status: 'ok' });
    await caughtUp(t, 'docs');
    const fresh = await inject(t, 'POST', '/v1/query', { sql: `SELECT COUNT(*) AS n FROM docs WHERE k LIKE 'new%'` });
    assert.deepEqual(fresh.body.rows, [{ n: 30 }]);
  } finally {
    await t.cleanup();
  }
});

test('an engine worker that crashes is counted (halflife_engine_restarts_total), /healthz says so, and it comes back', async () => {
  const t = await startServer();
  try {
    await inject(t, 'PUT', '/v1/schemas/e', { type: 'object' });
    await inject(t, 'PUT', '/v1/views/n', { sql: 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e' });
    await t.server.engine.terminateWorker(0);
    const health = (await inject(t, 'GET', '/healthz')).body;
    assert.equal(health.status, 'degraded');
    assert.match(health.reasons.join('; '), /0 of 1 engine workers running \(one that exited is being restarted from its checkpoints\)/);
    assert.equal(t.server.engine.restarts, 1);
    let status = 'degraded';
    for (let i = 0; i < 1000 && status !== 'ok'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      status = (await inject(t, 'GET', '/healthz')).body.status;
    }
    assert.equal(status, 'ok');
    assert.equal((await inject(t, 'POST', '/v1/events', [{ type: 'e', data: {} }])).body.accepted, 1);
    await caughtUp(t, 'n');
    assert.deepEqual((await inject(t, 'GET', '/v1/views/n')).body.rows.map((r: { n: number }) => r.n), [1]);
    const metrics = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /halflife_engine_restarts_total\{[^}]*\} 1\n/);
  } finally {
    await t.cleanup();
  }
});
