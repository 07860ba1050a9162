import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startServer } from './helpers/server.js';

const inject = (t: Awaited<ReturnType<typeof startServer>>, method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  t.server.app
    .inject({ method: method as 'GET', url, headers: { 'content-type': 'application/json', ...headers }, payload: payload === undefined ? undefined : JSON.stringify(payload) })
    .then((res) => ({ status: res.statusCode, body: res.body ? (JSON.parse(res.body) as any) : undefined, headers: res.headers }));

test('at the memory budget every request is refused on arrival (503, Retry-After) and /readyz is unready', async () => {
  const t = await startServer({ overload: { memoryBudgetBytes: 64 * 2 ** 20 } as never });
  try {
    await new Promise((r) => setTimeout(r, 150)); // one memory sample
    const res = await inject(t, 'POST', '/v1/events', { type: 'x', data: {} });
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'AT_CAPACITY');
    assert.match(res.body.error.message, /memory budget/);
    assert.equal(res.headers['retry-after'], '2');
    const ready = await inject(t, 'GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body.reason, /overloaded \(memory\)/);
    const status = await inject(t, 'GET', '/v1/status');
    assert.equal(status.body.overload.hard, true);
    assert.equal(t.server.log.stats().records, 0);
  } finally {
    await t.cleanup();
  }
});

test('a request declaring a shed priority is refused before it is read; high ones and undeclared ones are parsed', async () => {
  // Memory alone puts the pressure between shedLowAt and shedNormalAt: low is shed, normal is not.
  const rss = process.memoryUsage.rss();
  const t = await startServer({
    overload: { memoryBudgetBytes: rss * 4, shedLowAt: 0.05, shedNormalAt: 0.95 } as never,
    ingest: { priorities: { bulk: 'low' } } as never,
  });
  try {
    await t.server.registry.register('bulk', { type: 'object' });
    await t.server.registry.register('page', { type: 'object' });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal((await inject(t, 'GET', '/v1/status')).body.overload.shed, 1);
    const early = await inject(t, 'POST', '/v1/events', 'not even JSON', { 'x-halflife-priority': 'low' });
    assert.equal(early.status, 429, 'refused before the body is parsed');
    assert.equal(early.body.error.code, 'OVERLOADED');
    assert.equal(early.headers['retry-after'], '1');
    const mixed = await inject(t, 'POST', '/v1/events', [{ type: 'bulk', data: {} }, { type: 'page', data: {} }], { 'x-halflife-priority': 'normal' });
    assert.equal(mixed.status, 200);
    assert.deepEqual([mixed.body.accepted, mixed.body.shed], [1, 1]);
    assert.equal(mixed.headers['retry-after'], '1');
    assert.equal((await inject(t, 'POST', '/v1/events', [{ type: 'bulk', data: {} }])).status, 429, 'a request of low events only is refused whole');
    assert.equal((await inject(t, 'POST', '/v1/events', [], { 'x-halflife-priority': 'urgent' })).status, 400);
    const status = (await inject(t, 'GET', '/v1/status')).body;
    assert.deepEqual(status.shedRequests, { low: { memory: 1 } });
    assert.deepEqual(status.shedEvents, { bulk: { memory: 2 } });
  } finally {
    await t.cleanup();
  }
});

test('a client that sends its request too slowly (slowloris) is cut off', async () => {
  const t = await startServer({ server: { requestTimeoutMs: 300 } as never });
  try {
    const url = new URL(await t.server.listen());
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname);
      let data = '';
      socket.on('data', (c) => (data += c.toString()));
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
      socket.write('POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[');
      // ...and nothing more.
    });
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - started < 5000, `cut off after ${Date.now() - started} ms`);
  } finally {
    await t.cleanup();
  }
});

test('live streams are bounded: past server.maxLiveStreams a new one gets 503', async () => {
  const t = await startServer({ server: { maxLiveStreams: 1 } as never });
  try {
    await t.server.registry.register('page', { type: 'object', properties: { a: { type: 'string' } } });
    await inject(t, 'PUT', '/v1/views/v', { sql: 'CREATE VIEW v AS SELECT a, COUNT(*) AS n FROM page GROUP BY a' });
    const url = await t.server.listen();
    const first = new AbortController();
    const open = await fetch(`${url}/v1/views/v/live`, { signal: first.signal });
    assert.equal(open.status, 200);
    const second = await fetch(`${url}/v1/views/v/live`);
    assert.equal(second.status, 503);
    assert.equal(((await second.json()) as any).error.code, 'AT_CAPACITY');
    first.abort();
  } finally {
    await t.cleanup();
  }
});
