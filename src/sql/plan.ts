import type { Expr, Select } from './ast.js';
import { arith, cast, CAST_TYPES, compare, isNull, like, own, SCALAR_FUNCTIONS, toText, truthy, type Value } from './expr.js';
import { parse, parseDuration } from './parser.js';
import { closest } from '../core/index.js';
import { sqlError, type Pos } from './position.js';

/** What the planner knows about a stream's fields (from its JSON Schema) or a table's columns. */
export interface FieldInfo {
  /** JSON types the field may have (undefined = any). */
  readonly types?: readonly string[];
  /** Known sub-fields; with `open`, others may exist too. */
  readonly properties?: Readonly<Record<string, FieldInfo>>;
  /** True when fields beyond `properties` may appear (no schema, or additionalProperties not false). */
  readonly open: boolean;
}

export interface Catalog {
  streamNames(): readonly string[];
  /** The stream's data fields; undefined when the stream has no schema (anything goes). */
  streamFields(name: string): FieldInfo | undefined;
  tableNames(): readonly string[];
  tableColumns(name: string): readonly string[] | undefined;
}

/** One event as the engine evaluates it. `event_time` falls back to `received_at`. */
export interface EventRow {
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly key: string | undefined;
  readonly received_at: number;
  readonly event_time: number;
  readonly partition: number;
  readonly offset: number;
  /** Appended by a dead-letter replay: a correction that updates the (possibly closed) windows it belongs to. */
  readonly replay?: boolean;
  /** Rows of the joined tables, in join order (undefined where a LEFT JOIN found nothing). */
  joined: (Record<string, unknown> | undefined)[];
  /** In queries over views: the partial aggregate states of the view row, by column. */
  states?: Readonly<Record<string, unknown>>;
}

export type RowEvaluator = (row: EventRow) => Value;
/** Evaluates over an aggregated group: its key values, final aggregate values, and window bounds. */
export type GroupEvaluator = (keys: readonly Value[], aggs: readonly Value[], windowStart: number | null, windowEnd: number | null) => Value;

export type WindowSpec =
  | { readonly kind: 'none' }
  | { readonly kind: 'tumble'; readonly sizeMs: number }
  | { readonly kind: 'hop'; readonly slideMs: number; readonly sizeMs: number }
  | { readonly kind: 'session'; readonly gapMs: number };

export type AggFn =
  | 'count_star'
  | 'count'
  | 'count_distinct'
  | 'sum'
  | 'avg'
  | 'min'
  | 'max'
  | 'approx_count_distinct'
  | 'approx_percentile'
  | 'top_k';

export interface AggSpec {
  readonly fn: AggFn;
  readonly arg: RowEvaluator | undefined;
  /** HLL precision, percentile q, or k. */
  readonly param: number | undefined;
  /** APPROX_PERCENTILE's relative accuracy (default 0.01). */
  readonly accuracy?: number | undefined;
  /** Canonical text, for messages and matching. */
  readonly label: string;
  /** When the argument is a bare column, its name (queries use it to merge sketch columns of a view). */
  readonly argColumn?: string | undefined;
  /** In queries: the argument is a sketch column of the same function, whose partial states are merged. */
  readonly merge?: boolean;
}

export interface JoinSpec {
  readonly table: string;
  readonly kind: 'inner' | 'left';
  /** Stream-side value to look up. */
  readonly probe: RowEvaluator;
  /** Table column it must equal. */
  readonly column: string;
}

export interface OutputColumn {
  readonly name: string;
  readonly eval: GroupEvaluator;
  /** For a plain aggregate output, its slot (lets queries re-merge sketch states). */
  readonly agg: number | undefined;
  /** For a plain key output, its slot. */
  readonly key: number | undefined;
}

export interface ViewOptions {
  readonly maxLatenessMs: number;
  readonly start: 'earliest' | 'latest';
  readonly idleTimeoutMs: number;
  readonly retentionMs: number;
  readonly refreshMs: number;
  /** Closed windows are evicted, oldest first, while the view's state is larger than this. */
  readonly memoryBudgetBytes: number;
}

export interface ViewPlan {
  readonly name: string;
  readonly sql: string;
  readonly source: string;
  readonly time: 'received_at' | 'event_time';
  readonly window: WindowSpec;
  readonly options: ViewOptions;
  readonly filter: RowEvaluator | undefined;
  readonly joins: readonly JoinSpec[];
  readonly keys: readonly { readonly name: string; readonly eval: RowEvaluator }[];
  readonly aggs: readonly AggSpec[];
  readonly outputs: readonly OutputColumn[];
  readonly having: GroupEvaluator | undefined;
  /** The top-level `data` fields the view reads: the engine decodes only these. */
  readonly dataFields: readonly string[];
  /** Whether the view reads the `key` metadata column (the engine decodes keys only then). */
  readonly usesKey: boolean;
}

export const METADATA_COLUMNS = ['received_at', 'event_time', 'type', 'key', 'partition', 'offset'] as const;
const WINDOW_FUNCTIONS = new Set(['TUMBLE', 'HOP', 'SESSION']);
const AGGREGATES = new Set(['COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'APPROX_COUNT_DISTINCT', 'APPROX_PERCENTILE', 'TOP_K']);
/** APPROX_PERCENTILE's third argument: finer than 1e-5 needs more buckets than a sketch keeps; coarser than 0.5 means nothing. */
export const MIN_PERCENTILE_ACCURACY = 0.00001;
export const MAX_PERCENTILE_ACCURACY = 0.5;
const OPTION_NAMES = ['max_lateness', 'start', 'idle_timeout', 'retention', 'refresh', 'memory_budget'];

/** '512MB', '2 GiB', '100kb', '1048576' -> bytes; undefined if not a size. */
export function parseSize(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$/i.exec(s);
  if (m === null) return undefined;
  const unit = (m[2] ?? 'b').toLowerCase();
  const factor = unit === 'b' ? 1 : unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 ** 2 : 1024 ** 3;
  return Math.floor(Number(m[1]) * factor);
}

export const DEFAULT_VIEW_OPTIONS: ViewOptions = {
  maxLatenessMs: 5000,
  start: 'earliest',
  idleTimeoutMs: 10_000,
  retentionMs: 24 * 3_600_000,
  refreshMs: 1000,
  memoryBudgetBytes: 512 * 1024 * 1024,
};

/** " (did you mean x?)" when a known name is within edit distance 2, or a list of the known names. */
function suggestion(word: string, known: readonly string[]): string {
  const best = closest(word, known);
  if (best !== undefined) return ` (did you mean ${best}?)`;
  return known.length > 0 && known.length <= 12 ? ` (known: ${known.join(', ')})` : '';
}

/** Structural equality of expressions, ignoring positions. */
export function sameExpr(a: Expr, b: Expr): boolean {
  return exprKey(a) === exprKey(b);
}

export function exprKey(e: Expr): string {
  return JSON.stringify(e, (k, v: unknown) => (k === 'pos' || k === 'length' ? undefined : v));
}

/** SQL-ish text of an expression, for default column names and messages. */
export function exprText(e: Expr): string {
  switch (e.kind) {
    case 'column':
      return e.path.join('.');
    case 'call':
      return `${e.name}(${e.star ? '*' : `${e.distinct ? 'DISTINCT ' : ''}${e.args.map(exprText).join(', ')}`})`;
    case 'literal':
      return typeof e.value === 'string' ? `'${e.value}'` : String(e.value);
    default:
      return e.kind;
  }
}

/** Converts a JSON Schema into what the planner checks columns against. */
/**
 * The catalog of streams with the given JSON Schemas (by type) and, when given, the static tables; what the
 * server builds from its registry and what tests and benches build from fixtures.
 */
export function schemaCatalog(
  schemas: Readonly<Record<string, unknown>>,
  tables?: { names(): readonly string[]; columns(name: string): readonly string[] | undefined },
): Catalog {
  return {
    streamNames: () => Object.keys(schemas),
    streamFields: (name) => (Object.hasOwn(schemas, name) ? fieldsFromJsonSchema(schemas[name]) : undefined),
    tableNames: () => tables?.names() ?? [],
    tableColumns: (name) => tables?.columns(name),
  };
}

export function fieldsFromJsonSchema(schema: unknown): FieldInfo {
  if (schema === null || typeof schema !== 'object') return { open: true };
  const s = schema as { type?: string | string[]; properties?: Record<string, unknown>; additionalProperties?: unknown };
  const types = s.type === undefined ? undefined : Array.isArray(s.type) ? s.type : [s.type];
  if (s.properties === undefined) return { types, open: true };
  // Without a prototype, so that a property named __proto__ is a field like any other.
  const properties: Record<string, FieldInfo> = Object.create(null) as Record<string, FieldInfo>;
  for (const [k, v] of Object.entries(s.properties)) properties[k] = fieldsFromJsonSchema(v);
  return { types, properties, open: s.additionalProperties !== false };
}

interface Scope {
  readonly sql: string;
  readonly catalog: Catalog;
  readonly source: string;
  readonly sourceAlias: string;
  readonly fields: FieldInfo | undefined;
  readonly tables: readonly { name: string; alias: string; columns: readonly string[] }[];
  /**
   * 'events' over a stream: the metadata columns (type, key, received_at, …) and window bounds exist next to the
   * data fields. 'view' in queries over a view: its rows have only the view's own columns, so a column the view
   * named `type` is that column, never the view's name.
   */
  readonly rows: 'events' | 'view';
}

class Planner {
  readonly #s: Scope;
  readonly aggs: AggSpec[] = [];
  /** Top-level data fields referenced anywhere. */
  readonly dataFields = new Set<string>();
  usesKey = false;
  readonly #aggExprs: Expr[] = [];

  constructor(scope: Scope) {
    this.#s = scope;
  }

  fail(pos: Pos, reason: string, length = 1): never {
    throw sqlError('SQL_PLAN', this.#s.sql, pos, reason, length);
  }

  /** Resolves a column reference against the event (metadata, data fields) and the joined tables. */
  column(e: Extract<Expr, { kind: 'column' }>): RowEvaluator {
    const { path } = e;
    const s = this.#s;
    let rest = path;
    if (path.length > 1 && (path[0] === s.sourceAlias || path[0] === s.source)) rest = path.slice(1);
    else if (path.length > 1) {
      const ti = s.tables.findIndex((t) => t.alias === path[0] || t.name === path[0]);
      if (ti >= 0) return this.#tableColumn(ti, path.slice(1), e);
    }
    if (s.rows === 'events' && rest.length === 1 && (METADATA_COLUMNS as readonly string[]).includes(rest[0])) {
      const name = rest[0] as (typeof METADATA_COLUMNS)[number];
      if (name === 'key') this.usesKey = true;
      return (row) => row[name] ?? null;
    }
    if (rest[0] === 'data' && rest.length > 1) rest = rest.slice(1);
    if (rest === path && path.length === 1 && !this.#fieldKnown(path)) {
      const ti = s.tables.findIndex((t) => t.columns.includes(path[0]));
      if (ti >= 0) return this.#tableColumn(ti, path, e);
    }
    this.#checkField(rest, e);
    this.dataFields.add(rest[0]);
    if (rest.length === 1) {
      const f = rest[0];
      return (row) => own(row.data, f) ?? null;
    }
    return (row) => {
      let v: unknown = row.data;
      for (const p of rest) {
        if (v === null || typeof v !== 'object') return null;
        v = own(v as Record<string, unknown>, p);
      }
      return v ?? null;
    };
  }

  #fieldKnown(path: readonly string[]): boolean {
    const f = this.#s.fields;
    return f === undefined || f.properties === undefined || Object.hasOwn(f.properties, path[0]);
  }

  #checkField(path: readonly string[], e: Extract<Expr, { kind: 'column' }>): void {
    let info = this.#s.fields;
    for (let i = 0; i < path.length && info !== undefined; i++) {
      const props = info.properties;
      if (props === undefined) return;
      const next = own(props, path[i]);
      // Declared properties are the columns: an undeclared name is far more often a typo than a wish.
      if (next === undefined) {
        const metadata = this.#s.rows === 'events' ? METADATA_COLUMNS : [];
        const known = i === 0 ? [...Object.keys(props), ...metadata, ...this.#s.tables.flatMap((t) => t.columns)] : Object.keys(props);
        this.fail(e.pos, `unknown column ${path.slice(0, i + 1).join('.')} in ${this.#s.source}${suggestion(path[i], known)}`, e.length);
      }
      info = next;
    }
  }

  #tableColumn(ti: number, path: readonly string[], e: Extract<Expr, { kind: 'column' }>): RowEvaluator {
    const t = this.#s.tables[ti];
    if (!t.columns.includes(path[0])) this.fail(e.pos, `table ${t.name} has no column ${path[0]}${suggestion(path[0], t.columns)}`, e.length);
    const col = path[0];
    return (row) => {
      const j = row.joined[ti];
      return j === undefined ? null : (own(j, col) ?? null);
    };
  }

  fieldTypes(e: Expr): readonly string[] | undefined {
    if (e.kind !== 'column') return undefined;
    let info = this.#s.fields;
    let path = e.path;
    if (path.length > 1 && (path[0] === this.#s.sourceAlias || path[0] === this.#s.source)) path = path.slice(1);
    for (const p of path) info = info?.properties === undefined ? undefined : own(info.properties, p);
    return info?.types;
  }

  /** Compiles a row-level expression (WHERE, keys, aggregate arguments, join probes). */
  row(e: Expr, where: string): RowEvaluator {
    switch (e.kind) {
      case 'column':
        return this.column(e);
      case 'literal': {
        const v = e.value;
        return () => v;
      }
      case 'interval': {
        const ms = e.ms;
        return () => ms;
      }
      case 'call': {
        if (AGGREGATES.has(e.name)) this.fail(e.pos, `aggregate ${e.name} is not allowed in ${where}`, e.length);
        if (WINDOW_FUNCTIONS.has(e.name)) this.fail(e.pos, `${e.name} belongs in GROUP BY`, e.length);
        const f = own(SCALAR_FUNCTIONS, e.name);
        if (f === undefined) this.fail(e.pos, `unknown function ${e.name}${suggestion(e.name, [...Object.keys(SCALAR_FUNCTIONS), ...AGGREGATES])}`, e.name.length);
        if (e.args.length < f.minArgs || e.args.length > f.maxArgs) {
          this.fail(e.pos, `${e.name} takes ${f.minArgs === f.maxArgs ? f.minArgs : `${f.minArgs} to ${f.maxArgs}`} argument(s), got ${e.args.length}`, e.length);
        }
        const args = e.args.map((a) => this.row(a, where));
        return (row) => f.fn(args.map((a) => a(row)), Date.now());
      }
      default:
        return this.#composite(e, (x) => this.row(x, where)) as RowEvaluator;
    }
  }

  /** Shared compilation of operators, for both row and group evaluators. */
  #composite<F extends (...args: never[]) => Value>(e: Expr, sub: (x: Expr) => F): F {
    const call = (f: F, args: unknown[]) => (f as unknown as (...a: unknown[]) => Value)(...args);
    switch (e.kind) {
      case 'binary': {
        const l = sub(e.left);
        const r = sub(e.right);
        const op = e.op;
        if (op === 'AND') return ((...a: unknown[]) => {
          const x = call(l, a);
          if (x === false) return false;
          const y = call(r, a);
          if (y === false) return false;
          return isNull(x) || isNull(y) ? null : true;
        }) as unknown as F;
        if (op === 'OR') return ((...a: unknown[]) => {
          const x = call(l, a);
          if (x === true) return true;
          const y = call(r, a);
          if (y === true) return true;
          return isNull(x) || isNull(y) ? null : false;
        }) as unknown as F;
        if (op === '||') return ((...a: unknown[]) => {
          const x = call(l, a);
          const y = call(r, a);
          return isNull(x) || isNull(y) ? null : toText(x) + toText(y);
        }) as unknown as F;
        if (op === '+' || op === '-' || op === '*' || op === '/' || op === '%') return ((...a: unknown[]) => arith(op, call(l, a), call(r, a))) as unknown as F;
        return ((...a: unknown[]) => {
          const c = compare(call(l, a), call(r, a));
          if (c === null) return null;
          switch (op) {
            case '=': return c === 0;
            case '<>': return c !== 0;
            case '<': return c < 0;
            case '<=': return c <= 0;
            case '>': return c > 0;
            default: return c >= 0;
          }
        }) as unknown as F;
      }
      case 'unary': {
        const o = sub(e.operand);
        if (e.op === 'NOT') return ((...a: unknown[]) => {
          const v = call(o, a);
          return isNull(v) ? null : !truthy(v);
        }) as unknown as F;
        return ((...a: unknown[]) => arith('-', 0, call(o, a))) as unknown as F;
      }
      case 'case': {
        const operand = e.operand === undefined ? undefined : sub(e.operand);
        const whens = e.whens.map(([w, t]) => [sub(w), sub(t)] as const);
        const otherwise = e.otherwise === undefined ? undefined : sub(e.otherwise);
        return ((...a: unknown[]) => {
          const base = operand === undefined ? undefined : call(operand, a);
          for (const [w, t] of whens) {
            const cond = call(w, a);
            if (operand === undefined ? truthy(cond) : compare(base, cond) === 0) return call(t, a);
          }
          return otherwise === undefined ? null : call(otherwise, a);
        }) as unknown as F;
      }
      case 'in': {
        const x = sub(e.expr);
        const list = e.list.map(sub);
        const negated = e.negated;
        // x IN (a, b) is x = a OR x = b: TRUE on a match, else NULL if x or any item is NULL, else FALSE; NOT IN
        // negates that, so `x NOT IN ('zzz', NULL)` is NULL, never TRUE.
        return ((...a: unknown[]) => {
          const v = call(x, a);
          if (isNull(v)) return null;
          let unknown = false;
          for (const item of list) {
            const c = compare(v, call(item, a));
            if (c === 0) return !negated;
            if (c === null) unknown = true;
          }
          return unknown ? null : negated;
        }) as unknown as F;
      }
      case 'between': {
        const x = sub(e.expr);
        const lo = sub(e.low);
        const hi = sub(e.high);
        const negated = e.negated;
        // x BETWEEN lo AND hi is x >= lo AND x <= hi, with AND's rules: one FALSE side makes it FALSE even when
        // the other is NULL (1 BETWEEN 5 AND NULL is FALSE; 1 NOT BETWEEN 5 AND NULL is TRUE).
        return ((...a: unknown[]) => {
          const v = call(x, a);
          const c1 = compare(v, call(lo, a));
          const c2 = compare(v, call(hi, a));
          const above = c1 === null ? null : c1 >= 0;
          const below = c2 === null ? null : c2 <= 0;
          const inside = above === false || below === false ? false : above === null || below === null ? null : true;
          return inside === null ? null : negated ? !inside : inside;
        }) as unknown as F;
      }
      case 'like': {
        const x = sub(e.expr);
        const p = sub(e.pattern);
        const negated = e.negated;
        return ((...a: unknown[]) => {
          const r = like(call(x, a), call(p, a));
          return r === null ? null : negated ? !r : r;
        }) as unknown as F;
      }
      case 'isnull': {
        const x = sub(e.expr);
        const negated = e.negated;
        return ((...a: unknown[]) => (negated ? !isNull(call(x, a)) : isNull(call(x, a)))) as unknown as F;
      }
      case 'cast': {
        if (own(CAST_TYPES, e.type) === undefined) this.fail(e.pos, `unknown type ${e.type} in CAST${suggestion(e.type, Object.keys(CAST_TYPES))}`);
        const x = sub(e.expr);
        const type = e.type;
        return ((...a: unknown[]) => cast(call(x, a), type)) as unknown as F;
      }
      default:
        return this.fail(e.pos, `unexpected ${e.kind}`);
    }
  }

  /** Registers an aggregate call, returning its slot (the same call twice shares a slot). */
  aggregate(e: Extract<Expr, { kind: 'call' }>): number {
    const existing = this.#aggExprs.findIndex((x) => sameExpr(x, e));
    if (existing >= 0) return existing;
    const name = e.name;
    const arg0 = e.args[0];
    const numberParam = (i: number, what: string, ok: (n: number) => boolean): number => {
      const a = e.args[i];
      if (a === undefined || a.kind !== 'literal' || typeof a.value !== 'number' || !ok(a.value)) {
        this.fail((a ?? e).pos, `${name}: ${what}`, a === undefined ? e.length : 1);
      }
      return a.value as number;
    };
    const numeric = (what: string) => {
      const types = this.fieldTypes(arg0);
      if (types !== undefined && !types.some((t) => t === 'number' || t === 'integer')) {
        this.fail(arg0.pos, `${name} needs a number, but ${exprText(arg0)} is ${types.join(' | ')}${what}`, (arg0 as { length?: number }).length ?? 1);
      }
    };
    let spec: AggSpec;
    const label = exprText(e);
    if (name === 'COUNT' && e.star) spec = { fn: 'count_star', arg: undefined, param: undefined, label };
    else {
      if (e.star) this.fail(e.pos, `${name}(*) is not allowed; only COUNT(*)`, e.length);
      if (arg0 === undefined) this.fail(e.pos, `${name} needs an argument`, e.length);
      const arg = this.row(arg0, `the argument of ${name}`);
      const argCount = e.args.length;
      const maxArgs = name === 'APPROX_PERCENTILE' ? 3 : name === 'APPROX_COUNT_DISTINCT' || name === 'TOP_K' ? 2 : 1;
      if (argCount > maxArgs) this.fail(e.args[maxArgs].pos, `${name} takes at most ${maxArgs} argument(s)`);
      switch (name) {
        case 'COUNT':
          spec = { fn: e.distinct ? 'count_distinct' : 'count', arg, param: undefined, label };
          break;
        case 'SUM':
        case 'AVG':
          numeric('');
          spec = { fn: name === 'SUM' ? 'sum' : 'avg', arg, param: undefined, label };
          break;
        case 'MIN':
        case 'MAX':
          spec = { fn: name === 'MIN' ? 'min' : 'max', arg, param: undefined, label };
          break;
        case 'APPROX_COUNT_DISTINCT':
          spec = {
            fn: 'approx_count_distinct',
            arg,
            param: argCount > 1 ? numberParam(1, 'precision must be an integer from 4 to 18', (n) => Number.isInteger(n) && n >= 4 && n <= 18) : 14,
            label,
          };
          break;
        case 'APPROX_PERCENTILE':
          numeric('');
          spec = {
            fn: 'approx_percentile',
            arg,
            param: numberParam(1, 'the quantile must be a number between 0 and 1, e.g. 0.99', (n) => n >= 0 && n <= 1),
            accuracy:
              argCount > 2
                ? numberParam(2, `the relative accuracy must be a number from ${MIN_PERCENTILE_ACCURACY} to ${MAX_PERCENTILE_ACCURACY}, e.g. 0.0001 for prices that move by hundredths of a percent`, (n) => n >= MIN_PERCENTILE_ACCURACY && n <= MAX_PERCENTILE_ACCURACY)
                : undefined,
            label,
          };
          break;
        default:
          spec = { fn: 'top_k', arg, param: numberParam(1, 'k must be an integer from 1 to 1000, e.g. TOP_K(referrer, 10)', (n) => Number.isInteger(n) && n >= 1 && n <= 1000), label };
      }
    }
    if (arg0?.kind === 'column' && arg0.path.length === 1) spec = { ...spec, argColumn: arg0.path[0] };
    this.#aggExprs.push(e);
    this.aggs.push(spec);
    return this.aggs.length - 1;
  }

  /** Compiles an expression over groups: keys, aggregates, window bounds, and operators over them. */
  group(e: Expr, keys: readonly Expr[], keyAliases: readonly (string | undefined)[], where: string): GroupEvaluator {
    const ki = keys.findIndex((k) => sameExpr(k, e));
    if (ki >= 0) return (k) => k[ki];
    switch (e.kind) {
      case 'column': {
        if (this.#s.rows === 'events' && e.path.length === 1 && (e.path[0] === 'window_start' || e.path[0] === 'window_end')) {
          return e.path[0] === 'window_start' ? (_k, _a, s) => s : (_k, _a, _s, end) => end;
        }
        const ai = keyAliases.findIndex((a) => a !== undefined && e.path.length === 1 && a === e.path[0]);
        if (ai >= 0) return (k) => k[ai];
        this.column(e); // unknown columns get their own message first
        return this.fail(e.pos, `column ${e.path.join('.')} must appear in GROUP BY or inside an aggregate in ${where}`, e.length);
      }
      case 'literal': {
        const v = e.value;
        return () => v;
      }
      case 'interval': {
        const ms = e.ms;
        return () => ms;
      }
      case 'call': {
        if (AGGREGATES.has(e.name)) {
          const slot = this.aggregate(e);
          return (_k, a) => a[slot];
        }
        if (WINDOW_FUNCTIONS.has(e.name)) this.fail(e.pos, `${e.name} may only appear in GROUP BY; select window_start and window_end instead`, e.length);
        const f = own(SCALAR_FUNCTIONS, e.name);
        if (f === undefined) this.fail(e.pos, `unknown function ${e.name}${suggestion(e.name, [...Object.keys(SCALAR_FUNCTIONS), ...AGGREGATES])}`, e.name.length);
        const args = e.args.map((x) => this.group(x, keys, keyAliases, where));
        return (k, a, s, end) => f.fn(args.map((g) => g(k, a, s, end)), Date.now());
      }
      default:
        return this.#composite(e, (x) => this.group(x, keys, keyAliases, where));
    }
  }
}

function options(sql: string, raw: Readonly<Record<string, string>>, pos: Pos): ViewOptions {
  const out = { ...DEFAULT_VIEW_OPTIONS };
  const duration = (key: string, v: string): number => {
    const ms = parseDuration(v);
    if (ms === undefined) throw sqlError('SQL_PLAN', sql, pos, `option ${key} must be a duration such as '10s', '5 minutes' or '24h' (got '${v}')`, 6);
    return ms;
  };
  for (const [key, v] of Object.entries(raw)) {
    switch (key) {
      case 'max_lateness':
        out.maxLatenessMs = duration(key, v);
        break;
      case 'idle_timeout':
        out.idleTimeoutMs = duration(key, v);
        break;
      case 'retention':
        out.retentionMs = duration(key, v);
        break;
      case 'refresh':
        out.refreshMs = Math.max(50, duration(key, v));
        break;
      case 'memory_budget': {
        const bytes = parseSize(v);
        if (bytes === undefined || bytes < 1024 * 1024) throw sqlError('SQL_PLAN', sql, pos, `option memory_budget must be a size of at least 1MB such as '256MB' or '2GB' (got '${v}')`, 6);
        out.memoryBudgetBytes = bytes;
        break;
      }
      case 'start':
        if (v !== 'earliest' && v !== 'latest') throw sqlError('SQL_PLAN', sql, pos, `option start must be 'earliest' or 'latest' (got '${v}')`, 6);
        out.start = v;
        break;
      default:
        throw sqlError('SQL_PLAN', sql, pos, `unknown view option ${key}${suggestion(key, OPTION_NAMES)}`, 6);
    }
  }
  return out;
}

function intervalArg(p: Planner, call: Extract<Expr, { kind: 'call' }>, i: number, what: string): number {
  const a = call.args[i];
  if (a === undefined || a.kind !== 'interval') p.fail((a ?? call).pos, `${call.name}: ${what} must be an INTERVAL, e.g. INTERVAL '5' MINUTE`, a === undefined ? call.length : 8);
  return a.ms;
}

/**
 * Plans `CREATE VIEW name AS SELECT …` (or a bare SELECT with `name` given) into a streaming view plan:
 * the source stream, window, filter, joins, group keys, aggregates and output columns.
 */
export function planView(sql: string, catalog: Catalog, nameIfSelect?: string): ViewPlan {
  const stmt = parse(sql);
  const select: Select = stmt.kind === 'create_view' ? stmt.select : stmt;
  const name = stmt.kind === 'create_view' ? stmt.name : nameIfSelect;
  if (name === undefined) throw sqlError('SQL_PLAN', sql, select.pos, 'a view needs a name: CREATE VIEW name AS SELECT …', 6);
  const opts = options(sql, stmt.kind === 'create_view' ? stmt.options : {}, stmt.pos);
  if (select.star) throw sqlError('SQL_PLAN', sql, select.pos, 'a view must name its columns (SELECT * is for queries)', 6);
  if (select.orderBy.length > 0 || select.limit !== undefined) {
    throw sqlError('SQL_PLAN', sql, select.pos, 'ORDER BY and LIMIT belong in queries over the view, not in its definition', 6);
  }
  const streams = catalog.streamNames();
  const source = select.from.name;
  // FROM events: every event type (no schema to check columns against); the type is the `type` column.
  const allStreams = source === 'events' && !streams.includes('events');
  if (!streams.includes(source) && !allStreams) {
    throw sqlError('SQL_PLAN', sql, select.from.pos, `unknown stream ${source}${suggestion(source, [...streams, 'events'])}; a stream is an event type with a schema, and FROM events reads them all`, select.from.length);
  }
  const tables = select.joins.map((j) => {
    const columns = catalog.tableColumns(j.table.name);
    if (columns === undefined) {
      throw sqlError('SQL_PLAN', sql, j.table.pos, `unknown table ${j.table.name}${suggestion(j.table.name, catalog.tableNames())}`, j.table.length);
    }
    return { name: j.table.name, alias: j.table.alias ?? j.table.name, columns };
  });
  const p: Planner = new Planner({ sql, catalog, source, sourceAlias: select.from.alias ?? source, fields: allStreams ? undefined : catalog.streamFields(source), tables, rows: 'events' });

  const joins: JoinSpec[] = select.joins.map((j, ti) => {
    const on = j.on;
    const t = tables[ti];
    const isTableSide = (x: Expr) => x.kind === 'column' && ((x.path.length === 2 && (x.path[0] === t.alias || x.path[0] === t.name)));
    if (on.kind !== 'binary' || on.op !== '=' || (!isTableSide(on.left) && !isTableSide(on.right))) {
      p.fail(on.pos, `JOIN ${t.name} needs ON <event expression> = ${t.alias}.<column>`);
    }
    const tableSide = (isTableSide(on.left) ? on.left : on.right) as Extract<Expr, { kind: 'column' }>;
    const probeSide = tableSide === on.left ? on.right : on.left;
    const column = tableSide.path[1];
    if (!t.columns.includes(column)) p.fail(tableSide.pos, `table ${t.name} has no column ${column}${suggestion(column, t.columns)}`, tableSide.length);
    return { table: t.name, kind: j.kind, probe: p.row(probeSide, 'ON'), column };
  });

  const filter = select.where === undefined ? undefined : p.row(select.where, 'WHERE');
  let window: WindowSpec = { kind: 'none' };
  let time: 'received_at' | 'event_time' = 'received_at';
  const keyExprs: Expr[] = [];
  const aliases = new Map(select.items.filter((i) => i.alias !== undefined).map((i) => [i.alias!, i.expr]));
  for (const g of select.groupBy) {
    if (g.kind === 'call' && WINDOW_FUNCTIONS.has(g.name)) {
      if (window.kind !== 'none') p.fail(g.pos, 'only one window function per view', g.length);
      const t = g.args[0];
      if (t === undefined || t.kind !== 'column' || t.path.length !== 1 || (t.path[0] !== 'received_at' && t.path[0] !== 'event_time')) {
        p.fail((t ?? g).pos, `${g.name} windows over received_at or event_time`, t?.kind === 'column' ? t.length : 1);
      }
      time = t.path[0] as 'received_at' | 'event_time';
      const argc = g.name === 'HOP' ? 3 : 2;
      if (g.args.length !== argc) p.fail(g.pos, `${g.name} takes ${argc} arguments`, g.length);
      if (g.name === 'TUMBLE') window = { kind: 'tumble', sizeMs: intervalArg(p, g, 1, 'the size') };
      else if (g.name === 'SESSION') window = { kind: 'session', gapMs: intervalArg(p, g, 1, 'the gap') };
      else {
        const slideMs = intervalArg(p, g, 1, 'the slide');
        const sizeMs = intervalArg(p, g, 2, 'the size');
        if (sizeMs < slideMs) p.fail(g.pos, 'HOP: the size must be at least the slide', g.length);
        window = { kind: 'hop', slideMs, sizeMs };
      }
      continue;
    }
    // GROUP BY may name a select alias; as in PostgreSQL, a column of the input (a field or a metadata column
    // such as `key`) of the same name wins over the alias.
    const byAlias = g.kind === 'column' && g.path.length === 1 ? aliases.get(g.path[0]) : undefined;
    const inputColumn = g.kind === 'column' && (p.fieldTypes(g) !== undefined || (g.path.length === 1 && (METADATA_COLUMNS as readonly string[]).includes(g.path[0]!)));
    keyExprs.push(byAlias !== undefined && !inputColumn ? byAlias : g);
  }
  const keys = keyExprs.map((k) => {
    const item = select.items.find((i) => sameExpr(i.expr, k));
    return { name: item?.alias ?? (k.kind === 'column' ? k.path[k.path.length - 1] : exprText(k)), eval: p.row(k, 'GROUP BY') };
  });
  const keyAliases = keys.map((k) => k.name);

  const outputs: OutputColumn[] = [];
  const used = new Set<string>(['window_start', 'window_end']);
  for (const item of select.items) {
    const e = item.expr;
    const evalFn = p.group(e, keyExprs, keyAliases, 'SELECT');
    let base = item.alias ?? (e.kind === 'column' ? e.path[e.path.length - 1] : e.kind === 'call' ? e.name.toLowerCase() : 'expr');
    if (item.alias === undefined && used.has(base)) {
      let n = 2;
      while (used.has(`${base}_${n}`)) n++;
      base = `${base}_${n}`;
    } else if (used.has(base)) p.fail(item.pos, `duplicate column name ${base}`);
    used.add(base);
    const keySlot = keyExprs.findIndex((k) => sameExpr(k, e));
    const aggSlot = e.kind === 'call' && AGGREGATES.has(e.name) ? p.aggregate(e) : undefined;
    outputs.push({ name: base, eval: evalFn, agg: aggSlot, key: keySlot >= 0 ? keySlot : undefined });
  }
  const having = select.having === undefined ? undefined : p.group(select.having, keyExprs, keyAliases, 'HAVING');
  if (p.aggs.length === 0 && window.kind === 'none' && keys.length === 0) {
    throw sqlError('SQL_PLAN', sql, select.pos, 'a view aggregates: use an aggregate such as COUNT(*), GROUP BY, or a window', 6);
  }
  return { name, sql, source: allStreams ? '*' : source, time, window, options: opts, filter, joins, keys, aggs: p.aggs, outputs, having, dataFields: [...p.dataFields], usesKey: p.usesKey };
}

/** A column of a view, as queries over the view see it. */
export interface ViewColumn {
  readonly name: string;
  /** The aggregate that produced it, if any (sketch columns can be merged again). */
  readonly agg: AggSpec | undefined;
}

export interface QueryCatalog {
  viewNames(): readonly string[];
  viewColumns(name: string): readonly ViewColumn[] | undefined;
  /** The view's window (overlapping HOP windows limit how a query may re-aggregate). */
  viewWindow(name: string): WindowSpec | undefined;
}

export interface QueryPlan {
  readonly view: string;
  readonly filter: RowEvaluator | undefined;
  /** Aggregating queries: keys, aggregates, outputs and HAVING as in a view (no window). */
  readonly aggregate:
    | { readonly keys: readonly { readonly name: string; readonly eval: RowEvaluator }[]; readonly aggs: readonly AggSpec[]; readonly outputs: readonly OutputColumn[]; readonly having: GroupEvaluator | undefined }
    | undefined;
  /** Non-aggregating queries: the projected columns. */
  readonly columns: readonly { readonly name: string; readonly eval: RowEvaluator }[];
  readonly orderBy: readonly { readonly column: string; readonly desc: boolean }[];
  readonly limit: number | undefined;
}

/**
 * Plans `SELECT … FROM <view> [WHERE] [GROUP BY] [HAVING] [ORDER BY] [LIMIT]`. Re-aggregation follows the
 * columns' meaning: SUM/MIN/MAX/COUNT over numbers, and APPROX_COUNT_DISTINCT / APPROX_PERCENTILE / TOP_K over a
 * column the view computed with the same function merge the partial sketches (unique readers per hour from
 * five-minute windows is a union, not a sum).
 */
export function planQuery(sql: string, catalog: QueryCatalog): QueryPlan {
  const stmt = parse(sql);
  if (stmt.kind !== 'select') throw sqlError('SQL_PLAN', sql, stmt.pos, 'POST /v1/query runs SELECT; create views with PUT /v1/views/:name', 6);
  const select = stmt;
  const view = select.from.name;
  const cols = catalog.viewColumns(view);
  if (cols === undefined) {
    throw sqlError('SQL_PLAN', sql, select.from.pos, `unknown view ${view}${suggestion(view, catalog.viewNames())}`, select.from.length);
  }
  if (select.joins.length > 0) throw sqlError('SQL_PLAN', sql, select.joins[0].table.pos, 'queries over views do not join; join in the view', select.joins[0].table.length);
  const properties: Record<string, FieldInfo> = {};
  for (const c of cols) properties[c.name] = { open: true };
  const p: Planner = new Planner({
    sql,
    catalog: { streamNames: () => [view], streamFields: () => ({ properties, open: false }), tableNames: () => [], tableColumns: () => undefined },
    source: view,
    sourceAlias: select.from.alias ?? view,
    fields: { properties, open: false },
    tables: [],
    rows: 'view',
  });
  const filter = select.where === undefined ? undefined : p.row(select.where, 'WHERE');
  const aggregating = select.groupBy.length > 0 || select.having !== undefined || select.items.some((i) => exprHasAgg(i.expr));
  let aggregate: QueryPlan['aggregate'];
  let columns: { name: string; eval: RowEvaluator }[] = [];
  const names: string[] = [];
  if (aggregating) {
    if (select.star) throw sqlError('SQL_PLAN', sql, select.pos, 'SELECT * cannot be combined with GROUP BY or aggregates', 6);
    const keyExprs = [...select.groupBy];
    const keys = keyExprs.map((k) => ({ name: k.kind === 'column' ? k.path[k.path.length - 1] : exprText(k), eval: p.row(k, 'GROUP BY') }));
    const keyAliases = keys.map((k) => k.name);
    const outputs: OutputColumn[] = select.items.map((item) => {
      const name = item.alias ?? (item.expr.kind === 'column' ? item.expr.path[item.expr.path.length - 1] : item.expr.kind === 'call' ? item.expr.name.toLowerCase() : 'expr');
      names.push(name);
      const keySlot = keyExprs.findIndex((k) => sameExpr(k, item.expr));
      const agg = item.expr.kind === 'call' && AGGREGATES.has(item.expr.name) ? p.aggregate(item.expr) : undefined;
      return { name, eval: p.group(item.expr, keyExprs, keyAliases, 'SELECT'), agg, key: keySlot >= 0 ? keySlot : undefined };
    });
    const having = select.having === undefined ? undefined : p.group(select.having, keyExprs, keyAliases, 'HAVING');
    refuseOverlapCounting(sql, select, catalog.viewWindow(view), view);
    // Sketch columns re-aggregated by the function that made them merge; keep the view's precision.
    const aggs = p.aggs.map((a) => {
      const source = cols.find((c) => c.name === a.argColumn)?.agg;
      if (source !== undefined && source.fn === a.fn && (a.fn === 'approx_count_distinct' || a.fn === 'approx_percentile' || a.fn === 'top_k')) {
        // A sketch merges only with sketches of its own precision or accuracy: the view's, whatever the query says.
        return { ...a, param: a.fn === 'approx_count_distinct' ? source.param : a.param, accuracy: source.accuracy, merge: true };
      }
      return a;
    });
    aggregate = { keys, aggs, outputs, having };
  } else {
    const items = select.star ? cols.map((c) => ({ expr: { kind: 'column', path: [c.name], pos: select.pos, length: 1 } as Expr, alias: c.name })) : select.items;
    columns = items.map((item) => {
      const name = item.alias ?? (item.expr.kind === 'column' ? item.expr.path[item.expr.path.length - 1] : exprText(item.expr));
      names.push(name);
      return { name, eval: p.row(item.expr, 'SELECT') };
    });
  }
  const orderBy = select.orderBy.map((o) => {
    const name = o.expr.kind === 'column' && o.expr.path.length === 1 ? o.expr.path[0] : exprText(o.expr);
    if (!names.includes(name)) p.fail(o.expr.pos, `ORDER BY ${name}: order by a selected column or its alias${suggestion(name, names)}`);
    return { column: name, desc: o.desc };
  });
  return { view, filter, aggregate, columns, orderBy, limit: select.limit };
}

/** Aggregates that count an input as often as it appears: over overlapping windows they count an event several times. */
const ADDITIVE = new Set(['SUM', 'AVG', 'APPROX_PERCENTILE', 'TOP_K']);

/**
 * A HOP view whose size exceeds its slide holds each event in size/slide windows. Adding up its rows across
 * windows counts every event that many times (SUM(views) over a 5-minute HOP sliding by 1 minute is five times the
 * real views), so such a query must keep windows apart: GROUP BY window_start (or window_end), or filter one window
 * with `window_start = …` / `window_end = …`. MIN, MAX, COUNT of rows and merges of APPROX_COUNT_DISTINCT (a union)
 * are unaffected by the overlap.
 */
function refuseOverlapCounting(sql: string, select: Select, window: WindowSpec | undefined, view: string): void {
  if (window?.kind !== 'hop' || window.sizeMs <= window.slideMs) return;
  const isWindowColumn = (e: Expr) => e.kind === 'column' && e.path.length === 1 && (e.path[0] === 'window_start' || e.path[0] === 'window_end');
  if (select.groupBy.some(isWindowColumn)) return;
  const pinned = (e: Expr | undefined): boolean => {
    if (e === undefined || e.kind !== 'binary') return false;
    if (e.op === 'AND') return pinned(e.left) || pinned(e.right);
    return e.op === '=' && (isWindowColumn(e.left) || isWindowColumn(e.right));
  };
  if (pinned(select.where)) return;
  // APPROX_PERCENTILE and TOP_K merge weighted counts, so they repeat overlapping events as SUM does.
  const offending = findCall(select, (c) => ADDITIVE.has(c.name));
  if (offending === undefined) return;
  const copies = window.sizeMs / window.slideMs;
  const n = Number.isInteger(copies) ? String(copies) : `up to ${Math.ceil(copies)}`;
  throw sqlError(
    'SQL_PLAN',
    sql,
    offending.pos,
    `${exprText(offending)} adds up rows of overlapping windows: ${view} is a HOP window of ${fmtMs(window.sizeMs)} every ${fmtMs(window.slideMs)}, so each event lies in ${n} windows and would be counted ${n} times. GROUP BY window_start, pick one window (WHERE window_start = …), or aggregate a TUMBLE view`,
    offending.length,
  );
}

function fmtMs(ms: number): string {
  for (const [unit, size] of [['day', 86_400_000], ['hour', 3_600_000], ['minute', 60_000], ['second', 1000]] as const) {
    if (ms % size === 0) return `${ms / size} ${unit}${ms / size === 1 ? '' : 's'}`;
  }
  return `${ms} ms`;
}

function findCall(select: Select, match: (c: Extract<Expr, { kind: 'call' }>) => boolean): Extract<Expr, { kind: 'call' }> | undefined {
  const visit = (e: Expr | undefined): Extract<Expr, { kind: 'call' }> | undefined => {
    if (e === undefined) return undefined;
    switch (e.kind) {
      case 'call':
        return match(e) ? e : e.args.map(visit).find((x) => x !== undefined);
      case 'binary':
        return visit(e.left) ?? visit(e.right);
      case 'unary':
        return visit(e.operand);
      case 'case':
        return visit(e.operand) ?? e.whens.flatMap(([a, b]) => [visit(a), visit(b)]).find((x) => x !== undefined) ?? visit(e.otherwise);
      case 'in':
        return visit(e.expr) ?? e.list.map(visit).find((x) => x !== undefined);
      case 'between':
        return visit(e.expr) ?? visit(e.low) ?? visit(e.high);
      case 'like':
        return visit(e.expr) ?? visit(e.pattern);
      case 'isnull':
      case 'cast':
        return visit(e.expr);
      default:
        return undefined;
    }
  };
  return [...select.items.map((i) => i.expr), select.having].map(visit).find((x) => x !== undefined);
}

function exprHasAgg(e: Expr): boolean {
  switch (e.kind) {
    case 'call':
      return AGGREGATES.has(e.name) || e.args.some(exprHasAgg);
    case 'binary':
      return exprHasAgg(e.left) || exprHasAgg(e.right);
    case 'unary':
      return exprHasAgg(e.operand);
    case 'case':
      return (e.operand !== undefined && exprHasAgg(e.operand)) || e.whens.some(([a, b]) => exprHasAgg(a) || exprHasAgg(b)) || (e.otherwise !== undefined && exprHasAgg(e.otherwise));
    case 'in':
      return exprHasAgg(e.expr) || e.list.some(exprHasAgg);
    case 'between':
      return exprHasAgg(e.expr) || exprHasAgg(e.low) || exprHasAgg(e.high);
    case 'like':
      return exprHasAgg(e.expr) || exprHasAgg(e.pattern);
    case 'isnull':
    case 'cast':
      return exprHasAgg(e.expr);
    default:
      return false;
  }
}
