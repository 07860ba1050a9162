/**
 * Differential test of queries over views (POST /v1/query: planQuery in src/sql, runQuery in src/query, here called
 * in-process through the engine as the engine worker does). Random views (0-2 keys, exact aggregates and sketches,
 * no window, TUMBLE or overlapping HOP), their output columns named like event metadata (type, key, offset,
 * received_at) where the generator likes; random queries over them: WHERE on view columns and window_start,
 * SELECT * or columns, GROUP BY, re-aggregation (SUM, MIN, MAX, COUNT; APPROX_COUNT_DISTINCT and APPROX_PERCENTILE
 * merging the view's sketches), HAVING, ORDER BY and LIMIT. Each query runs over one engine and over two engines
 * owning disjoint partitions (partials merged). The oracle is DuckDB running the same query over the view's rows as
 * DuckDB computes them from the events, with each sketch column's underlying values kept alongside (merged sketches
 * are checked against the exact answer over those values, within the sketch's bound).
 *
 * Over an overlapping HOP view, SUM / AVG / APPROX_PERCENTILE / TOP_K across windows must be refused with SQL_PLAN
 * (docs/sql.md "Reading views") unless the query groups by window_start / window_end or pins one window with
 * `window_start = …`; the test states when a query must be refused and checks both ways.
 *
 * ORDER BY with LIMIT: the rows returned must be in order and their sort keys must be the first LIMIT sort keys of the
 * full answer (ties may pick either row).
 *
 *   DIFF_SEED=1 DIFF_QUERY_RUNS=500 node --import tsx --test test/differential-query.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { DuckDBConnection } from '@duckdb/node-api';
import { HalflifeError } from '../src/core/index.js';
import { eventArb, T0, type GenEvent } from './helpers/diff-grammar.js';
import { ddsketchMayCollapse, hllStdError, loadDuck, runDuck, duckPerFile } from './helpers/diff-run.js';
import { Harness } from './helpers/diff-engine.js';

const SEED = process.env.DIFF_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.DIFF_SEED);
const RUNS = Number(process.env.DIFF_QUERY_RUNS ?? 150);

let db: DuckDBConnection;
duckPerFile((c) => (db = c));

type Ty = 'num' | 'str' | 'bool';
type ColKind = 'key' | 'count' | 'sum' | 'min' | 'max' | 'acd' | 'pct';

/** A column of the generated view. */
interface VCol {
  name: string;
  kind: ColKind;
  ty: Ty;
  /** The event column it reads (s, n, x, b), or undefined for COUNT(*). */
  src: 's' | 'n' | 'x' | 'b' | undefined;
  /** HLL precision or percentile accuracy. */
  param?: number;
}

type Win = { kind: 'none' } | { kind: 'tumble' } | { kind: 'hop' };

interface ViewCase {
  win: Win;
  cols: VCol[];
}

const SRC_TY: Record<'s' | 'n' | 'x' | 'b', Ty> = { s: 'str', n: 'num', x: 'num', b: 'bool' };
/** Output names: some are metadata column names of events, which in a query over the view mean the view's columns. */
const NAMES = ['type', 'key', 'offset', 'received_at', 'g', 'h', 'c', 'total', 'lo', 'hi', 'readers', 'p50'];

const viewArb: fc.Arbitrary<ViewCase> = fc
  .record({
    win: fc.constantFrom<Win>({ kind: 'none' }, { kind: 'tumble' }, { kind: 'hop' }),
    keys: fc.uniqueArray(fc.constantFrom<'s' | 'n' | 'b'>('s', 'n', 'b'), { maxLength: 2 }),
    aggs: fc.array(
      fc.oneof(
        fc.constant<Omit<VCol, 'name'>>({ kind: 'count', ty: 'num', src: undefined }),
        fc.constantFrom<'n' | 'x'>('n', 'x').map((src): Omit<VCol, 'name'> => ({ kind: 'sum', ty: 'num', src })),
        fc.constantFrom<'n' | 'x' | 's'>('n', 'x', 's').map((src): Omit<VCol, 'name'> => ({ kind: 'min', ty: SRC_TY[src], src })),
        fc.constantFrom<'n' | 'x' | 's'>('n', 'x', 's').map((src): Omit<VCol, 'name'> => ({ kind: 'max', ty: SRC_TY[src], src })),
        fc.tuple(fc.constantFrom<'n' | 's'>('n', 's'), fc.constantFrom(8, 12, 14)).map(([src, param]): Omit<VCol, 'name'> => ({ kind: 'acd', ty: 'num', src, param })),
        fc.constantFrom(0.01, 0.001).map((param): Omit<VCol, 'name'> => ({ kind: 'pct', ty: 'num', src: 'x', param })),
      ),
      { minLength: 1, maxLength: 4 },
    ),
    names: fc.shuffledSubarray(NAMES, { minLength: NAMES.length, maxLength: NAMES.length }),
  })
  .map(({ win, keys, aggs, names }) => {
    const cols: VCol[] = [...keys.map((src): Omit<VCol, 'name'> => ({ kind: 'key', ty: SRC_TY[src], src })), ...aggs].map((c, i) => ({ ...c, name: names[i] }));
    return { win, cols };
  });

function viewSql(v: ViewCase): string {
  const items = v.cols.map((c) => {
    const e =
      c.kind === 'key' ? c.src! : c.kind === 'count' ? 'COUNT(*)' : c.kind === 'acd' ? `APPROX_COUNT_DISTINCT(${c.src}, ${c.param})` : c.kind === 'pct' ? `APPROX_PERCENTILE(${c.src}, 0.5, ${c.param})` : `${c.kind.toUpperCase()}(${c.src})`;
    return `${e} AS ${c.name}`;
  });
  // Keys group by the event column (a GROUP BY on an alias named like metadata would mean the metadata column).
  const groups: string[] = v.cols.filter((c) => c.kind === 'key').map((c) => c.src!);
  if (v.win.kind === 'tumble') groups.push("TUMBLE(received_at, INTERVAL '5' SECOND)");
  if (v.win.kind === 'hop') groups.push("HOP(received_at, INTERVAL '5' SECOND, INTERVAL '10' SECOND)");
  return `CREATE VIEW v WITH (max_lateness = '1h') AS SELECT ${items.join(', ')} FROM ev${groups.length > 0 ? ` GROUP BY ${groups.join(', ')}` : ''}`;
}

/** DuckDB: the view's rows from the events (table vr), with each sketch column's values in "<name>#vals". */
async function viewRowsInDuck(v: ViewCase): Promise<void> {
  const win =
    v.win.kind === 'none'
      ? 'SELECT *, CAST(NULL AS BIGINT) AS window_start, CAST(NULL AS BIGINT) AS window_end FROM ev'
      : v.win.kind === 'tumble'
        ? 'SELECT *, (_ra // 5000) * 5000 AS window_start, (_ra // 5000) * 5000 + 5000 AS window_end FROM ev'
        : 'SELECT *, ws AS window_start, ws + 10000 AS window_end FROM (SELECT *, unnest([(_ra // 5000) * 5000 - 5000, (_ra // 5000) * 5000]) AS ws FROM ev)';
  const num = (src: string) => `CAST(${src} AS DOUBLE)`;
  const items = v.cols.flatMap((c) => {
    const q = `"${c.name}"`;
    switch (c.kind) {
      case 'key':
        return [`${c.ty === 'num' ? num(c.src!) : c.src} AS ${q}`];
      case 'count':
        return [`COUNT(*) AS ${q}`];
      case 'sum':
        return [`SUM(${num(c.src!)}) AS ${q}`];
      case 'min':
      case 'max':
        return [`${c.kind}(${c.ty === 'num' ? num(c.src!) : c.src}) AS ${q}`];
      case 'acd':
        // The text the sketch hashes: numbers by their JS text (integers here), strings as they are.
        return [`COUNT(DISTINCT CAST(${c.src} AS VARCHAR)) AS ${q}`, `list(DISTINCT CAST(${c.src} AS VARCHAR)) FILTER (WHERE ${c.src} IS NOT NULL) AS "${c.name}#vals"`];
      case 'pct':
        return [
          `list_sort(list(${num(c.src!)}) FILTER (WHERE ${c.src} IS NOT NULL))[CAST(floor((COUNT(${c.src}) - 1) * 0.5) AS BIGINT) + 1] AS ${q}`,
          `list(${num(c.src!)}) FILTER (WHERE ${c.src} IS NOT NULL) AS "${c.name}#vals"`,
        ];
    }
  });
  const keys = v.cols.filter((c) => c.kind === 'key').map((c) => `"${c.name}"`);
  const global = keys.length === 0 && v.win.kind === 'none';
  await db.run(
    `CREATE OR REPLACE TABLE vr AS SELECT window_start, window_end, ${items.join(', ')} FROM (${win}) GROUP BY ${[...keys, 'window_start', 'window_end'].join(', ')}${global ? ' HAVING COUNT(*) > 0' : ''}`,
  );
}

// ---------------------------------------------------------------- queries

type Cond =
  | { k: 'cmp'; col: VCol | 'window_start'; op: string; lit: number | string | boolean }
  | { k: 'isnull'; col: VCol; neg: boolean }
  | { k: 'bool'; col: VCol }
  | { k: 'and' | 'or'; l: Cond; r: Cond }
  | { k: 'not'; e: Cond };

type QAgg = { fn: 'SUM' | 'MIN' | 'MAX' | 'COUNT'; col: VCol } | { fn: 'COUNT*' } | { fn: 'ACD'; col: VCol } | { fn: 'PCT'; col: VCol; q: number };

interface QueryCase {
  where: Cond | undefined;
  /** undefined: not aggregating. */
  group: { keys: (VCol | 'window_start')[]; aggs: QAgg[]; having: number | undefined } | undefined;
  /** Non-aggregating: SELECT * or these extra columns (window_start and the keys are always selected). */
  star: boolean;
  extra: VCol[];
  order: { col: string; desc: boolean }[];
  limit: number | undefined;
}

const WINDOW_STARTS = Array.from({ length: 28 }, (_x, i) => T0 - 10_000 + i * 5000);

function condArb(v: ViewCase): fc.Arbitrary<Cond> | undefined {
  // Sketch columns hold estimates: filtering on them is not comparable with exact counts.
  const cols = v.cols.filter((c) => c.kind !== 'acd' && c.kind !== 'pct');
  const atoms: fc.Arbitrary<Cond>[] = [];
  const lit = (ty: Ty) => (ty === 'num' ? fc.oneof(fc.integer({ min: -5, max: 10 }), fc.constantFrom(0.5, 100, 1000, -1000)) : ty === 'str' ? fc.constantFrom('a', 'b', 'é', '', 'ab', 'zz') : fc.boolean());
  for (const c of cols) {
    atoms.push(fc.tuple(fc.constantFrom('=', '<>', '<', '<=', '>', '>='), lit(c.ty)).map(([op, l]): Cond => ({ k: 'cmp', col: c, op, lit: l })));
    atoms.push(fc.boolean().map((neg): Cond => ({ k: 'isnull', col: c, neg })));
    if (c.ty === 'bool') atoms.push(fc.constant<Cond>({ k: 'bool', col: c }));
  }
  if (v.win.kind !== 'none') atoms.push(fc.tuple(fc.constantFrom('=', '>=', '<', '<>'), fc.constantFrom(...WINDOW_STARTS)).map(([op, l]): Cond => ({ k: 'cmp', col: 'window_start', op, lit: l })));
  if (atoms.length === 0) return undefined;
  const atom = fc.oneof(...atoms);
  return fc.oneof(
    { arbitrary: atom, weight: 3 },
    fc.tuple(fc.constantFrom<'and' | 'or'>('and', 'or'), atom, atom).map(([k, l, r]): Cond => ({ k, l, r })),
    atom.map((e): Cond => ({ k: 'not', e })),
  );
}

function queryArb(v: ViewCase): fc.Arbitrary<QueryCase> {
  const keys = v.cols.filter((c) => c.kind === 'key');
  const exact = v.cols.filter((c) => c.kind !== 'acd' && c.kind !== 'pct');
  const agg: fc.Arbitrary<QAgg>[] = [fc.constant<QAgg>({ fn: 'COUNT*' })];
  for (const c of exact) {
    if (c.ty === 'num') agg.push(fc.constant<QAgg>({ fn: 'SUM', col: c }));
    if (c.ty !== 'bool') agg.push(fc.constantFrom('MIN' as const, 'MAX' as const).map((fn): QAgg => ({ fn, col: c })));
    agg.push(fc.constant<QAgg>({ fn: 'COUNT', col: c }));
  }
  for (const c of v.cols) {
    if (c.kind === 'acd') agg.push(fc.constant<QAgg>({ fn: 'ACD', col: c }));
    if (c.kind === 'pct') agg.push(fc.constantFrom(0, 0.5, 0.9, 1).map((q): QAgg => ({ fn: 'PCT', col: c, q })));
  }
  const where = condArb(v);
  const groupKeys: (VCol | 'window_start')[] = [...keys, ...(v.win.kind === 'none' ? [] : ['window_start' as const])];
  return fc
    .record({
      where: where === undefined ? fc.constant(undefined) : fc.option(where, { nil: undefined, freq: 3 }),
      aggregating: fc.boolean(),
      gkeys: fc.subarray(groupKeys),
      aggs: fc.array(fc.oneof(...agg), { minLength: 1, maxLength: 3 }),
      having: fc.option(fc.constantFrom(0, 1, 2), { nil: undefined, freq: 3 }),
      star: fc.boolean(),
      extra: fc.subarray(v.cols.filter((c) => c.kind !== 'key')),
      orderPick: fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 2 }),
      limit: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined, freq: 2 }),
    })
    .map(({ where: w, aggregating, gkeys, aggs, having, star, extra, orderPick, limit }): QueryCase => {
      const group = aggregating ? { keys: gkeys, aggs, having } : undefined;
      // Orderable columns: keys and exact values (sketch estimates would order differently from the exact answer).
      const orderable = group !== undefined
        ? [...gkeys.map((k) => (k === 'window_start' ? k : k.name)), ...aggs.flatMap((a, i) => (a.fn === 'ACD' || a.fn === 'PCT' ? [] : [`q${i}`]))]
        : ['window_start', ...(star ? exact : [...keys, ...extra.filter((c) => c.kind !== 'acd' && c.kind !== 'pct')]).filter((c) => c.kind !== 'acd' && c.kind !== 'pct').map((c) => c.name)];
      const order = orderable.length === 0 ? [] : [...new Map(orderPick.map(([i, desc]) => [orderable[i % orderable.length], { col: orderable[i % orderable.length], desc }])).values()];
      return { where: w, group, star, extra, order, limit: order.length > 0 ? limit : undefined };
    });
}

const quoteStr = (s: string) => `'${s.replace(/'/g, "''")}'`;

function condSql(c: Cond, d: 'hl' | 'db'): string {
  const col = (x: VCol | 'window_start') => (x === 'window_start' ? 'window_start' : d === 'hl' ? x.name : `"${x.name}"`);
  const val = (l: number | string | boolean) => (typeof l === 'string' ? quoteStr(l) : typeof l === 'boolean' ? (l ? 'TRUE' : 'FALSE') : d === 'db' ? `CAST(${l} AS DOUBLE)` : l < 0 ? `(${l})` : String(l));
  switch (c.k) {
    case 'cmp': {
      const num = c.col === 'window_start' || c.col.ty === 'num';
      return `(${d === 'db' && num ? `CAST(${col(c.col)} AS DOUBLE)` : col(c.col)} ${c.op} ${val(c.lit)})`;
    }
    case 'isnull':
      return `(${col(c.col)} IS ${c.neg ? 'NOT ' : ''}NULL)`;
    case 'bool':
      return col(c.col);
    case 'and':
    case 'or':
      return `(${condSql(c.l, d)} ${c.k.toUpperCase()} ${condSql(c.r, d)})`;
    case 'not':
      return `(NOT ${condSql(c.e, d)})`;
  }
}

function aggSql(a: QAgg, d: 'hl' | 'db'): string {
  if (a.fn === 'COUNT*') return 'COUNT(*)';
  const name = d === 'hl' ? a.col.name : `"${a.col.name}"`;
  const num = d === 'db' && a.col.ty === 'num' ? `CAST(${name} AS DOUBLE)` : name;
  switch (a.fn) {
    case 'SUM':
    case 'MIN':
    case 'MAX':
      return `${a.fn}(${num})`;
    case 'COUNT':
      return `COUNT(${name})`;
    case 'ACD':
      return d === 'hl' ? `APPROX_COUNT_DISTINCT(${name})` : `COALESCE(len(list_distinct(flatten(list("${a.col.name}#vals")))), 0)`;
    case 'PCT': {
      if (d === 'hl') return `APPROX_PERCENTILE(${name}, ${a.q})`;
      const all = `list_sort(flatten(list("${a.col.name}#vals")))`;
      return `${all}[CAST(floor((len(${all}) - 1) * ${a.q}) AS BIGINT) + 1]`;
    }
  }
}

/** Both texts of the query, and the output columns with how to compare them. */
type SketchAgg = Extract<QAgg, { fn: 'ACD' | 'PCT' }>;

function renderQuery(v: ViewCase, q: QueryCase): { hl: string; db: string; id: string[]; approx: Map<string, SketchAgg> } {
  const approx = new Map<string, SketchAgg>();
  let hlItems: string[];
  let dbItems: string[];
  let id: string[];
  let tail = { hl: '', db: '' };
  if (q.group !== undefined) {
    const g = q.group;
    const keyName = (k: VCol | 'window_start') => (k === 'window_start' ? k : k.name);
    hlItems = [...g.keys.map(keyName), ...g.aggs.map((a, i) => `${aggSql(a, 'hl')} AS q${i}`)];
    dbItems = [...g.keys.map((k) => (k === 'window_start' ? k : `"${k.name}"`)), ...g.aggs.map((a, i) => `${aggSql(a, 'db')} AS q${i}`)];
    g.aggs.forEach((a, i) => {
      if (a.fn === 'ACD' || a.fn === 'PCT') approx.set(`q${i}`, a);
      // The values behind a merged percentile: past DDSketch's bucket budget its low ranks lose accuracy (documented).
      if (a.fn === 'PCT') dbItems.push(`flatten(list("${a.col.name}#vals")) AS "q${i}#vals"`);
    });
    id = g.keys.map(keyName);
    if (g.keys.length > 0) {
      tail.hl += ` GROUP BY ${g.keys.map(keyName).join(', ')}`;
      tail.db += ` GROUP BY ${g.keys.map((k) => (k === 'window_start' ? k : `"${k.name}"`)).join(', ')}`;
    }
    if (g.having !== undefined) {
      tail.hl += ` HAVING COUNT(*) > ${g.having}`;
      tail.db += ` HAVING COUNT(*) > ${g.having}`;
    }
  } else {
    const keys = v.cols.filter((c) => c.kind === 'key');
    const cols = q.star ? v.cols : [...keys, ...q.extra];
    hlItems = q.star ? ['*'] : ['window_start', ...cols.map((c) => c.name)];
    dbItems = ['window_start', ...(q.star ? ['window_end'] : []), ...cols.map((c) => `"${c.name}"`), ...cols.filter((c) => c.kind === 'pct').map((c) => `"${c.name}#vals"`)];
    id = ['window_start', ...keys.map((c) => c.name)];
    for (const c of cols) if (c.kind === 'acd' || c.kind === 'pct') approx.set(c.name, c.kind === 'acd' ? { fn: 'ACD', col: c } : { fn: 'PCT', col: c, q: 0.5 });
  }
  const where = q.where === undefined ? { hl: '', db: '' } : { hl: ` WHERE ${condSql(q.where, 'hl')}`, db: ` WHERE ${condSql(q.where, 'db')}` };
  const order = q.order.length === 0 ? '' : ` ORDER BY ${q.order.map((o) => `${o.col}${o.desc ? ' DESC' : ''}`).join(', ')}`;
  const hl = `SELECT ${hlItems.join(', ')} FROM v${where.hl}${tail.hl}${order}${q.limit === undefined ? '' : ` LIMIT ${q.limit}`}`;
  // DuckDB: the whole answer (ORDER BY and LIMIT are checked on halflife's rows against it).
  const db = `SELECT ${dbItems.join(', ')} FROM vr${where.db}${tail.db}`;
  return { hl, db, id, approx };
}

/** Whether halflife must refuse the query (docs/sql.md: adding up rows of overlapping windows). */
function mustRefuse(v: ViewCase, q: QueryCase): boolean {
  if (v.win.kind !== 'hop' || q.group === undefined) return false;
  if (q.group.keys.includes('window_start')) return false;
  const pinned = (c: Cond | undefined): boolean => c !== undefined && ((c.k === 'cmp' && c.col === 'window_start' && c.op === '=') || (c.k === 'and' && (pinned(c.l) || pinned(c.r))));
  if (pinned(q.where)) return false;
  return q.group.aggs.some((a) => a.fn === 'SUM' || a.fn === 'PCT');
}

// ---------------------------------------------------------------- comparison

/** Code point order of strings (UTF-8 byte order), independent of the engine's implementation. */
function cmpText(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * SQL order of two values of one column: NULL sorts as the largest value (last ascending, first descending), as
 * PostgreSQL and halflife do.
 */
function cmpValue(a: unknown, b: unknown): number {
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === 'string' && typeof b === 'string') return cmpText(a, b);
  if (typeof a === 'boolean' || typeof b === 'boolean') return Number(a) - Number(b);
  return Number(a) - Number(b);
}

const same = (a: unknown, b: unknown): boolean => {
  if (a === null || a === undefined || b === null || b === undefined) return (a ?? null) === (b ?? null);
  if (typeof a === 'number' || typeof b === 'number') return Math.abs(Number(a) - Number(b)) <= 1e-9 * Math.max(1, Math.abs(Number(a)), Math.abs(Number(b)));
  return a === b;
};

const keyText = (v: unknown) => (v === null || v === undefined ? 'NULL' : typeof v === 'number' || typeof v === 'bigint' ? String(Number(v) === 0 ? 0 : Number(v)) : JSON.stringify(v));

function compareAnswers(v: ViewCase, q: QueryCase, r: ReturnType<typeof renderQuery>, hl: Record<string, unknown>[], full: Record<string, unknown>[], label: string): string[] {
  const problems: string[] = [];
  const rowId = (row: Record<string, unknown>) => JSON.stringify(r.id.map((c) => keyText(row[c])));
  const byId = new Map<string, Record<string, unknown>>();
  for (const d of full) byId.set(rowId(d), d);
  if (byId.size !== full.length) problems.push(`${label}: oracle rows are not unique by ${r.id.join(', ')}`);
  const seen = new Set<string>();
  for (const h of hl) {
    const id = rowId(h);
    if (seen.has(id)) problems.push(`${label}: row ${id} twice`);
    seen.add(id);
    const d = byId.get(id);
    if (d === undefined) {
      problems.push(`${label}: row ${id} ${JSON.stringify(h)} is not in DuckDB's answer`);
      continue;
    }
    for (const [col, want] of Object.entries(d)) {
      if (col.includes('#') || col === 'window_end' && !(col in h)) continue;
      const got = h[col];
      const a = r.approx.get(col);
      if (a !== undefined && want !== null && got !== null && got !== undefined) {
        const n = Number(want);
        if (a.fn === 'PCT' && mayCollapse(a.col.param!, d[`${col}#vals`] as number[])) continue;
        const bound = a.fn === 'ACD' ? 6 * hllStdError(a.col.param!) * n + 1 : a.col.param! * Math.abs(n) + 1e-9;
        if (!(Math.abs(Number(got) - n) <= bound)) problems.push(`${label}: row ${id} column ${col} = ${String(got)}, exact ${n}, outside ±${bound}`);
      } else if (!same(got, want)) problems.push(`${label}: row ${id} column ${col} = ${JSON.stringify(got)}, DuckDB ${JSON.stringify(want)}`);
    }
  }
  // halflife's own rows are checked for order exactly. Against DuckDB's rows a sort key that differs only within a
  // float sum's rounding leaves the order undecided (it neither sorts before nor after, and later keys do not decide:
  // a tolerance is not transitive, so sorting DuckDB's rows with one is not an oracle).
  const inOrder = (x: Record<string, unknown>, y: Record<string, unknown>) => {
    for (const o of q.order) {
      const c = cmpValue(x[o.col], y[o.col]);
      if (c !== 0) return o.desc ? -c : c;
    }
    return 0;
  };
  const definitelyBefore = (x: Record<string, unknown>, y: Record<string, unknown>) => {
    for (const o of q.order) {
      const c = cmpValue(x[o.col], y[o.col]);
      if (c === 0) continue;
      if (same(x[o.col], y[o.col])) return false;
      return (o.desc ? -c : c) < 0;
    }
    return false;
  };
  for (let i = 1; i < hl.length; i++) if (inOrder(hl[i - 1], hl[i]) > 0) problems.push(`${label}: rows ${i - 1} and ${i} are out of ORDER BY order`);
  const expectedCount = q.limit === undefined ? full.length : Math.min(q.limit, full.length);
  if (hl.length !== expectedCount) problems.push(`${label}: ${hl.length} rows, expected ${expectedCount}${q.limit === undefined ? '' : ` (LIMIT ${q.limit} of ${full.length})`}`);
  else if (q.limit !== undefined) {
    // LIMIT keeps the first rows: no row it left out may sort before one it kept.
    const kept = new Set(hl.map(rowId));
    for (const h of hl) {
      const d = byId.get(rowId(h));
      if (d === undefined) continue;
      const before = full.find((o) => !kept.has(rowId(o)) && definitelyBefore(o, d));
      if (before !== undefined) problems.push(`${label}: row ${rowId(h)} was kept, but DuckDB's row ${JSON.stringify(before)} sorts before it and was left out`);
    }
  }
  return problems;
}

/** Whether the values span more than a DDSketch of this accuracy keeps buckets for (docs/sql.md; not compared). */
function mayCollapse(accuracy: number, vals: readonly number[]): boolean {
  const pos = vals.filter((x) => x > 0);
  const neg = vals.filter((x) => x < 0).map((x) => -x);
  const span = (xs: number[]) => (xs.length === 0 ? {} : { lo: Math.min(...xs), hi: Math.max(...xs) });
  const p = span(pos);
  const n = span(neg);
  return ddsketchMayCollapse(accuracy, { 'v#plo': p.lo ?? null, 'v#phi': p.hi ?? null, 'v#nlo': n.lo ?? null, 'v#nhi': n.hi ?? null }, 'v');
}

const show = (x: unknown) => JSON.stringify(x, (_k, val: unknown) => (typeof val === 'bigint' ? Number(val) : val));

async function check(v: ViewCase, queries: QueryCase[], events: GenEvent[], partitions: number): Promise<string[]> {
  const sql = viewSql(v);
  await loadDuck(db, events);
  await viewRowsInDuck(v);
  const problems: string[] = [];
  const placed = events.map((e, i) => ({ ...e, partition: i % partitions }));
  const harnesses = [new Harness({ partitions }), ...(partitions > 1 ? [new Harness({ partitions, split: [[0], Array.from({ length: partitions - 1 }, (_x, i) => i + 1)] })] : [])];
  try {
    for (const h of harnesses) {
      await h.start(sql);
      await h.append(placed);
      await h.drain();
    }
    for (const q of queries) {
      const r = renderQuery(v, q);
      const refuse = mustRefuse(v, q);
      const full = refuse ? [] : await runDuck(db, r.db);
      for (const [i, h] of harnesses.entries()) {
        const label = `${i === 0 ? 'one engine' : 'two engines'}: ${r.hl}`;
        let rows: Record<string, unknown>[];
        try {
          rows = (await h.query(r.hl)).rows as Record<string, unknown>[];
        } catch (err) {
          const code = err instanceof HalflifeError ? err.code : undefined;
          if (!(refuse && code === 'SQL_PLAN')) problems.push(`${label}: ${refuse ? 'refused with' : 'unexpected error'} ${code ?? ''} ${(err as Error).message.split('\n')[0]}`);
          continue;
        }
        if (refuse) {
          problems.push(`${label}: adds up rows of overlapping HOP windows, must be refused with SQL_PLAN`);
          continue;
        }
        const found = compareAnswers(v, q, r, rows, full, label);
        if (found.length > 0) problems.push(...found, `  DuckDB: ${r.db}`, `  halflife rows: ${show(rows)}`, `  DuckDB rows: ${show(full)}`);
      }
      if (problems.length > 0) break;
    }
  } finally {
    for (const h of harnesses) await h.close();
  }
  if (problems.length === 0) return [];
  return [...problems.slice(0, 14), `view: ${sql}`, `view rows (DuckDB): ${show(await runDuck(db, 'SELECT * FROM vr'))}`, `events: ${show(events)}`];
}

const caseArb = viewArb.chain((v) =>
  fc.tuple(fc.constant(v), fc.array(queryArb(v), { minLength: 1, maxLength: 6 }), fc.array(eventArb, { maxLength: 40, size: 'max' }), fc.integer({ min: 1, max: 3 })),
);

test(`property: queries over views agree with DuckDB over the view's rows; overlapping HOP sums are refused (DIFF_SEED=${SEED}, DIFF_QUERY_RUNS=${RUNS})`, async () => {
  let last: string[] = [];
  await fc
    .assert(
      fc.asyncProperty(caseArb, async ([v, queries, events, partitions]) => {
        const problems = await check(v, queries, events, partitions);
        if (problems.length > 0) {
          last = problems;
          throw new Error(problems.join('\n'));
        }
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 120_000 },
    )
    .catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n\nShrunk case:\n${last.join('\n')}`);
    });
});

/**
 * Fixed order_by_nulls: ORDER BY in a query over a view sorted NULL as the smallest value (first ascending). It now
 * sorts it as PostgreSQL does, as the largest: last ascending, first descending.
 */
test('fixed order_by_nulls: ORDER BY puts NULL last ascending and first descending, as PostgreSQL', async () => {
  const h = new Harness({ partitions: 1 });
  try {
    await h.start("CREATE VIEW v AS SELECT s AS g, COUNT(*) AS c FROM ev GROUP BY s");
    await h.append([
      { received_at: T0, ts: undefined, key: undefined, data: { s: 'a' } },
      { received_at: T0, ts: undefined, key: undefined, data: {} },
    ]);
    await h.drain();
    const asc = (await h.query('SELECT g FROM v ORDER BY g')).rows.map((r) => r.g);
    const desc = (await h.query('SELECT g FROM v ORDER BY g DESC')).rows.map((r) => r.g);
    await loadDuck(db, []);
    const pg = (await runDuck(db, "SELECT g FROM (VALUES ('a'), (NULL)) t(g) ORDER BY g ASC NULLS LAST")).map((r) => r.g);
    assert.deepEqual(asc, pg);
    assert.deepEqual(desc, (await runDuck(db, "SELECT g FROM (VALUES ('a'), (NULL)) t(g) ORDER BY g DESC NULLS FIRST")).map((r) => r.g));
  } finally {
    await h.close();
  }
});
