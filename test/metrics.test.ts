import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { HalflifeServer } from '../src/server/index.js';
import { startServer, testConfig } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool) {
  if (process.env.CI) throw new Error('promtool is required in CI (Debian package prometheus; .ci/run installs it)');
  console.warn('\n*** promtool not found: the /metrics lint check is SKIPPED (apt-get install prometheus) ***\n');
}

/** The value of the sample `name{...labels}` (labels given must all match), summed over matching series. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

test('/metrics: promtool accepts it, every series carries the four constant labels, and counters move as events flow', async () => {
  const t = await startServer({ metrics: { environment: 'staging', service: 'analytics', team: 'data', version: '7.1.0' }, archive: { rollSeconds: 1 } } as never);
  const call = (method: string, url: string, payload?: unknown) =>
    t.server.app.inject({ method: method as 'GET', url, headers: { 'content-type': 'application/json' }, payload: payload === undefined ? undefined : JSON.stringify(payload) });
  try {
    await call('PUT', '/v1/schemas/page', { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] });
    await call('PUT', '/v1/views/v', { sql: 'CREATE VIEW v AS SELECT a, COUNT(*) AS n FROM page GROUP BY a' });
    const before = (await call('GET', '/metrics')).body;
    const events = [...Array.from({ length: 7 }, (_, i) => ({ type: 'page', data: { a: `x${i}` } })), { type: 'page', data: {} }, { type: 'whatever', data: {} }];
    const sent = await call('POST', '/v1/events', events);
    assert.equal(sent.json().accepted, 7);
    for (let i = 0; i < 100; i++) {
      const info = (await call('GET', '/v1/views')).json().views[0];
      if (info.lag === 0 && info.rows === 7) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // The archive writes the 7 accepted events within its roll (1 s here) and says its lag is 0.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const a = t.server.archive!.status();
      if (a.archived === 7 && a.lag !== null && Object.values(a.lag).every((n) => n === 0)) break;
      assert.ok(Date.now() < deadline, `the archive did not write the events: ${JSON.stringify(a)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const res = await call('GET', '/metrics');
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const text = res.body;

    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.ok(samples.length > 100);
    for (const line of samples) {
      for (const label of ['environment="staging"', 'service="analytics"', 'team="data"', 'version="7.1.0"']) assert.ok(line.includes(label), `${line} lacks ${label}`);
    }
    const delta = (name: string, labels: Record<string, string> = {}) => value(text, name, labels) - value(before, name, labels);
    assert.equal(delta('halflife_ingest_events_total', { type: 'page', result: 'accepted' }), 7);
    assert.equal(delta('halflife_ingest_events_total', { type: 'page', result: 'rejected', reason: 'SCHEMA_VALIDATION' }), 1);
    assert.equal(delta('halflife_ingest_events_total', { type: '(unregistered)', result: 'rejected', reason: 'UNKNOWN_TYPE' }), 1, 'types without a schema share one label value');
    assert.equal(delta('halflife_deadletters_total', { code: 'SCHEMA_VALIDATION' }), 1);
    assert.equal(delta('halflife_ingest_bytes_total'), Buffer.byteLength(JSON.stringify(events)));
    assert.ok(delta('halflife_http_request_duration_seconds_count', { route: '/v1/events', status_code: '200' }) >= 1);
    assert.ok(delta('halflife_log_group_commit_records_count') >= 1);
    assert.equal(delta('halflife_view_applied_records_total', { view: 'v' }), 7);
    assert.equal(value(text, 'halflife_view_groups', { view: 'v' }), 7);
    assert.ok(delta('halflife_view_freshness_seconds_count') >= 7, 'freshness observed for the new events');
    assert.equal(value(text, 'halflife_log_end_offset'), 7);
    assert.equal(value(text, 'halflife_consumer_lag_records', { consumer: 'view.v' }), 0);
    assert.equal(value(text, 'halflife_consumer_lag_records', { consumer: 'archive' }), 0);
    assert.equal(delta('halflife_archive_events_total'), 7);
    assert.equal(value(text, 'halflife_archive_restarts_total'), 0);
    assert.ok(value(text, 'process_resident_memory_bytes') > 0, 'process metrics');
    assert.match(text, /# TYPE halflife_view_freshness_seconds histogram/);

    if (hasPromtool) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text });
      assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    }
  } finally {
    await t.cleanup();
  }
});

test('logs are JSON lines with request ids, and never hold an API key', async () => {
  const { dir, cleanup } = await tempDir();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      done();
    },
  });
  const server = new HalflifeServer({ config: testConfig(dir, { logLevel: 'debug' }), logger: pino({ level: 'debug' }, sink) });
  await server.start();
  try {
    const { key: admin } = await server.keys.create({ scopes: ['admin'] });
    const created = await server.app.inject({ method: 'POST', url: '/v1/keys', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify({ scopes: ['write'] }) });
    const writer = created.json().key as string;
    const sent = await server.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Basic ${Buffer.from(`${writer}:`).toString('base64')}`, 'x-request-id': 'req-abc' }, payload: '{"type":"x","data":{}}' });
    assert.equal(sent.headers['x-request-id'], 'req-abc');
    await server.app.inject({ method: 'GET', url: '/v1/streams', headers: { authorization: `Bearer ${writer.slice(0, -3)}abc` } });
  } finally {
    await server.close();
    await cleanup();
  }
  const all = lines.join('\n');
  for (const secretPart of [/hl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/, /Bearer /, /Basic /]) assert.doesNotMatch(all, secretPart);
  const parsed = lines.map((l) => JSON.parse(l) as { reqId?: string; msg?: string });
  assert.ok(parsed.some((l) => l.reqId === 'req-abc'), 'the caller\'s request id is in the request\'s log lines');
  assert.ok(parsed.some((l) => /API key created/.test(l.msg ?? '')));
});
