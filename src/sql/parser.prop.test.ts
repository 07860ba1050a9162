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

test('property: token positions (line, column) are those of a plain count of newlines before the token', async () => {
  const { tokenize } = await import('./lexer.js');
  const { posAt } = await import('./position.js');
  const piece = fc.constantFrom('SELECT', 'a', 'n', "'x\ny'", '"q\nr"', '12.5e3', '(', ')', '<>', '--c\n', '/* a\n b */', "'🚀'", ',');
  const gap = fc.constantFrom(' ', '\n', '\r\n', '\t', '\n\n  ');
  fc.assert(
    fc.property(fc.array(fc.tuple(piece, gap), { maxLength: 40 }), (parts) => {
      const text = parts.map(([p, g]) => p + g).join('');
      for (const t of tokenize(text)) assert.deepEqual(t.pos, posAt(text, t.pos.offset));
    }),
  );
});

test('SQL text past 100,000 characters is SQL_TOO_LARGE and nesting past 256 levels is SQL_TOO_DEEP, never a stack overflow', async () => {
  const { MAX_SQL_DEPTH } = await import('./parser.js');
  const { MAX_SQL_LENGTH } = await import('./lexer.js');
  const code = (fn: () => unknown) => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      return err instanceof HalflifeError ? err.code : `not a HalflifeError: ${String(err)}`;
    }
  };
  assert.equal(code(() => parse(`SELECT a FROM page_view WHERE a = '${'x'.repeat(MAX_SQL_LENGTH)}'`)), 'SQL_TOO_LARGE');
  const forms: Record<string, (d: number) => string> = {
    parentheses: (d) => '('.repeat(d) + 'n' + ')'.repeat(d),
    'an operator chain': (d) => Array(d).fill('n').join(' + '),
    'an OR chain': (d) => Array(d).fill('n = 1').join(' OR '),
    NOT: (d) => 'NOT '.repeat(d) + 'n = 1',
    'unary minus': (d) => '- '.repeat(d) + 'n',
    CASE: (d) => 'CASE WHEN n = 1 THEN '.repeat(d) + '1' + ' END'.repeat(d),
    'function arguments': (d) => 'COALESCE('.repeat(d) + 'n' + ')'.repeat(d),
  };
  for (const [form, make] of Object.entries(forms)) {
    const sql = (d: number) => `CREATE VIEW v AS SELECT ${make(d)} AS r, COUNT(*) AS c FROM page_view GROUP BY ${make(d)}`;
    // Well inside the limit: parses, plans and evaluates.
    assert.equal(code(() => planView(sql(MAX_SQL_DEPTH - 16), catalog).keys[0].eval({ type: 'page_view', data: { n: 1 }, key: undefined, received_at: 0, event_time: 0, partition: 0, offset: 0, joined: [] })), 'ok', form);
    assert.equal(code(() => parse(sql(MAX_SQL_DEPTH + 10))), 'SQL_TOO_DEEP', form);
    // As deep as the length limit allows.
    const deepest = Math.floor(90_000 / (make(101).length - make(100).length));
    assert.equal(code(() => parse(`SELECT ${make(deepest)} AS r FROM page_view`)), 'SQL_TOO_DEEP', form);
  }
});
