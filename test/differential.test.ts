/**
 * Differential test of the engine (issue #10): random events and random views run through the halflife engine
 * (straight, and across checkpoint + crash + restore, over 1-4 partitions) and through DuckDB on the same events;
 * the answers must agree: exact aggregates equal (float sums within 1e-9 relative), APPROX_COUNT_DISTINCT within six
 * standard errors of HLL, APPROX_PERCENTILE within its relative accuracy of the value at rank floor(q·(n−1)), TOP_K
 * within Space-Saving's guarantee. The grammar is in helpers/diff-grammar.ts, the two runners and the comparison in
 * helpers/diff-run.ts.
 *
 *   DIFF_SEED=123 DIFF_RUNS=500 node --import tsx --test test/differential.test.ts
 *
 * On a mismatch fast-check shrinks the case and the failure prints the seed, both SQL texts, the events and both
 * answers.
 *
 * Deliberate differences (not failures; the generator stays clear of them, and the tests "deliberate difference: …"
 * below pin what each side really does, checked against DuckDB 1.5):
 *
 * | case                         | halflife                                       | DuckDB                                          |
 * | ---------------------------- | ---------------------------------------------- | ----------------------------------------------- |
 * | x / 0, 0 / 0, x % 0          | NULL                                           | NULL for integers; for DOUBLE ±Infinity / NaN unless SET ieee_floating_point_ops = false (this test sets it) |
 * | 5 / 2                        | 2.5                                            | 2.5 (same; // is integer division)              |
 * | UPPER('ß'), LOWER('İ'), Σ    | full Unicode mapping: 'SS', 'i̇', final 'ς'     | one-to-one: 'ẞ', 'i', 'σ'                       |
 * | text -> number               | JS Number: ' 12 ' = 12, '0x10' = 16, '1e3' = 1000, '' NULL | CAST: ' 12 ' = 12, '0x10' error (TRY_CAST NULL), '1e3' = 1000 |
 * | '12' + 1                     | 13 (text converted)                            | Binder Error (no implicit cast)                 |
 * | COUNT(DISTINCT j)            | values compared as text: 1 and '1' are one     | values compared by type: 1 and '1' are two      |
 * | view without key and window  | no row until an event passes                   | one row (COUNT(*) = 0, SUM NULL)                |
 * | SUBSTRING(s, 0 or < 0, n)    | PostgreSQL: positions before 1 count, 'hello',0,2 = 'h'; -2,3 = '' | 0 as 1 ('h'); negative from the end ('lo') |
 * | APPROX_PERCENTILE rank       | value at rank floor(q·(n−1))                   | quantile_disc: rank ceil(q·n)−1                 |
 * | CAST(2.5 AS BIGINT), a DOUBLE | 3: half away from zero for every number       | 2: a DOUBLE rounds half to even (3.5 -> 4); only DECIMAL rounds half away. docs/sql.md says "as DuckDB": true for DECIMAL only |
 * | CAST(3.0 AS VARCHAR)         | '3' (JS number text)                           | '3.0'                                           |
 *
 * KNOWN (below) lists open engine bugs: each has a minimal repro that runs as a todo test until the lead fixes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { DuckDBConnection } from '@duckdb/node-api';
import { eventArb, renderView, T0, viewArb, type GenEvent, type Rendered } from './helpers/diff-grammar.js';
import { compareRows, loadDuck, runDuck, runEngine, type Row, duckPerFile } from './helpers/diff-run.js';

const SEED = process.env.DIFF_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.DIFF_SEED);
const RUNS = process.env.DIFF_RUNS === undefined ? 200 : Number(process.env.DIFF_RUNS);

let db: DuckDBConnection;
duckPerFile((c) => (db = c));

const show = (x: unknown) => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v));

/** Runs one case on both sides; returns the problems found (with everything needed to reproduce them). */
async function check(r: Rendered, events: readonly GenEvent[], partitions: number): Promise<string[]> {
  await loadDuck(db, events);
  const expected = await runDuck(db, r.db);
  const straight = await runEngine(r.hl, events, partitions, false);
  const problems = compareRows(r, straight, expected).map((p) => `straight: ${p}`);
  if (events.length >= 2) {
    const restored = await runEngine(r.hl, events, partitions, true);
    problems.push(...compareRows(r, restored, expected).map((p) => `checkpoint + restore: ${p}`));
  }
  if (problems.length === 0) return [];
  return [
    ...problems.slice(0, 10),
    `seed: DIFF_SEED=${SEED}; partitions: ${partitions}`,
    `halflife SQL: ${r.hl}`,
    `DuckDB SQL: ${r.db}`,
    `events: ${show(events)}`,
    `halflife: ${show(straight)}`,
    `DuckDB: ${show(expected)}`,
  ];
}

test(`property: halflife's answers agree with DuckDB's over random events and views (DIFF_SEED=${SEED}, DIFF_RUNS=${RUNS})`, async () => {
  let rows = 0;
  // The last failure seen is the shrunk one: fast-check reports the counterexample, this adds both answers.
  let lastProblems: string[] = [];
  await fc.assert(
    fc.asyncProperty(viewArb, fc.array(eventArb, { maxLength: 50, size: 'max' }), fc.integer({ min: 1, max: 4 }), async (view, events, partitions) => {
      const r = renderView(view);
      const problems = await check(r, events, partitions);
      rows += 1;
      if (problems.length > 0) {
        lastProblems = problems;
        throw new Error(problems.join('\n'));
      }
    }),
    { seed: SEED, numRuns: RUNS },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n\nShrunk case:\n${lastProblems.join('\n')}`);
  });
  assert.ok(rows >= RUNS);
});


/** halflife's value of a row expression: MAX over a view of the given events (one event: that event's value). */
async function hlValue(expr: string, data: Record<string, unknown>[] = [{}]): Promise<unknown> {
  const events: GenEvent[] = data.map((d, i) => ({ received_at: T0 + i, ts: undefined, key: undefined, data: d }));
  const rows = await runEngine(`CREATE VIEW v AS SELECT MAX(${expr}) AS v, COUNT(*) AS c FROM ev`, events, 1, false);
  return rows[0]?.v;
}

async function duckValue(sql: string): Promise<unknown> {
  const rows = await runDuck(db, sql);
  return Object.values(rows[0])[0];
}

async function duckError(sql: string): Promise<string> {
  try {
    await runDuck(db, sql);
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
  return 'no error';
}

test('deliberate difference: division and remainder by zero are NULL (DuckDB: NULL for integers, IEEE for DOUBLE unless ieee_floating_point_ops = false)', async () => {
  assert.equal(await hlValue('1 / 0'), null);
  assert.equal(await hlValue('0 / 0'), null);
  assert.equal(await hlValue('5 % 0'), null);
  assert.equal(await hlValue('x / 0', [{ x: 1.5 }]), null);
  assert.equal(await duckValue('SELECT 1 / 0'), null);
  assert.equal(await duckValue('SELECT 5 % 0'), null);
  assert.equal(await duckValue('SELECT CAST(1 AS DOUBLE) / 0'), null, 'this connection sets ieee_floating_point_ops = false');
  await db.run('SET ieee_floating_point_ops = true');
  try {
    assert.equal(await duckValue('SELECT CAST(1 AS DOUBLE) / 0'), Infinity);
    assert.ok(Number.isNaN(await duckValue('SELECT CAST(0 AS DOUBLE) / 0')));
    assert.ok(Number.isNaN(await duckValue('SELECT CAST(5 AS DOUBLE) % 0')));
  } finally {
    await db.run('SET ieee_floating_point_ops = false');
  }
});

test('deliberate difference: 5 / 2 is 2.5 on both sides (DuckDB: // divides integers)', async () => {
  assert.equal(await hlValue('5 / 2'), 2.5);
  assert.equal(await duckValue('SELECT 5 / 2'), 2.5);
  assert.equal(await duckValue('SELECT 5 // 2'), 2);
});

test('deliberate difference: LOWER/UPPER use full Unicode case mapping (DuckDB maps one character to one)', async () => {
  assert.equal(await hlValue('UPPER(s)', [{ s: 'straße' }]), 'STRASSE');
  assert.equal(await duckValue("SELECT upper('straße')"), 'STRAẞE');
  assert.equal(await hlValue('LOWER(s)', [{ s: 'İ' }]), 'i\u0307');
  assert.equal(await duckValue("SELECT lower('İ')"), 'i');
  assert.equal(await hlValue('LOWER(s)', [{ s: 'ΟΔΟΣ' }]), 'οδος', 'final sigma');
  assert.equal(await duckValue("SELECT lower('ΟΔΟΣ')"), 'οδοσ');
  // Where the mapping is one to one, both agree (the generator keeps to such characters).
  assert.equal(await hlValue('UPPER(s)', [{ s: 'éωä😀' }]), await duckValue("SELECT upper('éωä😀')"));
});

test('deliberate difference: text converts to a number as JS Number does (DuckDB: CAST rules, no implicit cast)', async () => {
  assert.equal(await hlValue("CAST(s AS DOUBLE)", [{ s: '0x10' }]), 16);
  assert.equal(await duckValue("SELECT TRY_CAST('0x10' AS DOUBLE)"), null);
  assert.equal(await hlValue("CAST(s AS DOUBLE)", [{ s: ' 12 ' }]), 12);
  assert.equal(await duckValue("SELECT CAST(' 12 ' AS DOUBLE)"), 12);
  assert.equal(await hlValue("CAST(s AS DOUBLE)", [{ s: '1e3' }]), 1000);
  assert.equal(await duckValue("SELECT CAST('1e3' AS DOUBLE)"), 1000);
  assert.equal(await hlValue("CAST(s AS DOUBLE)", [{ s: '' }]), null);
  assert.equal(await duckValue("SELECT TRY_CAST('' AS DOUBLE)"), null);
  assert.equal(await hlValue("'12' + 1"), 13);
  assert.match(await duckError("SELECT '12' + 1"), /Binder Error/);
});

test('deliberate difference: COUNT(DISTINCT) compares values as text (1 and "1" are one value; DuckDB: two)', async () => {
  const events: GenEvent[] = [1, '1', 2.5, '2.5', { a: 1 }].map((j, i) => ({ received_at: T0 + i, ts: undefined, key: undefined, data: { j } }));
  const rows = await runEngine('CREATE VIEW v AS SELECT COUNT(DISTINCT j) AS d FROM ev', events, 1, false);
  assert.equal(rows[0].d, 3);
  await loadDuck(db, events);
  assert.equal(await duckValue('SELECT COUNT(DISTINCT CAST(j AS JSON)) FROM ev'), 5);
});

test('deliberate difference: a view without key and window has no row until an event passes (DuckDB: one row, COUNT 0)', async () => {
  const events: GenEvent[] = [{ received_at: T0, ts: undefined, key: undefined, data: { n: 1 } }];
  assert.deepEqual(await runEngine('CREATE VIEW v AS SELECT COUNT(*) AS c, SUM(n) AS s FROM ev WHERE n > 5', events, 1, false), []);
  await loadDuck(db, events);
  assert.deepEqual(await runDuck(db, 'SELECT COUNT(*) AS c, SUM(n) AS s FROM ev WHERE n > 5'), [{ c: 0, s: null }]);
});

test('deliberate difference: SUBSTRING before position 1 follows PostgreSQL (DuckDB counts a negative start from the end)', async () => {
  assert.equal(await hlValue('SUBSTRING(s, 0, 2)', [{ s: 'hello' }]), 'h');
  assert.equal(await duckValue("SELECT substring('hello', 0, 2)"), 'h');
  assert.equal(await hlValue('SUBSTRING(s, -2, 3)', [{ s: 'hello' }]), '');
  assert.equal(await duckValue("SELECT substring('hello', -2, 3)"), 'lo');
});

test('deliberate difference: APPROX_PERCENTILE ranks floor(q(n-1)); DuckDB quantile_disc ranks ceil(qn)-1', async () => {
  const events: GenEvent[] = [1, 2, 3, 4].map((n, i) => ({ received_at: T0 + i, ts: undefined, key: undefined, data: { n } }));
  const rows = await runEngine('CREATE VIEW v AS SELECT APPROX_PERCENTILE(n, 0.9, 0.001) AS p FROM ev', events, 1, false);
  assert.ok(Math.abs((rows[0].p as number) - 3) <= 0.003, String(rows[0].p));
  assert.equal(await duckValue('SELECT quantile_disc(x, 0.9) FROM range(1, 5) t(x)'), 4);
});

test('deliberate difference: CAST of a number with a half to an integer rounds half away from zero (DuckDB: half to even for DOUBLE)', async () => {
  assert.equal(await hlValue('CAST(x AS BIGINT)', [{ x: 2.5 }]), 3);
  assert.equal(await hlValue('CAST(x AS BIGINT)', [{ x: -2.5 }]), -3);
  assert.equal(await duckValue('SELECT CAST(CAST(2.5 AS DOUBLE) AS BIGINT)'), 2);
  assert.equal(await duckValue('SELECT CAST(CAST(-2.5 AS DOUBLE) AS BIGINT)'), -2);
  assert.equal(await duckValue('SELECT CAST(2.5 AS BIGINT)'), 3, 'DECIMAL rounds half away');
});

test('deliberate difference: numbers as text are JS number text (DuckDB writes a DOUBLE 3 as 3.0)', async () => {
  assert.equal(await hlValue('CAST(x AS VARCHAR)', [{ x: 3 }]), '3');
  assert.equal(await duckValue('SELECT CAST(CAST(3 AS DOUBLE) AS VARCHAR)'), '3.0');
  assert.equal(await hlValue('CAST(x AS VARCHAR)', [{ x: 0.30000000000000004 }]), await duckValue('SELECT CAST(CAST(0.1 AS DOUBLE) + CAST(0.2 AS DOUBLE) AS VARCHAR)'));
});

/**
 * Open engine bugs found by (or reported to) this test, each with a minimal repro: halflife's SQL, the DuckDB query
 * that states the right answer, and the events. They run as todo tests (reported, not failing the suite) until fixed;
 * then the entry moves out of this list and its repro stays as a plain test.
 */
interface Known {
  id: string;
  description: string;
  hl: string;
  db: string;
  events: GenEvent[];
  /** Numbers agree within this relative error (a sketch's accuracy); exact when absent. */
  within?: number;
}

const ev = (data: GenEvent['data'], key?: string, i = 0): GenEvent => ({ received_at: T0 + i, ts: undefined, key, data });

/** Bugs this test found, fixed: each repro now runs as a plain test. */
const FIXED: Known[] = [
  {
    id: 'group_by_alias_shadow',
    description: 'GROUP BY key, where key is a metadata column and also a SELECT alias, groups by the column (as PostgreSQL), not by the alias',
    hl: 'CREATE VIEW v AS SELECT LOWER(key) AS key, COUNT(*) AS c FROM ev GROUP BY key',
    db: 'SELECT lower(_key) AS key, COUNT(*) AS c FROM ev GROUP BY _key ORDER BY ALL',
    events: [ev({}, 'A', 0), ev({}, 'a', 1)],
  },
  {
    // Found by test/differential-late.test.ts. The first event (t = 0) moves the watermark to -2 s while no pane
    // exists, so the window [-3 s, -2 s), closed by then, is not frozen; the second event (t = -2.001 s, on time for
    // [-2.5 s, -1.5 s)) lands in a pane that window also covers, and the window is frozen with it at the step's end.
    // Fixed: src/engine/view-state.ts apply() now freezes (advances #frozenThrough) whenever the watermark moves.
    id: 'hop_closed_window_counts',
    description: 'HOP: an event is counted in a window that had closed before it came (when the watermark moved while no pane existed)',
    hl: "CREATE VIEW v WITH (max_lateness = '2s') AS SELECT COUNT(*) AS c, SUM(n) AS sn FROM ev GROUP BY HOP(received_at, INTERVAL '500' MILLISECOND, INTERVAL '1' SECOND)",
    // Windows of 1 s every 500 ms; the second event counts only in windows still open, ending after max time - 2 s.
    db: 'WITH w AS (SELECT *, unnest([(_ra // 500) * 500 - 500, (_ra // 500) * 500]) AS ws FROM ev) SELECT COUNT(*) AS c, SUM(n) AS sn FROM w WHERE ws + 1000 > (SELECT MAX(_ra) FROM ev) - 2000 GROUP BY ws',
    events: [ev({ n: 0 }, undefined, 0), ev({ n: 1 }, undefined, -2001)],
  },
];

/**
 * Open engine bugs. (ddsketch_collapse, found here, is DDSketch's documented bound rather than a bug: each sign keeps
 * max(2048, ln(1e4)/ln(gamma)) buckets, four orders of magnitude at any accuracy, and merges the lowest beyond that;
 * docs/sql.md states it and src/sketch/ddsketch.test.ts pins the four orders. The property leaves wider spans out.)
 */
const KNOWN: Known[] = [];

async function reproduce(k: Known): Promise<void> {
  await loadDuck(db, k.events);
  const expected = await runDuck(db, k.db);
  const rows = await runEngine(k.hl, k.events, 1, false);
  const got = rows.map(({ window_start: _s, window_end: _e, ...rest }) => rest);
  const tol = k.within;
  const round = (v: unknown) => (typeof v === 'number' && tol !== undefined ? { near: v } : v);
  const canon = (rs: Row[]) => rs.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).map(([c, v]) => [c, round(v)])))).sort();
  const message = `halflife: ${show(got)}\nDuckDB: ${show(expected)}`;
  if (tol === undefined) assert.deepEqual(canon(got), canon(expected), message);
  else {
    assert.equal(got.length, expected.length, message);
    got.forEach((r, i) => {
      for (const [c, v] of Object.entries(expected[i])) assert.ok(Math.abs(Number(r[c]) - Number(v)) <= tol * Math.abs(Number(v)), `${c}: ${message}`);
    });
  }
}

for (const k of FIXED) test(`fixed ${k.id}: ${k.description}`, () => reproduce(k));
for (const k of KNOWN) test(`KNOWN ${k.id}: ${k.description}`, { todo: `open engine bug ${k.id}` }, () => reproduce(k));
