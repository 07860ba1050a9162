import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type TestServer } from './helpers/server.js';

async function inject(t: TestServer, method: string, url: string, payload?: unknown, contentType = 'application/json') {
  const res = await t.server.app.inject({
    method: method as 'GET',
    url,
    payload: payload === undefined ? undefined : typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: payload === undefined ? {} : { 'content-type': contentType },
  });
  return { status: res.statusCode, body: res.body.length > 0 ? (JSON.parse(res.body) as any) : undefined };
}

async function caughtUp(t: TestServer, view: string) {
  for (let i = 0; i < 500; i++) {
    const info = t.server.engine.info(view);
    if (info.lag === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`view ${view} did not catch up`);
}

const pageView = {
  type: 'object',
  properties: {
    article_id: { type: 'string' },
    user_id: { type: 'string' },
    section: { type: 'string' },
    read_ms: { type: 'integer' },
    referrer: { type: 'string' },
  },
  required: ['article_id'],
};

describe('views over HTTP', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer();
    await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
  });
  after(() => t.cleanup());

  test('the README view: create, backfill, query rows with keys, windows and sketches', async () => {
    const base = Date.UTC(2026, 10, 22, 12, 0, 0);
    const events = [];
    for (let i = 0; i < 300; i++) {
      events.push({ type: 'page_view', key: `a${i % 3}`, data: { article_id: `a${i % 3}`, user_id: `u${i % 50}`, section: i % 10 === 0 ? 'test' : 'news', read_ms: i * 10, referrer: i % 4 === 0 ? 'google' : 'direct' } });
    }
    const sent = await inject(t, 'POST', '/v1/events', events);
    assert.equal(sent.body.accepted, 300);
    void base;
    const created = await inject(t, 'PUT', '/v1/views/readers_5m', {
      sql: `CREATE VIEW readers_5m AS
            SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers,
                   APPROX_PERCENTILE(read_ms, 0.99) AS p99_read_ms, TOP_K(referrer, 2) AS top_referrers
            FROM page_view WHERE section <> 'test'
            GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
            HAVING COUNT(*) > 1`,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(created.body.columns, ['window_start', 'window_end', 'article_id', 'views', 'readers', 'p99_read_ms', 'top_referrers']);
    await caughtUp(t, 'readers_5m');
    const rows = (await inject(t, 'GET', '/v1/views/readers_5m?article_id=a1&latest=true')).body.rows;
    assert.equal(rows.length, 1);
    const r = rows[0];
    assert.equal(r.article_id, 'a1');
    assert.equal(r.window_end - r.window_start, 300_000);
    const mine = events.filter((e) => e.data.article_id === 'a1' && e.data.section !== 'test');
    assert.equal(r.views, mine.length);
    assert.equal(r.readers, new Set(mine.map((e) => e.data.user_id)).size, 'sparse HyperLogLog is exact at this size');
    const reads = mine.map((e) => e.data.read_ms).sort((a, b) => a - b);
    const p99 = reads[Math.floor(0.99 * (reads.length - 1))];
    assert.ok(Math.abs(r.p99_read_ms - p99) <= 0.01 * p99, `p99 ${r.p99_read_ms} vs ${p99}`);
    assert.deepEqual(r.top_referrers.map((x: any) => x.value), ['direct', 'google']);
    const all = (await inject(t, 'GET', '/v1/views/readers_5m?order=views%20desc&limit=2')).body.rows;
    assert.equal(all.length, 2);
    const list = await inject(t, 'GET', '/v1/views');
    const info = list.body.views.find((v: any) => v.name === 'readers_5m');
    assert.equal(info.source, 'page_view');
    assert.equal(info.progress, 1);
    assert.ok(info.memoryBytes > 0);
    assert.match((await inject(t, 'GET', '/v1/views/readers_5m/definition')).body.sql, /CREATE VIEW readers_5m/);
  });

  test('a view sees new events within a second; running totals without a window', async () => {
    const created = await inject(t, 'PUT', '/v1/views/by_section', "CREATE VIEW by_section AS SELECT section, COUNT(*) AS n, SUM(read_ms) AS total FROM page_view GROUP BY section", 'text/plain');
    assert.equal(created.status, 201);
    await caughtUp(t, 'by_section');
    const before = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
    assert.deepEqual(before, []);
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'x', section: 'sport', read_ms: 5 } }, { type: 'page_view', data: { article_id: 'y', section: 'sport', read_ms: 7 } }]);
    let rows: any[] = [];
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline) {
      rows = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
      if (rows.length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(rows, [{ window_start: null, window_end: null, section: 'sport', n: 2, total: 12 }]);
  });

  test('errors: SQL syntax and plan errors are 400 with positions; unknown views 404; duplicates 409', async () => {
    const syntax = await inject(t, 'PUT', '/v1/views/bad', { sql: 'CREATE VIEW bad AS SELECT COUNT(* FROM page_view' });
    assert.equal(syntax.status, 400);
    assert.equal(syntax.body.error.code, 'SQL_SYNTAX');
    assert.equal(syntax.body.error.details.line, 1);
    assert.match(syntax.body.error.details.caret, /\^/);
    const plan = await inject(t, 'PUT', '/v1/views/bad', { sql: 'CREATE VIEW bad AS SELECT COUNT(*) FROM page_views' });
    assert.equal(plan.body.error.code, 'SQL_PLAN');
    assert.match(plan.body.error.message, /did you mean page_view/);
    assert.equal((await inject(t, 'GET', '/v1/views/nope')).body.error.code, 'VIEW_NOT_FOUND');
    const dup = await inject(t, 'PUT', '/v1/views/by_section', { sql: 'CREATE VIEW by_section AS SELECT COUNT(*) FROM page_view' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, 'VIEW_EXISTS');
    assert.equal((await inject(t, 'GET', '/v1/views/by_section?nokey=1')).body.error.code, 'INVALID_QUERY');
  });

  test('joins with a static table; an update is seen from then on', async () => {
    const put = await inject(t, 'PUT', '/v1/tables/articles?key=id', 'id,author\na0,ann\na1,bob\n', 'text/csv');
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.rows, 2);
    await inject(t, 'PUT', '/v1/views/by_author', {
      sql: "CREATE VIEW by_author WITH (start = 'latest') AS SELECT COALESCE(a.author, 'unknown') AS author, COUNT(*) AS n FROM page_view pv LEFT JOIN articles a ON pv.article_id = a.id GROUP BY COALESCE(a.author, 'unknown')",
    });
    await caughtUp(t, 'by_author');
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'a0' } }, { type: 'page_view', data: { article_id: 'a2' } }]);
    await caughtUp(t, 'by_author');
    await new Promise((r) => setTimeout(r, 50));
    const rows = (await inject(t, 'GET', '/v1/views/by_author?order=author')).body.rows;
    assert.deepEqual(rows.map((r: any) => [r.author, r.n]), [['ann', 1], ['unknown', 1]]);
    await inject(t, 'PATCH', '/v1/tables/articles', [{ id: 'a2', author: 'cy' }]);
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'a2' } }]);
    await caughtUp(t, 'by_author');
    await new Promise((r) => setTimeout(r, 50));
    const after = (await inject(t, 'GET', '/v1/views/by_author?order=author')).body.rows;
    assert.deepEqual(after.map((r: any) => [r.author, r.n]), [['ann', 1], ['cy', 1], ['unknown', 1]]);
    assert.equal((await inject(t, 'GET', '/v1/tables/articles')).body.data.length, 3);
  });

  test('views survive a restart with their state; drop removes them', async () => {
    const before = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
    const dir = t.dir;
    await t.server.close();
    t = await startServer({}, dir);
    await caughtUp(t, 'by_section');
    const after = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
    assert.deepEqual(after, before);
    assert.equal((await inject(t, 'DELETE', '/v1/views/by_section')).status, 204);
    assert.equal((await inject(t, 'GET', '/v1/views/by_section')).status, 404);
  });
});
