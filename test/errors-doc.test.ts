import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { allErrorCodes } from '../src/core/index.js';
import '../src/config/index.js';
import '../src/log/index.js';
import '../src/schema/index.js';
import '../src/ingest/index.js';
import '../src/sql/index.js';
import '../src/engine/index.js';
import '../src/server/index.js';
import { startServer, type TestServer } from './helpers/server.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const sections = new Map<string, string>();
for (const m of doc.matchAll(/^### ([A-Z_]+)\n([\s\S]*?)(?=^##|$(?![\s\S]))/gm)) sections.set(m[1], m[2]);

/**
 * What a section's first sentence claims: a whole-request status ("HTTP 413"), per-event results in a 200 answer
 * ("per event, in a 200 answer"), both, or a start-up failure / no error.
 */
function claims(code: string): { status: number | undefined; perEvent: boolean; context: boolean } {
  const text = sections.get(code)!.trim();
  const head = text.slice(0, text.indexOf(' · ') >= 0 ? text.indexOf(' · ') : 0);
  const perEvent = /per event, in a 200 answer/i.test(head);
  const status = /^HTTP (\d{3})\b/.exec(head);
  return { status: status ? Number(status[1]) : undefined, perEvent, context: /^(Start-up|Not an error)/.test(text) };
}

test('every error code in the tables is documented in docs/errors.md, and nothing else is', () => {
  const codes = [...allErrorCodes().keys()].sort();
  assert.deepEqual([...sections.keys()].sort(), codes);
});

test('the documented HTTP status matches the table, and every code says how it arrives', () => {
  for (const [code, spec] of allErrorCodes()) {
    const c = claims(code);
    if (c.status !== undefined) assert.equal(c.status, spec.status, `${code}: docs say ${c.status}, table says ${spec.status}`);
    assert.ok(c.status !== undefined || c.perEvent || c.context, `${code} needs "HTTP nnn", "Per event, in a 200 answer", "Start-up" or "Not an error" before its first " · "`);
  }
});

test('every config key is documented in docs/configuration.md', async () => {
  const { envLeaves } = await import('../src/config/index.js');
  const conf = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  for (const path of envLeaves().values()) assert.ok(conf.includes(`| \`${path.join('.')}\` |`), `${path.join('.')} is not documented`);
});

interface Answer {
  status: number;
  body: { error?: { code: string }; errors?: { code: string }[]; duplicates?: number };
}

/**
 * Each code provoked for real against a server: the answer must be what docs/errors.md says — the documented
 * status with the code in the error body (whole request), or 200 with the code in `errors` (per event).
 */
test('the server answers each code the way docs/errors.md says', async () => {
  const t: TestServer = await startServer({ ingest: { maxEventBytes: 300, maxBodyBytes: 120_000, maxDepth: 4 }, history: { queryTimeoutMs: 300 } } as never);
  const seen = new Map<string, Set<'whole' | 'event'>>();
  const record = (code: string, how: 'whole' | 'event') => {
    const s = seen.get(code) ?? new Set();
    s.add(how);
    seen.set(code, s);
  };
  const check = (what: string, a: Answer) => {
    if (a.body.error !== undefined) {
      const code = a.body.error.code;
      const c = claims(code);
      assert.equal(a.status, c.status, `${what}: ${code} came as HTTP ${a.status}; docs/errors.md says ${c.status ?? 'no whole-request status'}`);
      record(code, 'whole');
    } else {
      assert.ok(a.status >= 200 && a.status < 300, `${what}: HTTP ${a.status}`);
      if ((a.body.errors ?? []).length > 0) assert.equal(a.status, 200, what);
      for (const e of a.body.errors ?? []) {
        assert.ok(claims(e.code).perEvent, `${what}: ${e.code} came per event in a 200 answer; docs/errors.md does not say "per event, in a 200 answer"`);
        record(e.code, 'event');
      }
    }
  };
  const app = t.server.app;
  const req = async (what: string, method: string, url: string, payload?: string | object, headers: Record<string, string> = {}) => {
    const body = typeof payload === 'object' ? JSON.stringify(payload) : payload;
    const res = await app.inject({ method: method as 'GET', url, payload: body, headers: { ...(body !== undefined && !headers['content-type'] ? { 'content-type': 'application/json' } : {}), ...headers } });
    const a: Answer = { status: res.statusCode, body: res.body === '' ? {} : res.json() };
    check(what, a);
    return a;
  };
  const events = (payload: string, ct = 'application/json') => req(`POST /v1/events ${payload.slice(0, 40)}`, 'POST', '/v1/events', payload, { 'content-type': ct });
  try {
    await req('schema', 'PUT', '/v1/schemas/e', { type: 'object', properties: { n: { type: 'integer' } } });
    // Ingest, per event and whole request.
    await events('{bad');
    await events('{"type":"e","data":{}}\n{bad', 'application/x-ndjson');
    await events('x'.repeat(125_000));
    await events('{}', 'image/png');
    await events(`{"type":"e","data":{"s":"${'x'.repeat(400)}"}}`);
    await events(`{"type":"e","data":{"s":"${'x'.repeat(400)}"}}`, 'application/x-ndjson');
    await events('{"type":"e","data":{"a":{"b":{"c":{"d":1}}}}}');
    await events('[42, {"type":"e","data":{},"extra":1}]');
    await events('{"type":"nope","data":{}}');
    await events('{"type":"e","data":{"n":"x"}}');
    const dup = await events('[{"type":"e","id":"d1","data":{}},{"type":"e","id":"d1","data":{}}]');
    assert.equal(dup.body.duplicates, 1);
    assert.ok(claims('DUPLICATE').context);
    await req('limit', 'GET', '/v1/events?limit=0');
    // Schemas.
    await req('bad schema', 'PUT', '/v1/schemas/e2', { type: 'no-such-type' });
    await req('incompatible', 'PUT', '/v1/schemas/e', { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] });
    await req('no schema', 'GET', '/v1/schemas/nothing');
    await req('no version', 'GET', '/v1/schemas/e/versions/9');
    await req('type name', 'PUT', '/v1/schemas/9bad', { type: 'object' });
    await req('compat', 'PUT', '/v1/schemas/e/config', { compatibility: 'forward' });
    // Views, SQL, tables.
    await req('syntax', 'POST', '/v1/query', { sql: 'SELECT FROM' });
    await req('sql size', 'POST', '/v1/query', { sql: `SELECT n FROM v1 WHERE n IN (${'1,'.repeat(50_001)}1)` });
    await req('sql depth', 'POST', '/v1/query', { sql: `SELECT ${'('.repeat(300)}n${')'.repeat(300)} FROM v1` });
    await req('plan', 'PUT', '/v1/views/v1', { sql: 'CREATE VIEW v1 AS SELECT nope, COUNT(*) AS c FROM e GROUP BY nope' });
    await req('view', 'PUT', '/v1/views/v1', { sql: 'CREATE VIEW v1 AS SELECT n, COUNT(*) AS c FROM e GROUP BY n' });
    await req('view exists', 'PUT', '/v1/views/v1', { sql: 'CREATE VIEW v1 AS SELECT n, COUNT(*) AS c FROM e GROUP BY n' });
    await req('no view', 'GET', '/v1/views/nothing');
    await req('view name', 'PUT', '/v1/views/1bad', { sql: 'SELECT n, COUNT(*) AS c FROM e GROUP BY n' });
    await req('no table', 'GET', '/v1/tables/nothing');
    await req('bad table', 'PUT', '/v1/tables/t1', '42');
    await req('partition', 'GET', '/v1/events?partition=99');
    // SQL over history.
    await req('history sql', 'POST', '/v1/sql', { sql: "SELECT * FROM read_csv('/etc/passwd')" });
    await req('history write', 'POST', '/v1/sql', { sql: "COPY (SELECT 1) TO '/tmp/x.csv'" });
    await req('history slow', 'POST', '/v1/sql', { sql: 'SELECT count(*) FROM range(1000000000000) a, range(1000) b' });
    // Server.
    await req('route', 'GET', '/v1/nothing');
    await req('request', 'GET', '/v1/schemas/e/versions/zero');
    await req('key', 'DELETE', '/v1/keys/nothing');
    await req('alert', 'PUT', '/v1/alerts/a1', { nonsense: true });
    await req('no alert', 'GET', '/v1/alerts/nothing');
    await req('time format', 'GET', '/v1/views/v1?time=local');
    // With an API key: unauthenticated, forbidden, rate limited.
    const { key } = await t.server.keys.create({ scopes: ['write'], eventsPerS: 1, burstEvents: 1 });
    await req('no key', 'GET', '/v1/streams');
    await req('write key reads', 'GET', '/v1/streams', undefined, { authorization: `Bearer ${key}` });
    await req('rate', 'POST', '/v1/events', '[{"type":"e","data":{}},{"type":"e","data":{}}]', { authorization: `Bearer ${key}`, 'content-type': 'application/json' });
  } finally {
    await t.cleanup();
  }
  // Both ways MALFORMED_JSON comes, as documented; and the codes provoked here are the ones listed.
  assert.deepEqual([...seen.get('MALFORMED_JSON')!].sort(), ['event', 'whole']);
  const provoked = [...seen.keys()].sort();
  assert.deepEqual(provoked, [
    'ALERT_INVALID', 'ALERT_NOT_FOUND', 'BODY_TOO_LARGE', 'EVENT_TOO_LARGE', 'FORBIDDEN', 'INVALID_COMPATIBILITY', 'INVALID_EVENT',
    'INVALID_QUERY', 'INVALID_REQUEST', 'INVALID_TABLE', 'INVALID_TYPE_NAME', 'INVALID_VIEW_NAME', 'KEY_NOT_FOUND', 'MALFORMED_JSON',
    'RATE_LIMITED', 'ROUTE_NOT_FOUND', 'SCHEMA_INCOMPATIBLE', 'SCHEMA_INVALID', 'SCHEMA_NOT_FOUND',
    'SCHEMA_VALIDATION', 'SCHEMA_VERSION_NOT_FOUND', 'SQL_ERROR', 'SQL_FORBIDDEN', 'SQL_PLAN', 'SQL_SYNTAX', 'SQL_TIMEOUT', 'SQL_TOO_DEEP', 'SQL_TOO_LARGE', 'TABLE_NOT_FOUND', 'TOO_DEEP', 'UNAUTHENTICATED',
    'UNKNOWN_TYPE', 'UNSUPPORTED_MEDIA_TYPE', 'VIEW_EXISTS', 'VIEW_NOT_FOUND',
  ]);
});
