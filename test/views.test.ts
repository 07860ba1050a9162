import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, startServer, type TestServer, inject } from './helpers/server.js';

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

// Every view test runs with one engine worker and with two (partials merged at read time).
for (const workers of [1, 2]) {
describe(`views over HTTP (${workers} engine worker${workers > 1 ? 's' : ''})`, () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ engine: { workers } as never });
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
    const rows = (await inject(t, 'GET', '/v1/views/by_author?order=author')).body.rows;
    assert.deepEqual(rows.map((r: any) => [r.author, r.n]), [['ann', 1], ['unknown', 1]]);
    await inject(t, 'PATCH', '/v1/tables/articles', [{ id: 'a2', author: 'cy' }]);
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'a2' } }]);
    await caughtUp(t, 'by_author');
    const after = (await inject(t, 'GET', '/v1/views/by_author?order=author')).body.rows;
    assert.deepEqual(after.map((r: any) => [r.author, r.n]), [['ann', 1], ['cy', 1], ['unknown', 1]]);
    assert.equal((await inject(t, 'GET', '/v1/tables/articles')).body.data.length, 3);
  });

  test('views survive a restart with their state; drop removes them', async () => {
    const before = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
    const dir = t.dir;
    await t.server.close();
    const first = t;
    const second = await startServer({ engine: { workers } as never }, dir);
    // The restarted server shares the folder: cleaning up must still remove it.
    t = { ...second, cleanup: async () => { await second.server.close(); await first.cleanup(); } };
    await caughtUp(t, 'by_section');
    const after = (await inject(t, 'GET', '/v1/views/by_section?section=sport')).body.rows;
    assert.deepEqual(after, before);
    assert.equal((await inject(t, 'DELETE', '/v1/views/by_section')).status, 204);
    assert.equal((await inject(t, 'GET', '/v1/views/by_section')).status, 404);
  });
});

describe(`POST /v1/query over views (${workers} engine worker${workers > 1 ? 's' : ''})`, () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ engine: { workers } as never });
    await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    // Users u0..u9 read a1 in every window; u100+ readers are new each window, so the union beats the sum.
    const events = [];
    for (let i = 0; i < 200; i++) events.push({ type: 'page_view', data: { article_id: i % 2 === 0 ? 'a1' : 'a2', user_id: i % 4 === 0 ? `u${i % 10}` : `u${100 + i}`, read_ms: i } });
    await inject(t, 'POST', '/v1/events', events);
    await inject(t, 'PUT', '/v1/views/readers_5m', {
      sql: `CREATE VIEW readers_5m AS SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers,
              APPROX_PERCENTILE(read_ms, 0.9) AS p90, TOP_K(user_id, 3) AS top_users
            FROM page_view GROUP BY article_id, TUMBLE(received_at, INTERVAL '5' MINUTE)`,
    });
    await caughtUp(t, 'readers_5m');
  });
  after(() => t.cleanup());

  test('the README query: unique readers over the last hour merge the HyperLogLog states', async () => {
    const res = await inject(t, 'POST', '/v1/query', {
      sql: "SELECT article_id, APPROX_COUNT_DISTINCT(readers) AS readers, SUM(views) AS views FROM readers_5m WHERE window_start >= NOW() - INTERVAL '1' HOUR GROUP BY article_id ORDER BY article_id",
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.columns, ['article_id', 'readers', 'views']);
    const a1 = new Set<string>();
    const a2 = new Set<string>();
    for (let i = 0; i < 200; i++) (i % 2 === 0 ? a1 : a2).add(i % 4 === 0 ? `u${i % 10}` : `u${100 + i}`);
    assert.deepEqual(res.body.rows, [
      { article_id: 'a1', readers: a1.size, views: 100 },
      { article_id: 'a2', readers: a2.size, views: 100 },
    ]);
  });

  test('projection, WHERE, ORDER BY and LIMIT; quantile and top-k columns merge too', async () => {
    const rows = await inject(t, 'POST', '/v1/query', { sql: 'SELECT article_id, views FROM readers_5m WHERE views > 10 ORDER BY article_id DESC LIMIT 1' });
    assert.deepEqual(rows.body, { columns: ['article_id', 'views'], rows: [{ article_id: 'a2', views: 100 }] });
    const merged = await inject(t, 'POST', '/v1/query', { sql: 'SELECT APPROX_PERCENTILE(p90, 0.5) AS median, TOP_K(top_users, 1) AS top, COUNT(*) AS windows FROM readers_5m' });
    assert.equal(merged.body.rows.length, 1);
    assert.ok(Math.abs(merged.body.rows[0].median - 99) <= 2, `median ${merged.body.rows[0].median}`);
    assert.equal(merged.body.rows[0].windows, 2);
    // a2's window saw 100 distinct users in 64 counters, so merged counts carry its minimum as error.
    const top = merged.body.rows[0].top[0];
    assert.match(top.value, /^u[02468]$/);
    assert.ok(top.count - top.error <= 10 && 10 <= top.count, JSON.stringify(top));
    const star = await inject(t, 'POST', '/v1/query', { sql: 'SELECT * FROM readers_5m' });
    assert.deepEqual(star.body.columns, ['window_start', 'window_end', 'article_id', 'views', 'readers', 'p90', 'top_users']);
  });

  test('query errors: unknown view and column with suggestions', async () => {
    const v = await inject(t, 'POST', '/v1/query', { sql: 'SELECT * FROM readers5m' });
    assert.equal(v.body.error.code, 'SQL_PLAN');
    assert.match(v.body.error.message, /unknown view readers5m \(did you mean readers_5m\?\)/);
    const c = await inject(t, 'POST', '/v1/query', { sql: 'SELECT viewz FROM readers_5m' });
    assert.match(c.body.error.message, /unknown column viewz .*did you mean views\?/);
  });
});

test(`live: Server-Sent Events deliver the current rows, then changes (${workers} engine worker${workers > 1 ? 's' : ''})`, async () => {
  const t = await startServer({ engine: { workers } as never });
  try {
    await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    await inject(t, 'PUT', '/v1/views/counts', { sql: "CREATE VIEW counts WITH (refresh = '100ms') AS SELECT article_id, COUNT(*) AS n FROM page_view GROUP BY article_id" });
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'a1' } }]);
    await caughtUp(t, 'counts');
    const url = await t.server.listen();
    const controller = new AbortController();
    const res = await fetch(`${url}/v1/views/counts/live`, { signal: controller.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (pattern: RegExp) => {
      const deadline = Date.now() + 3000;
      while (!pattern.test(text) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      assert.match(text, pattern);
    };
    await readUntil(/event: rows\ndata: .*"article_id":"a1","n":1/);
    await inject(t, 'POST', '/v1/events', [{ type: 'page_view', data: { article_id: 'a1' } }, { type: 'page_view', data: { article_id: 'a2' } }]);
    await readUntil(/"article_id":"a1","n":2/);
    assert.match(text, /"article_id":"a2","n":1/);
    controller.abort();
  } finally {
    await t.cleanup();
  }
});
}

test('shutdown ends live streams instead of waiting for them', async () => {
  const t = await startServer();
  try {
    await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    await inject(t, 'PUT', '/v1/views/counts', { sql: 'CREATE VIEW counts AS SELECT article_id, COUNT(*) AS n FROM page_view GROUP BY article_id' });
    const url = await t.server.listen();
    const res = await fetch(`${url}/v1/views/counts/live`);
    const reader = res.body!.getReader();
    await reader.read(); // the stream is open
    const started = Date.now();
    const closing = t.server.close();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    await closing;
    assert.match(text, /event: end\ndata: \{"reason":"server shutting down"\}/);
    assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms`);
  } finally {
    await t.cleanup();
  }
});

test('changing the number of engine workers rebuilds no view: partitions move with the positions their state was counted to', async () => {
  let t = await startServer({ engine: { workers: 1 } as never });
  const dir = t.dir;
  const expected = new Map<string, { n: number; users: Set<string> }>();
  let sent = 0;
  const send = async (count: number) => {
    const events = Array.from({ length: count }, (_, i) => {
      const n = sent + i;
      return { type: 'page_view', key: `u${n % 37}`, data: { article_id: `a${n % 5}`, user_id: `u${n % 37}` } };
    });
    sent += count;
    for (const e of events) {
      const x = expected.get(e.data.article_id) ?? { n: 0, users: new Set<string>() };
      x.n++;
      x.users.add(e.data.user_id);
      expected.set(e.data.article_id, x);
    }
    assert.equal((await inject(t, 'POST', '/v1/events', events)).body.accepted, count);
    await caughtUp(t, 'per_article');
  };
  const check = async (label: string) => {
    const rows = (await inject(t, 'GET', '/v1/views/per_article?order=article_id')).body.rows as { article_id: string; n: number; users: number }[];
    assert.deepEqual(
      rows.map((r) => [r.article_id, r.n, r.users]),
      [...expected].sort(([a], [b]) => a.localeCompare(b)).map(([a, x]) => [a, x.n, x.users.size]),
      label,
    );
  };
  try {
    await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    await inject(t, 'PUT', '/v1/views/per_article', { sql: 'CREATE VIEW per_article AS SELECT article_id, COUNT(*) AS n, APPROX_COUNT_DISTINCT(user_id) AS users FROM page_view GROUP BY article_id' });
    await send(400);
    await check('one worker');
    for (const workers of [2, 3, 1, 2]) {
      await t.server.close();
      t = await startServer({ engine: { workers } as never }, dir);
      const info = (await inject(t, 'GET', '/v1/views/per_article')).body;
      assert.ok(info !== undefined);
      const state = await t.server.engine.info('per_article');
      assert.equal(state.lag, 0, `${workers} workers: restored at the log's end`);
      assert.equal(state.appliedRecords, 0, `${workers} workers: nothing applied again`);
      await check(`${workers} workers, after the restart`);
      await send(150);
      await check(`${workers} workers, after more events`);
    }
  } finally {
    await t.cleanup();
    const { rm } = await import('node:fs/promises');
    await rm(dir, { recursive: true, force: true });
  }
});
