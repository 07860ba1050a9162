import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../src/cli/main.js';
import { capture } from './helpers/io.js';
import { startServer } from './helpers/server.js';

/**
 * POST /v1/sql and `halflife sql` (issue #13): right after ingest, events not yet archived are counted once next to
 * the archived ones; JSON, NDJSON and CSV answers; the CLI's table and CSV.
 */
test('POST /v1/sql right after ingest counts every accepted event once, archived or not yet; ndjson and csv; halflife sql prints a table and CSV', async () => {
  const t = await startServer({ archive: { rollSeconds: 1 } } as never);
  try {
    const app = t.server.app;
    await app.inject({ method: 'PUT', url: '/v1/schemas/page_view', payload: { type: 'object', properties: { article: { type: 'string' }, ms: { type: 'integer' } } } });
    const send = async (from: number, n: number) => {
      const events = Array.from({ length: n }, (_, i) => ({ type: 'page_view', id: `v${from + i}`, key: `a${(from + i) % 4}`, data: { article: `a${(from + i) % 4}`, ms: from + i } }));
      const res = await app.inject({ method: 'POST', url: '/v1/events', payload: events });
      assert.equal(res.json().accepted, n);
    };
    const sql = async (q: string, format = '') => app.inject({ method: 'POST', url: `/v1/sql${format}`, payload: { sql: q } });
    await send(0, 500);
    // At once: nothing archived yet (the archive writes once a second), all from the log.
    let r = (await sql('SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(ms) AS total FROM page_view')).json();
    assert.deepEqual(r.rows, [['500', '500', '124750']]);
    // Once part is archived and more is sent: still each once.
    const deadline = Date.now() + 60_000;
    while ((t.server.archive?.status().archived ?? 0) < 500) {
      assert.ok(Date.now() < deadline, 'the archive wrote the first events');
      await new Promise((res) => setTimeout(res, 20));
    }
    await send(500, 300);
    r = (await sql('SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events WHERE type = \'page_view\'')).json();
    assert.deepEqual(r.rows, [['800', '800']]);
    assert.ok(r.files > 0, 'archive files were read');
    const nd = await sql('SELECT article, count(*) AS n FROM page_view GROUP BY article ORDER BY article', '?format=ndjson');
    assert.match(String(nd.headers['content-type']), /^application\/x-ndjson/);
    assert.deepEqual(nd.body.trim().split('\n').map((l) => JSON.parse(l)), ['a0', 'a1', 'a2', 'a3'].map((a) => ({ article: a, n: '200' })));
    const csv = await sql(`SELECT 'a,"b"' AS s, NULL AS z, 1 AS n`, '?format=csv');
    assert.equal(csv.body, 's,z,n\r\n"a,""b""",,1\r\n');
    assert.equal((await sql('SELECT 1', '?format=xml')).json().error.code, 'INVALID_REQUEST');
    // Streamed: a large answer comes whole up to history.maxRows (100,000 here), in order; refusals keep their status.
    const big = await sql('SELECT range AS i, range * 2 AS j FROM range(150000)', '?format=csv');
    assert.equal(big.statusCode, 200);
    assert.equal(big.headers['x-halflife-max-rows'], '100000');
    const lines = big.body.split('\r\n').filter((l) => l !== '');
    assert.equal(lines.length, 1 + 100_000);
    assert.equal(lines[0], 'i,j');
    assert.equal(lines[100_000], '99999,199998');
    const refused = await sql("COPY (SELECT 1) TO '/tmp/x.csv'", '?format=ndjson');
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.json().error.code, 'SQL_FORBIDDEN');
    // A static table joins history.
    const put = await app.inject({ method: 'PUT', url: '/v1/tables/articles?key=id', payload: [{ id: 'a0', section: 'news', words: 900 }, { id: 'a1', section: 'sport', words: 400 }, { id: 'a2', section: 'news', words: 1200 }] });
    assert.ok(put.statusCode < 300, put.body);
    const joined = (await sql('SELECT a.section, count(*) AS n, sum(a.words) AS words FROM page_view v JOIN articles a ON a.id = v.article GROUP BY ALL ORDER BY ALL')).json();
    assert.deepEqual(joined.rows, [['news', '400', '420000'], ['sport', '200', '80000']]);

    const url = await t.server.listen();
    const io = capture();
    assert.equal(await main(['sql', 'SELECT article, count(*) AS n FROM page_view GROUP BY article ORDER BY article', '--url', url], io), 0, io.stderr);
    assert.match(io.stdout, /article\s+n\n/);
    assert.match(io.stdout, /a3\s+200\n/);
    assert.match(io.stdout, /\(4 rows\)/);
    const io2 = capture();
    assert.equal(await main(['sql', 'SELECT count(*) AS n FROM page_view', '--url', url, '--csv'], io2), 0, io2.stderr);
    assert.equal(io2.stdout, 'n\n800\n');
    const io3 = capture();
    assert.equal(await main(['sql', 'DROP TABLE page_view', '--url', url], io3), 1);
    assert.match(io3.stderr, /SQL_FORBIDDEN/);
  } finally {
    await t.cleanup();
  }
});
