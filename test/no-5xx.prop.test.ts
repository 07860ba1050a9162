import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startServer } from './helpers/server.js';

interface Route {
  path: string;
  methods: string[];
}

/** Every route of the app, from Fastify's own route tree, so a route added later is covered without listing it. */
function routesOf(tree: string): Route[] {
  const out: Route[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+) \(([^)]*)\)/.exec(line);
    if (m === null) continue;
    const depth = m[1].length / 4;
    stack.length = depth;
    stack.push(m[2]);
    out.push({ path: stack.join(''), methods: m[3].split(', ') });
  }
  return out;
}

/** Any read, name, query string or body a client sends gets a 4xx at worst, never a 5xx (issue #11 item 14). */
test('property: random parameters, query strings, bodies and content types on every route never answer 5xx', async () => {
  const t = await startServer();
  try {
    await t.server.app.inject({ method: 'PUT', url: '/v1/schemas/pv', payload: { type: 'object', properties: { a: { type: 'string' }, n: { type: 'number' } } } });
    await t.server.app.inject({ method: 'PUT', url: '/v1/views/v', payload: { sql: 'CREATE VIEW v AS SELECT a, COUNT(*) AS n FROM pv GROUP BY a' } });
    // Live streams never end, so they are left to their own tests; /readyz answers 503 by contract (this server does
    // not listen, so it is not ready).
    const routes = routesOf(t.server.app.printRoutes({ commonPrefix: false })).filter((r) => r.path !== '*' && !r.path.endsWith('/live') && r.path !== '/readyz');
    assert.ok(routes.length >= 20, `${routes.length} routes found`);
    const nasty = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom('v', 'pv', '__proto__', 'constructor', 'toString', '..', '%00', '%ZZ', 'x'.repeat(130), '1e999', '-1', '0', 'null', ''),
    );
    const segment = nasty.map((s) => encodeURIComponent(s));
    const query = fc.array(fc.tuple(fc.constantFrom('limit', 'order', 'from', 'to', 'latest', 'time', 'partition', 'offset', 'a', 'key', 'replace', 'type', 'since'), nasty), { maxLength: 4 });
    const bodyArb = fc.oneof(
      fc.constant(undefined),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.constantFrom('{"sql": "SELECT toString FROM v"}', '{"sql": "SELECT a FROM v WHERE a LIKE \'%a%a%a%b\'"}', '[{"type": "pv", "data": {"a": "x"}}]', '[{"__proto__": 1, "id": 2}]', `${'['.repeat(5000)}${']'.repeat(5000)}`, '{"type": "object", "properties": {"__proto__": {"type": "string"}}}', '{"compatibility": "none"}', '{"scopes": ["read"]}'),
    );
    const contentType = fc.constantFrom('application/json', 'application/x-ndjson', 'text/plain', 'text/csv', 'application/octet-stream', 'multipart/form-data');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.integer({ min: 0, max: 9 }), fc.array(segment, { minLength: 3, maxLength: 3 }), query, bodyArb, contentType, async (route, m, segments, q, payload, type) => {
        const method = (route.methods[m % route.methods.length] ?? 'GET') as 'GET';
        let i = 0;
        const path = route.path.replace(/:[a-z]+/g, () => segments[i++]!);
        const qs = q.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
        const res = await t.server.app.inject({ method, url: qs === '' ? path : `${path}?${qs}`, payload: method === 'GET' || method === 'HEAD' ? undefined : payload, headers: payload === undefined ? {} : { 'content-type': type } });
        assert.ok(res.statusCode < 500, `${method} ${path}?${qs} (${type}) ${JSON.stringify(payload)?.slice(0, 200)} -> ${res.statusCode} ${res.body.slice(0, 300)}`);
      }),
      { numRuns: Number(process.env.NO5XX_RUNS ?? 400) },
    );
  } finally {
    await t.cleanup();
  }
});
