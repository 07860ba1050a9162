/**
 * Random events and random views for the differential test (test/differential.test.ts), each view rendered twice:
 * in halflife's dialect (a CREATE VIEW the engine runs) and as a DuckDB query over a table of the same events (the
 * oracle). The expression grammar is the SQL fuzzer's (src/sql/parser.prop.test.ts: arithmetic, comparisons,
 * AND/OR/NOT, IS NULL, BETWEEN, IN, CASE, COALESCE, LOWER, LENGTH, CAST, LIKE) plus UPPER, SUBSTRING, ||, ABS,
 * FLOOR, CEIL and ROUND, but typed: DuckDB is statically typed and refuses '12' + 1, so each expression has one type
 * (number, text, boolean; `j` holds any JSON and is only counted, grouped and tested for NULL).
 *
 * DuckDB side: halflife's numbers are JS doubles, so every number is CAST to DOUBLE before an operator (BIGINT
 * arithmetic would overflow or divide as integers where halflife does not).
 */
import fc from 'fast-check';

export type Ty = 'num' | 'str' | 'bool' | 'json';

export type E =
  | { k: 'col'; ty: Ty; hl: string; db: string }
  | { k: 'lit'; ty: Ty; v: number | string | boolean | null }
  | { k: 'arith'; op: '+' | '-' | '*' | '/' | '%'; l: E; r: E }
  | { k: 'neg'; e: E }
  | { k: 'cmp'; op: '=' | '<>' | '<' | '<=' | '>' | '>='; l: E; r: E }
  | { k: 'logic'; op: 'AND' | 'OR'; l: E; r: E }
  | { k: 'not'; e: E }
  | { k: 'isnull'; e: E; neg: boolean }
  | { k: 'between'; e: E; lo: E; hi: E; neg: boolean }
  | { k: 'in'; e: E; list: E[]; neg: boolean }
  | { k: 'like'; e: E; pat: string; neg: boolean }
  | { k: 'case'; ty: Ty; c: E; t: E; f: E }
  | { k: 'coalesce'; ty: Ty; a: E; b: E }
  | { k: 'fn'; name: 'LOWER' | 'UPPER' | 'LENGTH' | 'ABS' | 'FLOOR' | 'CEIL' | 'ROUND'; e: E }
  | { k: 'substr'; e: E; start: number; len: number | undefined }
  | { k: 'concat'; l: E; r: E }
  | { k: 'castint'; e: E };

export function typeOf(e: E): Ty {
  switch (e.k) {
    case 'col':
    case 'lit':
    case 'case':
    case 'coalesce':
      return e.ty;
    case 'arith':
    case 'neg':
    case 'castint':
      return 'num';
    case 'fn':
      return e.name === 'LOWER' || e.name === 'UPPER' ? 'str' : 'num';
    case 'substr':
    case 'concat':
      return 'str';
    default:
      return 'bool';
  }
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

function lit(v: E & { k: 'lit' }, d: 'hl' | 'db'): string {
  if (v.v === null) return 'NULL';
  if (typeof v.v === 'string') return quote(v.v);
  if (typeof v.v === 'boolean') return v.v ? 'TRUE' : 'FALSE';
  const text = String(v.v);
  if (d === 'db') return `CAST(${text} AS DOUBLE)`;
  return v.v < 0 ? `(${text})` : text;
}

/** The expression as text of one dialect. */
export function render(e: E, d: 'hl' | 'db'): string {
  const r = (x: E) => render(x, d);
  // DuckDB: numbers as DOUBLE wherever an operator meets them (BIGINT columns, LENGTH's BIGINT, literals).
  const n = (x: E) => (d === 'db' && typeOf(x) === 'num' ? `CAST(${r(x)} AS DOUBLE)` : r(x));
  switch (e.k) {
    case 'col':
      return d === 'hl' ? e.hl : e.db;
    case 'lit':
      return lit(e, d);
    case 'arith':
      return `(${n(e.l)} ${e.op} ${n(e.r)})`;
    case 'neg':
      return `(-${n(e.e)})`;
    case 'cmp':
      return `(${n(e.l)} ${e.op} ${n(e.r)})`;
    case 'logic':
      return `(${r(e.l)} ${e.op} ${r(e.r)})`;
    case 'not':
      return `(NOT ${r(e.e)})`;
    case 'isnull':
      return `(${r(e.e)} IS ${e.neg ? 'NOT ' : ''}NULL)`;
    case 'between':
      return `(${n(e.e)} ${e.neg ? 'NOT ' : ''}BETWEEN ${n(e.lo)} AND ${n(e.hi)})`;
    case 'in':
      return `(${n(e.e)} ${e.neg ? 'NOT ' : ''}IN (${e.list.map(n).join(', ')}))`;
    case 'like':
      // DuckDB turns a LIKE whose literal prefix ends in U+FFFF or U+10FFFF into a range on the column, and fails
      // building its end ("Invalid unicode … in value construction"); like_escape is the same match without it.
      if (d === 'db') return `(${e.neg ? 'NOT ' : ''}like_escape(${r(e.e)}, ${quote(e.pat)}, '\\'))`;
      return `(${r(e.e)} ${e.neg ? 'NOT ' : ''}LIKE ${quote(e.pat)})`;
    case 'case':
      return `CASE WHEN ${r(e.c)} THEN ${n(e.t)} ELSE ${n(e.f)} END`;
    case 'coalesce':
      return `COALESCE(${n(e.a)}, ${n(e.b)})`;
    case 'fn':
      return `${e.name}(${n(e.e)})`;
    case 'substr':
      return `SUBSTRING(${r(e.e)}, ${e.start}${e.len === undefined ? '' : `, ${e.len}`})`;
    case 'concat':
      return `(${r(e.l)} || ${r(e.r)})`;
    case 'castint':
      // halflife: rounded half away from zero, NULL beyond 64 bits. DuckDB rounds a DOUBLE half to even when it
      // casts (CAST(2.5::DOUBLE AS BIGINT) = 2; only DECIMAL rounds half away): a difference listed in the test's
      // table, so the oracle states halflife's rule with DuckDB's ROUND (half away) and TRY_CAST (NULL if too big).
      return d === 'hl' ? `CAST(${r(e.e)} AS BIGINT)` : `TRY_CAST(ROUND(${n(e.e)}) AS BIGINT)`;
  }
}

/**
 * Characters of generated text. Left out on purpose: characters whose case mapping is not one-to-one or depends on
 * context (ß, İ, Σ at a word's end, ŉ, ǰ: the deliberate LOWER/UPPER difference, checked on its own), backslash
 * (neither dialect escapes in LIKE, but it invites confusion), NUL in SQL literals (DuckDB's parser stops there;
 * in event data it is kept), and lone surrogates (not UTF-8).
 */
const UNITS = ['a', 'b', 'B', 'z', 'Z', ' ', '%', '_', "'", '"', '1', 'é', 'É', 'Ä', 'ω', 'Ω', '日', '😀', '🚀', '\u{10FFFF}', '\uFFFF', '\uE000'];
const unit = fc.constantFrom(...UNITS);
const text = (min: number, max: number) => fc.array(unit, { minLength: min, maxLength: max }).map((a) => a.join(''));
/** Short texts collide (groups, DISTINCT, joins); long ones pass 32 bytes (msgpack str8) and 255 (str16). */
export const strValue: fc.Arbitrary<string> = fc.oneof(
  // U+FFFF / U+E000 against astral characters: code point order differs from JS's UTF-16 order there.
  { arbitrary: fc.constantFrom('a', 'b', 'é', '😀', 'ab', 'Ab', '', ' ', 'ω', '\uFFFF', '\uE000b', '\u{10FFFF}'), weight: 4 },
  { arbitrary: text(0, 6), weight: 3 },
  { arbitrary: text(12, 40), weight: 2 },
  { arbitrary: text(250, 300), weight: 1 },
);
const dataStr = fc.oneof({ arbitrary: strValue, weight: 12 }, { arbitrary: fc.constantFrom('a\u0000b', '\u0000'), weight: 1 });

/**
 * Doubles the two sides compute alike: no subnormals or huge magnitudes (1e308 * 10 is Infinity in JS and NULL in
 * DuckDB), -0 folded to 0 as JSON does.
 */
export const dblValue: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -80, max: 80 }).map((i) => i / 8),
  fc.double({ min: -1e4, max: 1e4, noNaN: true }).filter((x) => x === 0 || Math.abs(x) >= 1e-3),
  fc.constantFrom(0, 0.1, 0.2, 0.3, 2.5, -2.5, 1e6),
).map((x) => (Object.is(x, -0) ? 0 : x));
export const intValue: fc.Arbitrary<number> = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.constantFrom(2 ** 31 - 1, -(2 ** 31), 65535, 65536));

/** One event's fields: undefined = missing, null = JSON null. */
export interface GenEvent {
  received_at: number;
  ts: number | undefined;
  key: string | undefined;
  data: { s?: string | null; n?: number | null; x?: number | null; b?: boolean | null; j?: unknown };
}

export const T0 = 1_700_000_000_000;
const maybe = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: a, weight: 6 }, { arbitrary: fc.constant(null), weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 });
const anyJson = fc.oneof(
  fc.constantFrom(1, '1', 2.5, 'a', true, false, [], {}, [1, 'a'], { a: 1 }, { a: [null] }, '😀'),
  fc.jsonValue({ maxDepth: 2 }),
).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

/** Times within two minutes of T0 (most within 10 s), in any order (events arrive out of order), some with an event time. */
export const eventArb: fc.Arbitrary<GenEvent> = fc
  .record({
    // Mostly within 10 s, so windows hold enough events for sketches to be tested on more than a handful.
    dt: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 10_000 }), weight: 4 }, fc.integer({ min: 0, max: 120_000 }), fc.constantFrom(0, 999, 1000, 1001, 4999, 5000, 60_000)),
    tsDelta: fc.option(fc.integer({ min: -30_000, max: 30_000 }), { nil: undefined }),
    key: fc.option(fc.constantFrom('k1', 'k2', 'k3', 'é', '😀', 'long key '.repeat(5)), { nil: undefined }),
    s: maybe(dataStr),
    n: maybe(intValue),
    x: maybe(dblValue),
    b: maybe(fc.boolean()),
    j: maybe(anyJson),
  })
  .map(({ dt, tsDelta, key, s, n, x, b, j }) => {
    const data: GenEvent['data'] = {};
    if (s !== undefined) data.s = s;
    if (n !== undefined) data.n = n;
    if (x !== undefined) data.x = x;
    if (b !== undefined) data.b = b;
    if (j !== undefined) data.j = j;
    const received_at = T0 + dt;
    return { received_at, ts: tsDelta === undefined ? undefined : received_at + tsDelta, key, data };
  });

/** The stream's JSON Schema as the engine's catalog sees it. */
export const EV_SCHEMA = {
  type: 'object',
  properties: { s: { type: ['string', 'null'] }, n: { type: ['integer', 'null'] }, x: { type: ['number', 'null'] }, b: { type: ['boolean', 'null'] }, j: {} },
};

/** The static table joined with: `id` is its key; `name` repeats (a join matches several rows). */
export const TABLE_ROWS = [
  { id: 1, name: 'a', tier: 'gold' },
  { id: 2, name: 'a', tier: 'silver' },
  { id: 3, name: 'é', tier: null },
  { id: -5, name: '😀', tier: 'gold' },
  { id: 65536, name: 'ab', tier: 'bronze' },
  { id: 0, name: '', tier: 'silver' },
];

export interface JoinGen {
  kind: 'JOIN' | 'LEFT JOIN';
  /** Event-side expression and the table column it must equal. */
  probe: E;
  column: 'id' | 'name';
}

const COLS: Record<Exclude<Ty, 'json'>, E[]> = {
  num: [
    { k: 'col', ty: 'num', hl: 'n', db: 'n' },
    { k: 'col', ty: 'num', hl: 'x', db: 'x' },
    { k: 'col', ty: 'num', hl: '(received_at - 1700000000000)', db: '(_ra - 1700000000000)' },
  ],
  str: [
    { k: 'col', ty: 'str', hl: 's', db: 's' },
    { k: 'col', ty: 'str', hl: 'key', db: '_key' },
  ],
  bool: [{ k: 'col', ty: 'bool', hl: 'b', db: 'b' }],
};
const TABLE_COLS: Record<'num' | 'str', E[]> = {
  num: [{ k: 'col', ty: 'num', hl: 't.id', db: '_t_id' }],
  str: [
    { k: 'col', ty: 'str', hl: 't.name', db: '_t_name' },
    { k: 'col', ty: 'str', hl: 't.tier', db: '_t_tier' },
  ],
};
export const J_COL: E = { k: 'col', ty: 'json', hl: 'j', db: 'j' };

const numLit = fc.oneof(fc.integer({ min: -3, max: 10 }), fc.constantFrom(0.5, 2.5, -1.5, 100, 1000)).map((v): E => ({ k: 'lit', ty: 'num', v }));
const strLit = fc.oneof(strValue.filter((s) => s.length < 12), fc.constantFrom('a', 'gold')).map((v): E => ({ k: 'lit', ty: 'str', v }));
const boolLit = fc.boolean().map((v): E => ({ k: 'lit', ty: 'bool', v }));
const nullOf = (ty: Ty): E => ({ k: 'lit', ty, v: null });
const likePattern = fc.array(fc.oneof(unit, fc.constantFrom('%', '_', '%')), { minLength: 0, maxLength: 5 }).map((a) => a.join(''));

/** Typed expressions over the event's columns (and the joined table's, `withTable`). */
export function exprs(withTable: boolean) {
  const cols = (ty: 'num' | 'str' | 'bool') => (withTable && ty !== 'bool' ? [...COLS[ty], ...TABLE_COLS[ty]] : COLS[ty]);
  // Bare columns weigh most: deep expressions over several nullable columns are NULL more often than not.
  return fc.letrec<{ num: E; str: E; bool: E }>((tie) => ({
    num: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      { arbitrary: fc.constantFrom(...cols('num')), weight: 6 },
      numLit,
      fc.tuple(fc.constantFrom('+', '-', '*', '/', '%' as const), tie('num'), tie('num')).map(([op, l, r]): E => ({ k: 'arith', op, l, r })),
      tie('num').map((e): E => ({ k: 'neg', e })),
      fc.tuple(fc.constantFrom('ABS', 'FLOOR', 'CEIL', 'ROUND' as const), tie('num')).map(([name, e]): E => ({ k: 'fn', name, e })),
      tie('str').map((e): E => ({ k: 'fn', name: 'LENGTH', e })),
      fc.tuple(tie('bool'), tie('num'), tie('num')).map(([c, t, f]): E => ({ k: 'case', ty: 'num', c, t, f })),
      fc.tuple(tie('num'), tie('num')).map(([a, b]): E => ({ k: 'coalesce', ty: 'num', a, b })),
      tie('num').map((e): E => ({ k: 'castint', e })),
    ),
    str: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      { arbitrary: fc.constantFrom(...cols('str')), weight: 6 },
      strLit,
      fc.tuple(fc.constantFrom('LOWER', 'UPPER' as const), tie('str')).map(([name, e]): E => ({ k: 'fn', name, e })),
      fc.tuple(tie('str'), fc.integer({ min: 1, max: 4 }), fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined })).map(([e, start, len]): E => ({ k: 'substr', e, start, len })),
      fc.tuple(tie('str'), tie('str')).map(([l, r]): E => ({ k: 'concat', l, r })),
      fc.tuple(tie('bool'), tie('str'), tie('str')).map(([c, t, f]): E => ({ k: 'case', ty: 'str', c, t, f })),
      fc.tuple(tie('str'), tie('str')).map(([a, b]): E => ({ k: 'coalesce', ty: 'str', a, b })),
    ),
    bool: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      { arbitrary: fc.constantFrom(...cols('bool')), weight: 6 },
      boolLit,
      fc.tuple(fc.constantFrom('=', '<>', '<', '<=', '>', '>=' as const), fc.constantFrom('num', 'str', 'bool' as const)).chain(([op, ty]) =>
        fc.tuple(tie(ty), tie(ty)).map(([l, r]): E => ({ k: 'cmp', op, l, r })),
      ),
      fc.tuple(fc.constantFrom('AND', 'OR' as const), tie('bool'), tie('bool')).map(([op, l, r]): E => ({ k: 'logic', op, l, r })),
      tie('bool').map((e): E => ({ k: 'not', e })),
      fc.tuple(fc.oneof(tie('num'), tie('str'), tie('bool'), fc.constant(J_COL)), fc.boolean()).map(([e, neg]): E => ({ k: 'isnull', e, neg })),
      fc.tuple(fc.constantFrom('num', 'str' as const), fc.boolean()).chain(([ty, neg]) =>
        fc.tuple(tie(ty), tie(ty), tie(ty)).map(([e, lo, hi]): E => ({ k: 'between', e, lo, hi, neg })),
      ),
      fc.tuple(fc.constantFrom('num', 'str' as const), fc.boolean(), fc.boolean()).chain(([ty, neg, withNull]) =>
        fc.tuple(tie(ty), fc.array(ty === 'num' ? numLit : strLit, { minLength: 1, maxLength: 3 })).map(([e, list]): E => ({ k: 'in', e, list: withNull ? [...list, nullOf(ty)] : list, neg })),
      ),
      fc.tuple(tie('str'), likePattern, fc.boolean()).map(([e, pat, neg]): E => ({ k: 'like', e, pat, neg })),
    ),
  }));
}

export type AggKind = 'count_star' | 'count' | 'count_distinct' | 'sum' | 'avg' | 'min' | 'max' | 'range' | 'approx_count_distinct' | 'approx_percentile' | 'top_k';
export interface AggGen {
  kind: AggKind;
  arg: E | undefined;
  /** HLL precision, quantile, or k. */
  param?: number;
  /** APPROX_PERCENTILE's relative accuracy, when given. */
  accuracy?: number;
}

export type WindowGen =
  | { kind: 'none' }
  | { kind: 'tumble'; time: 'received_at' | 'event_time'; sizeS: number }
  | { kind: 'hop'; time: 'received_at' | 'event_time'; slideS: number; sizeS: number }
  | { kind: 'session'; time: 'received_at' | 'event_time'; gapS: number };

export interface ViewGen {
  join: JoinGen | undefined;
  where: E | undefined;
  keys: { e: E; alias: string | undefined; byAlias: boolean }[];
  window: WindowGen;
  aggs: AggGen[];
  having: { agg: AggGen; op: '>' | '>=' | '<' | '<>'; v: number | string } | undefined;
}

function aggArb(x: ReturnType<typeof exprs>): fc.Arbitrary<AggGen> {
  const any = fc.oneof(x.num, x.str, x.bool, fc.constant(J_COL));
  const ordered = fc.oneof(x.num, x.str, x.bool);
  return fc.oneof(
    fc.constant<AggGen>({ kind: 'count_star', arg: undefined }),
    any.map((arg): AggGen => ({ kind: 'count', arg })),
    any.map((arg): AggGen => ({ kind: 'count_distinct', arg })),
    x.num.map((arg): AggGen => ({ kind: 'sum', arg })),
    x.num.map((arg): AggGen => ({ kind: 'avg', arg })),
    ordered.map((arg): AggGen => ({ kind: 'min', arg })),
    ordered.map((arg): AggGen => ({ kind: 'max', arg })),
    x.num.map((arg): AggGen => ({ kind: 'range', arg })),
    fc.tuple(any, fc.option(fc.constantFrom(4, 8, 10, 12, 14, 16, 18), { nil: undefined })).map(([arg, param]): AggGen => ({ kind: 'approx_count_distinct', arg, param })),
    fc.tuple(x.num, fc.constantFrom(0, 0.01, 0.25, 0.5, 0.9, 0.99, 1), fc.option(fc.constantFrom(0.001, 0.01, 0.05, 0.2), { nil: undefined })).map(([arg, param, accuracy]): AggGen => ({ kind: 'approx_percentile', arg, param, accuracy })),
    fc.tuple(any, fc.constantFrom(1, 2, 3, 10)).map(([arg, param]): AggGen => ({ kind: 'top_k', arg, param })),
  );
}

const windowArb: fc.Arbitrary<WindowGen> = fc.oneof(
  fc.constant<WindowGen>({ kind: 'none' }),
  fc.tuple(fc.constantFrom('received_at', 'event_time' as const), fc.constantFrom(1, 5, 10, 60)).map(([time, sizeS]): WindowGen => ({ kind: 'tumble', time, sizeS })),
  fc.tuple(fc.constantFrom('received_at', 'event_time' as const), fc.constantFrom([1, 5], [5, 10], [10, 15], [4, 6], [10, 10]) ).map(([time, [slideS, sizeS]]): WindowGen => ({ kind: 'hop', time, slideS, sizeS })),
  fc.tuple(fc.constantFrom('received_at', 'event_time' as const), fc.constantFrom(1, 5, 20)).map(([time, gapS]): WindowGen => ({ kind: 'session', time, gapS })),
);

/** A random view: join, filter, 0-2 keys, a window, 1-4 aggregates, sometimes HAVING. */
export const viewArb: fc.Arbitrary<ViewGen> = fc
  .option(
    fc.tuple(fc.constantFrom('JOIN', 'LEFT JOIN' as const), fc.boolean()).chain(([kind, onId]) => {
      const x = exprs(false);
      return (onId ? x.num : x.str).map((probe): JoinGen => ({ kind, probe, column: onId ? 'id' : 'name' }));
    }),
    { nil: undefined, freq: 3 },
  )
  .chain((join) => {
    const x = exprs(join !== undefined);
    const keyExpr = fc.oneof(
      { arbitrary: fc.constantFrom(...COLS.str, ...COLS.num.slice(0, 1), ...COLS.bool, J_COL, ...(join !== undefined ? TABLE_COLS.str : [])), weight: 3 },
      { arbitrary: fc.oneof(x.num, x.str, x.bool), weight: 1 },
    );
    const keys = fc.array(fc.tuple(keyExpr, fc.boolean(), fc.boolean()), { maxLength: 2 }).map((ks) =>
      ks.map(([e, aliased, byAlias], i) => {
        const bare = e.k === 'col' && /^[a-z]+$/.test(e.hl) && e.hl !== 'key';
        const alias = aliased || !bare ? `k${i}` : undefined;
        return { e, alias, byAlias: alias !== undefined && byAlias };
      }),
    );
    const agg = aggArb(x);
    const having = fc.option(
      fc.tuple(
        fc.oneof(
          fc.constant<AggGen>({ kind: 'count_star', arg: undefined }),
          fc.oneof(x.num, x.str).map((arg): AggGen => ({ kind: 'count_distinct', arg })),
          x.num.map((arg): AggGen => ({ kind: 'min', arg })),
        ),
        fc.constantFrom('>', '>=', '<', '<>' as const),
        fc.constantFrom(0, 1, 2, 3),
      ).map(([a, op, v]) => ({ agg: a, op, v })),
      { nil: undefined, freq: 4 },
    );
    return fc.record({
      join: fc.constant(join),
      where: fc.option(x.bool, { nil: undefined, freq: 2 }),
      keys,
      window: windowArb,
      aggs: fc.array(agg, { minLength: 1, maxLength: 4 }),
      having,
    });
  })
  // A view without key, window or aggregate is refused by the planner; aggs has at least one.
  .map((v) => v);

/** A column that halflife and DuckDB both produce, and how to compare it. */
export interface OutCol {
  name: string;
  role: 'key' | 'agg';
  ty: Ty;
  agg?: AggGen;
}

function aggHl(a: AggGen): string {
  const arg = a.arg === undefined ? '' : render(a.arg, 'hl');
  switch (a.kind) {
    case 'count_star':
      return 'COUNT(*)';
    case 'count':
      return `COUNT(${arg})`;
    case 'count_distinct':
      return `COUNT(DISTINCT ${arg})`;
    case 'sum':
      return `SUM(${arg})`;
    case 'avg':
      return `AVG(${arg})`;
    case 'min':
      return `MIN(${arg})`;
    case 'max':
      return `MAX(${arg})`;
    case 'range':
      return `(MAX(${arg}) - MIN(${arg}))`;
    case 'approx_count_distinct':
      return `APPROX_COUNT_DISTINCT(${arg}${a.param === undefined ? '' : `, ${a.param}`})`;
    case 'approx_percentile':
      return `APPROX_PERCENTILE(${arg}, ${a.param}${a.accuracy === undefined ? '' : `, ${a.accuracy}`})`;
    case 'top_k':
      return `TOP_K(${arg}, ${a.param})`;
  }
}

/** DuckDB's text form of a value as halflife compares it in COUNT(DISTINCT) and sketches (numbers compared as numbers). */
function dbDistinctArg(e: E): string {
  const ty = typeOf(e);
  if (ty === 'json') return `(CASE WHEN json_type(CAST(${render(e, 'db')} AS JSON)) = 'VARCHAR' THEN CAST(${render(e, 'db')} AS JSON)->>'$' ELSE ${render(e, 'db')} END)`;
  if (ty === 'num') return `CAST(${render(e, 'db')} AS DOUBLE)`;
  return render(e, 'db');
}

/** DuckDB expressions for one aggregate: its exact value, and helper columns the comparison needs. */
function aggDb(a: AggGen, name: string): string[] {
  const arg = a.arg === undefined ? '' : render(a.arg, 'db');
  const num = `CAST(${arg} AS DOUBLE)`;
  const q = (s: string, suffix = '') => `${s} AS "${name}${suffix}"`;
  switch (a.kind) {
    case 'count_star':
      return [q('COUNT(*)')];
    case 'count':
      return [q(`COUNT(${arg})`)];
    case 'count_distinct':
    case 'approx_count_distinct':
      return [q(`COUNT(DISTINCT ${dbDistinctArg(a.arg!)})`)];
    case 'sum':
      return [q(`SUM(${num})`), q(`SUM(ABS(${num}))`, '#abs')];
    case 'avg':
      return [q(`AVG(${num})`), q(`AVG(ABS(${num}))`, '#abs')];
    case 'min':
    case 'max':
      return [q(`${a.kind.toUpperCase()}(${typeOf(a.arg!) === 'num' ? num : arg})`)];
    case 'range':
      return [q(`(MAX(${num}) - MIN(${num}))`), q(`GREATEST(ABS(MAX(${num})), ABS(MIN(${num})))`, '#abs')];
    case 'approx_percentile':
      // The value of rank floor(q * (n - 1)) (halflife's definition), and DuckDB's own quantile_disc (ceil(q * n) - 1).
      return [
        q(`list_sort(list(${num}) FILTER (WHERE ${num} IS NOT NULL))[CAST(floor((COUNT(${num}) - 1) * ${a.param}) AS BIGINT) + 1]`),
        q(`quantile_disc(${num}, ${a.param})`, '#duckdb'),
        // The span of each sign's magnitudes: past the sketch's bucket budget its lowest buckets collapse.
        q(`MIN(${num}) FILTER (WHERE ${num} > 0)`, '#plo'),
        q(`MAX(${num}) FILTER (WHERE ${num} > 0)`, '#phi'),
        q(`MIN(-${num}) FILTER (WHERE ${num} < 0)`, '#nlo'),
        q(`MAX(-${num}) FILTER (WHERE ${num} < 0)`, '#nhi'),
      ];
    case 'top_k':
      return [q(`histogram(${dbDistinctArg(a.arg!)})`)];
  }
}

export interface Rendered {
  /** halflife's CREATE VIEW. */
  hl: string;
  /** The DuckDB query over tables ev and tab. */
  db: string;
  cols: OutCol[];
  /** Whether the view has neither key nor window (no row until an event passes). */
  global: boolean;
}

const LATENESS = "max_lateness = '1h'";

export function renderView(v: ViewGen): Rendered {
  const cols: OutCol[] = [];
  const hlItems: string[] = [];
  const dbItems: string[] = [];
  v.keys.forEach((k, i) => {
    // Without an alias the key is a bare column, and the view names the output after it.
    const name = k.alias ?? render(k.e, 'hl');
    cols.push({ name, role: 'key', ty: typeOf(k.e) });
    hlItems.push(k.alias === undefined ? name : `${render(k.e, 'hl')} AS ${k.alias}`);
    dbItems.push(`_k${i} AS "${name}"`);
  });
  v.aggs.forEach((a, i) => {
    const name = `a${i}`;
    cols.push({ name, role: 'agg', ty: a.arg === undefined ? 'num' : typeOf(a.arg), agg: a });
    hlItems.push(`${aggHl(a)} AS ${name}`);
    dbItems.push(...aggDb(a, name));
  });
  const w = v.window;
  const s = (n: number) => `INTERVAL '${n}' SECOND`;
  const winHl =
    w.kind === 'none' ? [] : w.kind === 'tumble' ? [`TUMBLE(${w.time}, ${s(w.sizeS)})`] : w.kind === 'hop' ? [`HOP(${w.time}, ${s(w.slideS)}, ${s(w.sizeS)})`] : [`SESSION(${w.time}, ${s(w.gapS)})`];
  const groupHl = [...v.keys.map((k) => (k.byAlias ? k.alias! : render(k.e, 'hl'))), ...winHl];
  const joinHl = v.join === undefined ? '' : ` ${v.join.kind} tab t ON ${render(v.join.probe, 'hl')} = t.${v.join.column}`;
  const havingHl = v.having === undefined ? '' : ` HAVING ${aggHl(v.having.agg)} ${v.having.op} ${v.having.v}`;
  const hl =
    `CREATE VIEW v WITH (${LATENESS}) AS SELECT ${hlItems.join(', ')} FROM ev${joinHl}` +
    `${v.where === undefined ? '' : ` WHERE ${render(v.where, 'hl')}`}${groupHl.length > 0 ? ` GROUP BY ${groupHl.join(', ')}` : ''}${havingHl}`;

  const keyCols = v.keys.map((_k, i) => `_k${i}`);
  const keyDefs = v.keys.map((k, i) => `${typeOf(k.e) === 'num' ? `CAST(${render(k.e, 'db')} AS DOUBLE)` : render(k.e, 'db')} AS _k${i}`);
  const joined =
    v.join === undefined
      ? 'SELECT ev.*, NULL AS _t_id, NULL AS _t_name, NULL AS _t_tier FROM ev'
      : `SELECT ev.*, t.id AS _t_id, t.name AS _t_name, t.tier AS _t_tier FROM ev ${v.join.kind} tab t ON ${v.join.column === 'id' ? `CAST(${render(v.join.probe, 'db')} AS DOUBLE) = CAST(t.id AS DOUBLE)` : `${render(v.join.probe, 'db')} = t.name`}`;
  const time = w.kind === 'none' ? '_ra' : w.time === 'received_at' ? '_ra' : '_et';
  const ctes = [
    `j0 AS (${joined})`,
    `base AS (SELECT *, ${time} AS _t${keyDefs.map((d) => `, ${d}`).join('')} FROM j0${v.where === undefined ? '' : ` WHERE ${render(v.where, 'db')}`})`,
  ];
  const part = keyCols.length === 0 ? '' : `PARTITION BY ${keyCols.join(', ')}`;
  switch (w.kind) {
    case 'none':
      ctes.push('win AS (SELECT *, CAST(NULL AS BIGINT) AS _ws, CAST(NULL AS BIGINT) AS _we FROM base)');
      break;
    case 'tumble': {
      const ms = w.sizeS * 1000;
      ctes.push(`win AS (SELECT *, (_t // ${ms}) * ${ms} AS _ws, (_t // ${ms}) * ${ms} + ${ms} AS _we FROM base)`);
      break;
    }
    case 'hop': {
      const slide = w.slideS * 1000;
      const size = w.sizeS * 1000;
      const back = Math.ceil(size / slide) * slide;
      ctes.push(`h0 AS (SELECT *, unnest(generate_series((_t // ${slide}) * ${slide} - ${back}, (_t // ${slide}) * ${slide}, ${slide})) AS _ws FROM base)`);
      ctes.push(`win AS (SELECT *, _ws + ${size} AS _we FROM h0 WHERE _ws > _t - ${size})`);
      break;
    }
    case 'session': {
      const gap = w.gapS * 1000;
      // Sessions are the islands of each key's times sorted, split where two neighbours are a gap or more apart.
      ctes.push(`s0 AS (SELECT *, CASE WHEN _t - lag(_t) OVER (${part} ORDER BY _t) < ${gap} THEN 0 ELSE 1 END AS _new FROM base)`);
      // Events at the same time: the one lag() flagged as a session's start must come first in the running sum too,
      // or a tied event lands in the session before (of tied events only the first in lag's order can be flagged).
      ctes.push(`s1 AS (SELECT *, sum(_new) OVER (${part} ORDER BY _t, _new DESC ROWS UNBOUNDED PRECEDING) AS _sid FROM s0)`);
      const p2 = `PARTITION BY ${[...keyCols, '_sid'].join(', ')}`;
      ctes.push(`win AS (SELECT *, min(_t) OVER (${p2}) AS _ws, max(_t) OVER (${p2}) + ${gap} AS _we FROM s1)`);
      break;
    }
  }
  const global = v.keys.length === 0 && w.kind === 'none';
  const havings: string[] = [];
  if (global) havings.push('COUNT(*) > 0');
  if (v.having !== undefined) {
    const [expr] = aggDb(v.having.agg, '#having');
    havings.push(`(${expr.replace(/ AS "[^"]*"$/, '')}) ${v.having.op} ${v.having.v}`);
  }
  const db =
    `WITH ${ctes.join(',\n')}\nSELECT _ws AS window_start, _we AS window_end${dbItems.map((d) => `, ${d}`).join('')} FROM win ` +
    `GROUP BY ${[...keyCols, '_ws', '_we'].join(', ')}${havings.length > 0 ? ` HAVING ${havings.join(' AND ')}` : ''}`;
  return { hl, db, cols, global };
}
