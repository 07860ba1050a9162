import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HalflifeError } from '../core/index.js';
import { parse } from './parser.js';
import { fieldsFromJsonSchema, planView, type Catalog } from './plan.js';

const catalog: Catalog = {
  streamNames: () => ['page_view'],
  streamFields: () => fieldsFromJsonSchema({ type: 'object', properties: { a: { type: 'string' }, n: { type: 'integer' } } }),
  tableNames: () => [],
  tableColumns: () => undefined,
};

function onlySqlErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HalflifeError, `not a HalflifeError: ${String(err)}`);
    assert.ok(err.code === 'SQL_SYNTAX' || err.code === 'SQL_PLAN', err.code);
    assert.equal(typeof err.details?.line, 'number');
    assert.equal(typeof err.details?.column, 'number');
  }
}

test('property: any text either parses or fails with SQL_SYNTAX and a position, never another error', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => onlySqlErrors(() => parse(text))),
    { numRuns: 2000 },
  );
});

const fragments = ['SELECT', 'a', 'n', 'COUNT(*)', 'SUM(n)', ',', 'FROM', 'page_view', 'WHERE', 'GROUP BY', 'HAVING', '(', ')', "'x'", '1', '=', '>', 'AND', 'OR', 'NOT', 'IN', 'BETWEEN', 'CASE', 'WHEN', 'THEN', 'END', "TUMBLE(received_at, INTERVAL '1' MINUTE)", 'AS', 'b', '*', '+', '.', 'LIKE', 'IS NULL'];

test('property: token soups of the dialect plan or fail with SQL_SYNTAX / SQL_PLAN, never another error', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...fragments), { maxLength: 25 }), (parts) => {
      const sql = `CREATE VIEW v AS ${parts.join(' ')}`;
      onlySqlErrors(() => planView(sql, catalog));
    }),
    { numRuns: 3000 },
  );
});

/** Expressions of the dialect over the columns a (string) and n (integer), built from a small grammar. */
const exprArb: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('a', 'n', 'received_at', 'key', '1', '2.5', "'x'", 'NULL', 'TRUE'),
    fc.tuple(tie('e'), fc.constantFrom('+', '-', '*', '/', '%', '=', '<>', '<', '>=', 'AND', 'OR', '||'), tie('e')).map(([l, o, r]) => `(${l} ${o} ${r})`),
    tie('e').map((x) => `(NOT ${x})`),
    tie('e').map((x) => `(-${x})`),
    tie('e').map((x) => `(${x} IS NULL)`),
    fc.tuple(tie('e'), tie('e'), tie('e')).map(([x, l, h]) => `(${x} BETWEEN ${l} AND ${h})`),
    fc.tuple(tie('e'), tie('e')).map(([x, y]) => `(${x} IN (${y}, 1, 'a'))`),
    fc.tuple(tie('e'), tie('e'), tie('e')).map(([c, t, f]) => `CASE WHEN ${c} THEN ${t} ELSE ${f} END`),
    tie('e').map((x) => `COALESCE(${x}, 0)`),
    tie('e').map((x) => `LOWER(${x})`),
    tie('e').map((x) => `LENGTH(${x})`),
    tie('e').map((x) => `CAST(${x} AS DOUBLE)`),
    tie('e').map((x) => `(${x} LIKE 'a%')`),
  ),
})).e;

test('property: views built from the grammar plan, and evaluate any event data without throwing', () => {
  let planned = 0;
  fc.assert(
    fc.property(exprArb, exprArb, exprArb, fc.jsonValue(), fc.jsonValue(), (w, x, y, a, n) => {
      const sql = `CREATE VIEW v AS SELECT a, COUNT(*) AS c, SUM(n) AS s, MAX(${x}) AS m, MIN(${y}) AS lo, APPROX_COUNT_DISTINCT(${x}) AS d
        FROM page_view WHERE ${w} GROUP BY a, TUMBLE(received_at, INTERVAL '1' MINUTE) HAVING COUNT(*) > 0 OR MAX(${x}) IS NULL`;
      const plan = planView(sql, catalog);
      planned++;
      const row = { type: 'page_view', data: { a, n } as Record<string, unknown>, key: undefined, received_at: 1, event_time: 1, partition: 0, offset: 0, joined: [] };
      plan.filter?.(row);
      const keys = plan.keys.map((k) => k.eval(row));
      const aggs = plan.aggs.map((spec) => (spec.arg === undefined ? null : spec.arg(row)));
      for (const o of plan.outputs) o.eval(keys, aggs, 0, 1);
      plan.having?.(keys, aggs, 0, 1);
    }),
    { numRuns: 1500 },
  );
  assert.ok(planned >= 1500);
});
