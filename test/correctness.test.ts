import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { caughtUp, startServer, type TestServer, inject } from './helpers/server.js';

async function view(t: TestServer, name: string, sql: string) {
  const res = await inject(t, 'PUT', `/v1/views/${name}`, { sql });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  await caughtUp(t, name);
}

async function query(t: TestServer, sql: string) {
  return inject(t, 'POST', '/v1/query', { sql });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 3000; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const workers of [1, 2]) {
  describe(`answers a user can check by hand (${workers} engine worker${workers > 1 ? 's' : ''})`, () => {
    let t: TestServer;
    before(async () => {
      t = await startServer({ engine: { workers } as never, overload: { shedLowAt: 1e9, shedNormalAt: 1e9 } as never });
    });
    after(() => t.cleanup());

    test('a string of 32 bytes or more no longer corrupts the fields after it', async () => {
      await inject(t, 'PUT', '/v1/schemas/note', { type: 'object', properties: { note: { type: 'string' }, n: { type: 'number' } } });
      const sent = await inject(t, 'POST', '/v1/events', [
        { type: 'note', data: { note: 'a'.repeat(40), n: 5 } },
        { type: 'note', data: { note: 'short', n: 7 } },
        { type: 'note', data: { note: 'y'.repeat(31), n: 11 } },
      ]);
      assert.equal(sent.body.accepted, 3);
      await view(t, 'note_totals', 'SELECT COUNT(*) AS c, COUNT(n) AS with_n, SUM(n) AS total FROM note');
      // A second view reading the string too: which fields are read must not change the answer.
      await view(t, 'note_lengths', 'SELECT MAX(LENGTH(note)) AS longest, SUM(n) AS total FROM note');
      const [row] = (await inject(t, 'GET', '/v1/views/note_totals')).body.rows;
      assert.deepEqual([row.c, row.with_n, row.total], [3, 3, 23]);
      const [lengths] = (await inject(t, 'GET', '/v1/views/note_lengths')).body.rows;
      assert.deepEqual([lengths.longest, lengths.total], [40, 23]);
    });

    test('queries over a view see its own columns, even when named like metadata', async () => {
      await inject(t, 'PUT', '/v1/schemas/ping', { type: 'object', properties: { n: { type: 'number' }, k: { type: 'string' } } });
      await inject(t, 'PUT', '/v1/schemas/pong', { type: 'object', properties: { n: { type: 'number' } } });
      await inject(t, 'POST', '/v1/events', [
        { type: 'ping', data: { n: 1, k: 'x' } },
        { type: 'ping', data: { n: 2, k: 'y' } },
        { type: 'pong', data: { n: 10 } },
      ]);
      await view(t, 'per_type', 'SELECT type, SUM(n) AS n FROM events GROUP BY type');
      const star = await query(t, 'SELECT * FROM per_type ORDER BY type');
      assert.equal(star.status, 200, JSON.stringify(star.body));
      const types = star.body.rows.map((r: any) => r.type).filter((x: string) => x === 'ping' || x === 'pong');
      assert.deepEqual(types, ['ping', 'pong']);
      const grouped = await query(t, `SELECT type, SUM(n) AS total FROM per_type WHERE type IN ('ping', 'pong') GROUP BY type ORDER BY type`);
      assert.deepEqual(grouped.body.rows, [{ type: 'ping', total: 3 }, { type: 'pong', total: 10 }]);
      // Every metadata name as a view column.
      await view(t, 'meta_named', `SELECT k AS key, COUNT(*) AS partition, SUM(n) AS offset, MIN(n) AS received_at, MAX(n) AS event_time, k AS type FROM ping GROUP BY k`);
      const meta = await query(t, 'SELECT key, partition, offset, received_at, event_time, type FROM meta_named ORDER BY key');
      assert.deepEqual(meta.body.rows, [
        { key: 'x', partition: 1, offset: 1, received_at: 1, event_time: 1, type: 'x' },
        { key: 'y', partition: 1, offset: 2, received_at: 2, event_time: 2, type: 'y' },
      ]);
      // A metadata name the view does not have is an unknown column, not a silent constant.
      const unknown = await query(t, 'SELECT type FROM note_totals');
      assert.equal(unknown.status, 400);
      assert.match(unknown.body.error.message, /unknown column type/);
    });

    test('a join on a column that is not unique yields one row per match; a repeated key is refused', async () => {
      await inject(t, 'PUT', '/v1/schemas/read', { type: 'object', properties: { article: { type: 'string' } } });
      const dup = await inject(t, 'PUT', '/v1/tables/authors?key=id', [{ id: 1, article: 'a1' }, { id: 1, article: 'a2' }]);
      assert.equal(dup.status, 400);
      assert.equal(dup.body.error.code, 'INVALID_TABLE');
      assert.match(dup.body.error.message, /same key 1/);
      // Article a1 has two authors, a2 one, a3 none.
      const put = await inject(t, 'PUT', '/v1/tables/authors?key=id', [
        { id: 1, article: 'a1', author: 'ann' },
        { id: 2, article: 'a1', author: 'bob' },
        { id: 3, article: 'a2', author: 'ann' },
      ]);
      assert.equal(put.status, 200, JSON.stringify(put.body));
      await inject(t, 'POST', '/v1/events', [
        { type: 'read', data: { article: 'a1' } },
        { type: 'read', data: { article: 'a2' } },
        { type: 'read', data: { article: 'a3' } },
      ]);
      await view(t, 'reads_by_author', `SELECT au.author AS author, COUNT(*) AS reads FROM read r JOIN authors au ON r.article = au.article GROUP BY au.author`);
      const rows = (await query(t, 'SELECT author, reads FROM reads_by_author ORDER BY author')).body.rows;
      assert.deepEqual(rows, [{ author: 'ann', reads: 2 }, { author: 'bob', reads: 1 }]);
      await view(t, 'reads_left', `SELECT COALESCE(au.author, 'none') AS author, COUNT(*) AS reads FROM read r LEFT JOIN authors au ON r.article = au.article GROUP BY COALESCE(au.author, 'none')`);
      const left = (await query(t, 'SELECT author, reads FROM reads_left ORDER BY author')).body.rows;
      assert.deepEqual(left, [{ author: 'ann', reads: 2 }, { author: 'bob', reads: 1 }, { author: 'none', reads: 1 }]);
    });

    test('adding up overlapping HOP windows is refused with the reason; per window it is right', async () => {
      await inject(t, 'PUT', '/v1/schemas/view_ev', { type: 'object', properties: { article_id: { type: 'string' } } });
      await inject(t, 'POST', '/v1/events', Array.from({ length: 59 }, () => ({ type: 'view_ev', data: { article_id: 'a1' } })));
      await view(t, 'views_5m', `SELECT article_id, COUNT(*) AS views FROM view_ev GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)`);
      const refused = await query(t, 'SELECT article_id, SUM(views) AS views FROM views_5m GROUP BY article_id');
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error.code, 'SQL_PLAN');
      assert.match(refused.body.error.message, /each event lies in 5 windows and would be counted 5 times/);
      const perWindow = await query(t, 'SELECT window_start, SUM(views) AS views FROM views_5m GROUP BY window_start');
      assert.equal(perWindow.status, 200);
      for (const r of perWindow.body.rows) assert.ok(r.views <= 59);
      assert.equal(perWindow.body.rows.reduce((a: number, r: any) => a + r.views, 0), 59 * 5, 'each event in its five windows');
      const one = perWindow.body.rows[0].window_start;
      const pinned = await query(t, `SELECT SUM(views) AS views FROM views_5m WHERE window_start = ${one}`);
      assert.equal(pinned.body.rows[0].views, 59);
      // MAX and the union of sketches are not inflated by the overlap, so they stay allowed.
      assert.equal((await query(t, 'SELECT MAX(views) AS most FROM views_5m')).body.rows[0].most, 59);
    });

    test('APPROX_PERCENTILE takes a relative accuracy: a p95 of prices within 1 % is right', async () => {
      await inject(t, 'PUT', '/v1/schemas/trade', { type: 'object', properties: { pair: { type: 'string' }, price: { type: 'number' } } });
      const prices = Array.from({ length: 1000 }, (_, i) => 100 + i / 1000);
      await inject(t, 'POST', '/v1/events', prices.map((price) => ({ type: 'trade', data: { pair: 'BTC-EUR', price } })));
      await view(t, 'p95', `SELECT pair, APPROX_PERCENTILE(price, 0.95) AS coarse, APPROX_PERCENTILE(price, 0.95, 0.0001) AS fine FROM trade GROUP BY pair`);
      const [row] = (await inject(t, 'GET', '/v1/views/p95')).body.rows;
      const exact = prices[Math.floor(0.95 * 999)];
      assert.ok(Math.abs(row.fine - exact) <= 0.0001 * exact, `fine ${row.fine} vs ${exact}`);
      // Merged by a query at the view's accuracy.
      const merged = await query(t, 'SELECT APPROX_PERCENTILE(fine, 0.95) AS p FROM p95');
      assert.ok(Math.abs(merged.body.rows[0].p - exact) <= 0.0001 * exact, JSON.stringify(merged.body));
      const bad = await inject(t, 'PUT', '/v1/views/bad_acc', { sql: 'SELECT APPROX_PERCENTILE(price, 0.95, 0) AS p FROM trade' });
      assert.equal(bad.status, 400);
      assert.match(bad.body.error.message, /relative accuracy must be a number from 0.00001 to 0.5/);
    });
  });
}

test('a replayed dead letter updates the closed window it belongs to and reaches live streams', async () => {
  const t = await startServer({ overload: { shedLowAt: 1e9, shedNormalAt: 1e9 } as never });
  try {
    await inject(t, 'PUT', '/v1/schemas/fill', { type: 'object', properties: { pair: { type: 'string' }, qty: { type: 'number', exclusiveMinimum: 0 } }, required: ['pair', 'qty'] });
    await view(t, 'fills', `CREATE VIEW fills WITH (max_lateness = '0s', idle_timeout = '50ms') AS SELECT pair, COUNT(*) AS n, SUM(qty) AS qty FROM fill GROUP BY pair, TUMBLE(received_at, INTERVAL '200' MILLISECOND)`);
    // The live stream, open from the start: rows of closed windows come with `_final: true`.
    const address = await t.server.app.listen({ port: 0, host: '127.0.0.1' });
    const ac = new AbortController();
    const live = await fetch(`${address}/v1/views/fills/live`, { signal: ac.signal });
    const reader = live.body!.getReader();
    const pushed: Record<string, unknown>[] = [];
    let buffered = '';
    const waitFor = async (what: string, ok: (row: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
      for (;;) {
        const found = pushed.find(ok);
        if (found !== undefined) return found;
        const { value, done } = await reader.read();
        if (done) throw new Error(`the live stream ended before ${what}`);
        buffered += Buffer.from(value).toString();
        let cut: number;
        while ((cut = buffered.indexOf('\n\n')) >= 0) {
          const frame = buffered.slice(0, cut);
          buffered = buffered.slice(cut + 2);
          const data = /^data: (.*)$/m.exec(frame);
          if (/^event: rows$/m.test(frame) && data) pushed.push(...(JSON.parse(data[1]!) as { rows: Record<string, unknown>[] }).rows);
        }
      }
    };
    const sent = await inject(t, 'POST', '/v1/events', [{ type: 'fill', data: { pair: 'EURUSD', qty: 5 } }, { type: 'fill', data: { pair: 'EURUSD', qty: 0 } }]);
    assert.equal(sent.body.accepted, 1);
    assert.equal(sent.body.rejected, 1);
    // Wait until the good fill's window has closed (final), then fix the schema and replay.
    const closed = await waitFor('the window closed', (r) => r.pair === 'EURUSD' && r._final === true);
    assert.equal(closed.n, 1);
    pushed.length = 0;
    const fixed = await inject(t, 'PUT', '/v1/schemas/fill', { type: 'object', properties: { pair: { type: 'string' }, qty: { type: 'number', minimum: 0 } }, required: ['pair', 'qty'] });
    assert.equal(fixed.status, 201, JSON.stringify(fixed.body));
    const replay = await inject(t, 'POST', '/v1/deadletters/replay', { type: 'fill' });
    assert.equal(replay.body.replayed, 1);
    const after = await until('the correction', async () => {
      const rows = (await inject(t, 'GET', '/v1/views/fills?pair=EURUSD')).body.rows;
      return rows.length === 1 && rows[0].n === 2 ? rows[0] : undefined;
    });
    assert.equal(after.window_start, closed.window_start, 'the window it belongs to, not a new one');
    assert.equal((await inject(t, 'GET', '/v1/views/fills/late')).body.count, 0);
    const corrected = await waitFor('the corrected row', (r) => r.pair === 'EURUSD' && r.n === 2);
    assert.equal(corrected.window_start, closed.window_start);
    assert.equal(corrected._final, true, 'the corrected window is still closed');
    ac.abort();
  } finally {
    await t.cleanup();
  }
});
