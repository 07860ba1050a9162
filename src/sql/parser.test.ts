import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HalflifeError } from '../core/index.js';
import { parse, parseDuration } from './parser.js';

const README_VIEW = `CREATE VIEW readers_5m AS
SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers,
       APPROX_PERCENTILE(read_ms, 0.99) AS p99_read_ms, TOP_K(referrer, 10) AS top_referrers
FROM page_view
WHERE section <> 'test'
GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
HAVING COUNT(*) > 1;`;

test('parses the README view', () => {
  const stmt = parse(README_VIEW);
  assert.equal(stmt.kind, 'create_view');
  if (stmt.kind !== 'create_view') return;
  assert.equal(stmt.name, 'readers_5m');
  const s = stmt.select;
  assert.equal(s.items.length, 5);
  assert.deepEqual(s.items.map((i) => i.alias), [undefined, 'views', 'readers', 'p99_read_ms', 'top_referrers']);
  assert.equal(s.from.name, 'page_view');
  assert.equal(s.groupBy.length, 2);
  const hop = s.groupBy[1];
  assert.equal(hop.kind, 'call');
  if (hop.kind === 'call') {
    assert.equal(hop.name, 'HOP');
    assert.deepEqual(hop.args.slice(1).map((a) => (a.kind === 'interval' ? a.ms : null)), [60_000, 300_000]);
  }
  assert.equal(s.having?.kind, 'binary');
});

test('parses options, joins, every expression form and nested columns', () => {
  const stmt = parse(`CREATE VIEW v WITH (max_lateness = '10s', start = 'latest') AS
    SELECT a.b.c, CASE WHEN x BETWEEN 1 AND 2 THEN 'low' ELSE 'high' END AS band,
           COALESCE(y, 0) + -3 * 2 % 5 AS z, CAST(n AS DOUBLE), LOWER(s) || 'x'
    FROM page_view pv LEFT JOIN articles a ON pv.article_id = a.id
    WHERE s LIKE 'a%' AND t NOT IN ('x', 'y') AND NOT (u IS NOT NULL OR w IS NULL)
    GROUP BY a.b.c, TUMBLE(event_time, INTERVAL '30' SECOND)`);
  assert.equal(stmt.kind, 'create_view');
  if (stmt.kind !== 'create_view') return;
  assert.deepEqual(stmt.options, { max_lateness: '10s', start: 'latest' });
  assert.deepEqual(stmt.select.joins.map((j) => [j.kind, j.table.name, j.table.alias]), [['left', 'articles', 'a']]);
  assert.deepEqual(stmt.select.items[0].expr.kind === 'column' && stmt.select.items[0].expr.path, ['a', 'b', 'c']);
  assert.equal(stmt.select.from.alias, 'pv');
});

function syntaxError(sql: string, line: number, column: number, reason: RegExp) {
  assert.throws(() => parse(sql), (err: HalflifeError) => {
    assert.equal(err.code, 'SQL_SYNTAX');
    assert.equal(err.status, 400);
    assert.deepEqual([err.details?.line, err.details?.column], [line, column]);
    assert.match(String(err.details?.reason), reason);
    assert.match(err.message, /\n.*\n *\^/, 'the message shows the line and a caret');
    return true;
  });
}

test('syntax errors give line, column and a caret under the offending text', () => {
  syntaxError('SELECT a FROM', 1, 14, /expected a stream, view or table name but found the end of the query/);
  syntaxError('SELECT a,\n  FROM t', 2, 3, /expected an expression but found "FROM"/);
  syntaxError("SELECT 'abc FROM t", 1, 8, /unterminated string literal/);
  syntaxError('SELECT a FROM t WHERE x = 1 GROUP a', 1, 35, /expected BY/);
  syntaxError("SELECT a FROM t GROUP BY TUMBLE(received_at, INTERVAL '5' FORTNIGHT)", 1, 59, /expected a unit/);
  syntaxError('SELECT select FROM t', 1, 8, /expected an expression/);
  syntaxError('SELECT a FROM t LIMIT x', 1, 23, /LIMIT takes a whole number/);
  syntaxError('SELECT a FROM t extra junk', 1, 23, /unexpected "junk" after the end/);
  syntaxError('SELECT a ? b FROM t', 1, 10, /unexpected character "\?"/);
});

test('IS NULL binds looser than comparisons and LIKE, as in PostgreSQL', () => {
  const stmt = parse("SELECT a FROM t WHERE a LIKE 'x%' IS NOT NULL AND b = 1 IS NULL");
  assert.equal(stmt.kind, 'select');
  if (stmt.kind !== 'select') return;
  const w = stmt.where!;
  assert.equal(w.kind, 'binary');
  if (w.kind !== 'binary') return;
  assert.equal(w.left.kind, 'isnull');
  if (w.left.kind === 'isnull') {
    assert.equal(w.left.negated, true);
    assert.equal(w.left.expr.kind, 'like');
  }
  assert.equal(w.right.kind, 'isnull');
});

test('durations', () => {
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('250 ms'), 250);
  assert.equal(parseDuration('5 minutes'), 300_000);
  assert.equal(parseDuration('24h'), 86_400_000);
  assert.equal(parseDuration('soon'), undefined);
});
