import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HalflifeError } from '../core/index.js';
import { fieldsFromJsonSchema, planView, type Catalog, type EventRow } from './index.js';

const schemas: Record<string, unknown> = {
  page_view: {
    type: 'object',
    properties: {
      article_id: { type: 'string' },
      user_id: { type: 'string' },
      section: { type: 'string' },
      read_ms: { type: 'integer' },
      referrer: { type: 'string' },
      geo: { type: 'object', properties: { country: { type: 'string' } } },
    },
  },
  trade: { type: 'object', properties: { pair: { type: 'string' }, price: { type: 'number' } } },
};

export const catalog: Catalog = {
  streamNames: () => Object.keys(schemas),
  streamFields: (n) => (n in schemas ? fieldsFromJsonSchema(schemas[n]) : undefined),
  tableNames: () => ['articles'],
  tableColumns: (n) => (n === 'articles' ? ['id', 'title', 'author'] : undefined),
};

function row(data: Record<string, unknown>, extra: Partial<EventRow> = {}): EventRow {
  return { type: 'page_view', data, key: undefined, received_at: 1000, event_time: 1000, partition: 0, offset: 0, joined: [], ...extra };
}

test('plans the README view: window, keys, aggregates, outputs and HAVING', () => {
  const plan = planView(
    `CREATE VIEW readers_5m AS
     SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers,
            APPROX_PERCENTILE(read_ms, 0.99) AS p99_read_ms, TOP_K(referrer, 10) AS top_referrers
     FROM page_view WHERE section <> 'test'
     GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
     HAVING COUNT(*) > 1`,
    catalog,
  );
  assert.equal(plan.name, 'readers_5m');
  assert.deepEqual(plan.window, { kind: 'hop', slideMs: 60_000, sizeMs: 300_000 });
  assert.equal(plan.time, 'received_at');
  assert.deepEqual(plan.keys.map((k) => k.name), ['article_id']);
  assert.deepEqual(plan.aggs.map((a) => [a.fn, a.param]), [['count_star', undefined], ['approx_count_distinct', 14], ['approx_percentile', 0.99], ['top_k', 10]]);
  assert.deepEqual(plan.outputs.map((o) => [o.name, o.key, o.agg]), [['article_id', 0, undefined], ['views', undefined, 0], ['readers', undefined, 1], ['p99_read_ms', undefined, 2], ['top_referrers', undefined, 3]]);
  assert.equal(plan.filter!(row({ section: 'test' })), false);
  assert.equal(plan.filter!(row({ section: 'news' })), true);
  assert.equal(plan.filter!(row({})), null, 'NULL <> x is NULL');
  assert.equal(plan.having!(['a'], [2, 1, 1, []], 0, 1), true);
  assert.equal(plan.having!(['a'], [1, 1, 1, []], 0, 1), false);
});

test('expressions: nested fields, CASE, IN, BETWEEN, LIKE, COALESCE, CAST, arithmetic with NULLs', () => {
  const plan = planView(
    `CREATE VIEW v WITH (max_lateness = '10s', start = 'latest') AS
     SELECT geo.country AS country, SUM(CASE WHEN read_ms BETWEEN 0 AND 100 THEN 1 ELSE 0 END) AS quick, COUNT(DISTINCT user_id),
            MAX(COALESCE(read_ms, 0) * 2) AS m
     FROM page_view p
     WHERE p.section IN ('news', 'sport') AND LOWER(referrer) LIKE 'https://%' AND CAST(read_ms AS DOUBLE) / 2 >= 1
     GROUP BY geo.country, TUMBLE(event_time, INTERVAL '30' SECOND)`,
    catalog,
  );
  assert.equal(plan.options.maxLatenessMs, 10_000);
  assert.equal(plan.options.start, 'latest');
  assert.equal(plan.time, 'event_time');
  assert.equal(plan.keys[0].eval(row({ geo: { country: 'NO' } })), 'NO');
  assert.equal(plan.keys[0].eval(row({})), null);
  assert.equal(plan.filter!(row({ section: 'news', referrer: 'HTTPS://x', read_ms: 4 })), true);
  assert.equal(plan.filter!(row({ section: 'culture', referrer: 'https://x', read_ms: 4 })), false);
  assert.equal(plan.filter!(row({ section: 'news', referrer: 'https://x', read_ms: 1 })), false);
  assert.equal(plan.aggs[0].arg!(row({ read_ms: 50 })), 1);
  assert.equal(plan.aggs[0].arg!(row({ read_ms: 500 })), 0);
  assert.equal(plan.aggs[1].fn, 'count_distinct');
  assert.equal(plan.aggs[2].arg!(row({})), 0);
  assert.deepEqual(plan.outputs.map((o) => o.name), ['country', 'quick', 'count', 'm']);
});

test('joins with static tables resolve qualified and unqualified table columns', () => {
  const plan = planView(
    `CREATE VIEW by_author AS SELECT a.author, COUNT(*) FROM page_view pv LEFT JOIN articles a ON pv.article_id = a.id GROUP BY a.author`,
    catalog,
  );
  assert.deepEqual(plan.joins.map((j) => [j.table, j.kind, j.column]), [['articles', 'left', 'id']]);
  assert.equal(plan.joins[0].probe(row({ article_id: 'a1' })), 'a1');
  assert.equal(plan.keys[0].eval(row({}, { joined: [{ id: 'a1', author: 'ann' }] })), 'ann');
  assert.equal(plan.keys[0].eval(row({}, { joined: [undefined] })), null);
  const unqualified = planView(`CREATE VIEW t AS SELECT title, COUNT(*) FROM page_view JOIN articles ON article_id = articles.id GROUP BY title`, catalog);
  assert.equal(unqualified.keys[0].eval(row({}, { joined: [{ title: 'T' }] })), 'T');
});

function planError(sql: string, pattern: RegExp, line?: number, column?: number) {
  assert.throws(() => planView(sql, catalog, 'v'), (err: HalflifeError) => {
    assert.equal(err.code, 'SQL_PLAN', err.message);
    assert.match(String(err.details?.reason), pattern);
    if (line !== undefined) assert.deepEqual([err.details?.line, err.details?.column], [line, column]);
    assert.match(err.message, /\^/);
    return true;
  });
}

test('plan errors name the unknown thing and suggest the closest match', () => {
  planError('SELECT COUNT(*) FROM page_veiw', /unknown stream page_veiw \(did you mean page_view\?\)/, 1, 22);
  planError('SELECT articel_id, COUNT(*) FROM page_view GROUP BY articel_id', /unknown column articel_id in page_view \(did you mean article_id\?\)/, 1, 53);
  planError('SELECT geo.contry, COUNT(*) FROM page_view GROUP BY geo.contry', /unknown column geo.contry in page_view \(did you mean country\?\)/);
  planError('SELECT COUNT(*) FROM page_view JOIN artcles a ON article_id = a.id', /unknown table artcles \(did you mean articles\?\)/);
  planError('SELECT COUNT(*) FROM page_view JOIN articles a ON article_id = a.idd', /table articles has no column idd \(did you mean id\?\)/);
  planError('SELECT user_id, COUNT(*) FROM page_view GROUP BY article_id', /column user_id must appear in GROUP BY or inside an aggregate/);
  planError('SELECT COUNT(*) FROM page_view WHERE COUNT(*) > 1', /aggregate COUNT is not allowed in WHERE/);
  planError('SELECT CONT(*) FROM page_view', /unknown function CONT \(did you mean COUNT\?\)/);
  planError('SELECT SUM(section) FROM page_view', /SUM needs a number, but section is string/);
  planError('SELECT APPROX_PERCENTILE(read_ms, 2) FROM page_view', /quantile must be a number between 0 and 1/);
  planError('SELECT TOP_K(referrer) FROM page_view', /k must be an integer/);
  planError("SELECT COUNT(*) FROM page_view GROUP BY TUMBLE(read_ms, INTERVAL '1' MINUTE)", /windows over received_at or event_time/);
  planError("SELECT COUNT(*) FROM page_view GROUP BY TUMBLE(received_at, 60)", /must be an INTERVAL/);
  planError("CREATE VIEW v WITH (max_latenes = '1s') AS SELECT COUNT(*) FROM page_view", /unknown view option max_latenes \(did you mean max_lateness\?\)/);
  planError("CREATE VIEW v WITH (max_lateness = 'soon') AS SELECT COUNT(*) FROM page_view", /must be a duration/);
  planError('SELECT * FROM page_view', /must name its columns/);
  planError('SELECT article_id FROM page_view', /column article_id must appear in GROUP BY/);
  planError('SELECT 1 FROM page_view', /a view aggregates/);
});

test('schemaCatalog: streams by schema (no fields for unknown or inherited names) and tables when given', async () => {
  const { schemaCatalog } = await import('./index.js');
  const c = schemaCatalog({ page_view: { type: 'object', properties: { a: { type: 'string' } } } });
  assert.deepEqual(c.streamNames(), ['page_view']);
  assert.ok(c.streamFields('page_view'));
  assert.equal(c.streamFields('toString'), undefined);
  assert.deepEqual(c.tableNames(), []);
  const t = schemaCatalog({}, { names: () => ['articles'], columns: (n) => (n === 'articles' ? ['id'] : undefined) });
  assert.deepEqual(t.tableNames(), ['articles']);
  assert.deepEqual(t.tableColumns('articles'), ['id']);
  assert.equal(t.tableColumns('nope'), undefined);
});
