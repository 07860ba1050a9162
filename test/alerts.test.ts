// The documented example (docs/alerts.md) end to end: a view of errors per version, a rule over it, a webhook
// receiver that sees firing then resolved exactly once for the bad version and nothing for the good one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer } from './helpers/server.js';

test('errors per deployed version: the bad version fires once, then resolves once; the good one stays quiet', { timeout: 60_000 }, async () => {
  const got: { state: string; labels: Record<string, string>; values: Record<string, unknown> }[] = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      got.push(JSON.parse(body));
      res.end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`;
  // The example counts the current minute: start well inside one, so the test does not straddle two.
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 30_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 500));
  const t = await startServer({ alerts: { evaluationIntervalMs: 100 } as never });
  const call = async (method: string, path: string, payload?: unknown) => {
    const res = await t.server.app.inject({ method: method as 'GET', url: path, headers: { 'content-type': 'application/json' }, payload: payload === undefined ? undefined : JSON.stringify(payload) });
    return { status: res.statusCode, body: res.body ? (JSON.parse(res.body) as any) : undefined };
  };
  const requests = (version: string, n: number, errors: number) =>
    call('POST', '/v1/events', Array.from({ length: n }, (_, i) => ({ type: 'http_request', data: { version, status: i < errors ? 503 : 200, route: '/home' } })));
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(ok(), what);
  };
  try {
    await call('PUT', '/v1/schemas/http_request', { type: 'object', properties: { version: { type: 'string' }, status: { type: 'integer' }, route: { type: 'string' } }, required: ['version', 'status'] });
    assert.equal(
      (await call('PUT', '/v1/views/errors_by_version_1m', {
        sql: "CREATE VIEW errors_by_version_1m AS SELECT version, COUNT(*) AS requests, SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors FROM http_request GROUP BY version, TUMBLE(received_at, INTERVAL '1' MINUTE)",
      })).status,
      201,
    );
    const rule = await call('PUT', '/v1/alerts/bad_deploy', {
      sql: 'SELECT version, errors * 1.0 / requests AS error_rate, requests FROM errors_by_version_1m WHERE window_end > NOW() AND requests >= 20 AND errors * 1.0 / requests > 0.05',
      groupBy: ['version'],
      for: '300ms',
      severity: 'critical',
      labels: { team: 'web' },
      repeat: 0,
      webhook: { url },
    });
    assert.equal(rule.status, 200, JSON.stringify(rule.body));
    assert.equal((await call('PUT', '/v1/alerts/broken', { sql: 'SELECT nope FROM errors_by_version_1m' })).body.error.code, 'SQL_PLAN', 'a rule whose SQL cannot run is refused');

    await requests('1.4.0', 200, 2); // 1 %: healthy
    await requests('1.5.0', 100, 30); // 30 %: the bad deployment
    await until('the bad version fires', () => got.length >= 1);
    const status = (await call('GET', '/v1/alerts')).body;
    const groups = status.rules.find((r: { name: string }) => r.name === 'bad_deploy').groups;
    assert.deepEqual(groups.map((g: { labels: { version: string }; state: string }) => [g.labels.version, g.state]), [['1.5.0', 'firing']]);
    const metrics = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /halflife_alert_groups\{rule="bad_deploy",state="firing"[^}]*\} 1/);

    await requests('1.5.0', 2000, 0); // the rate falls under 5 % (a fix, or traffic moving back)
    await until('the alert resolves', () => got.length >= 2);
    await new Promise((r) => setTimeout(r, 500)); // a few more evaluations: nothing else may arrive
    assert.deepEqual(got.map((n) => [n.state, n.labels.version]), [['firing', '1.5.0'], ['resolved', '1.5.0']]);
    assert.deepEqual(got[0].labels, { alertname: 'bad_deploy', severity: 'critical', team: 'web', version: '1.5.0' });
    assert.equal(got[0].values.error_rate, 0.3);
    const history = (await call('GET', '/v1/alerts')).body.history.filter((h: { rule: string }) => h.rule === 'bad_deploy');
    assert.deepEqual(history.map((h: { state: string }) => h.state), ['pending', 'firing', 'resolved']);
  } finally {
    await t.cleanup();
    await new Promise((r) => hook.close(r));
  }
});
