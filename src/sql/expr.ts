/**
 * Scalar semantics shared by views and queries: SQL-style NULLs (an operation on NULL is NULL; WHERE treats
 * NULL as false), comparisons across numbers and strings, LIKE, CAST and the scalar functions.
 */
export type Value = unknown;

/**
 * Values come from untrusted JSON: an object may carry a `toString` or `valueOf` that is not a function, on which
 * String() and Number() throw. These conversions never throw: objects and arrays are text as JSON and not numbers.
 */
export function toNumber(v: Value): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return v.trim() === '' ? Number.NaN : Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return Number.NaN;
}

export function toText(v: Value): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null || v === undefined) return '';
  return JSON.stringify(v) ?? '';
}

export function isNull(v: Value): boolean {
  return v === null || v === undefined;
}

export function truthy(v: Value): boolean {
  return v === true;
}

export function compare(a: Value, b: Value): number | null {
  if (isNull(a) || isNull(b)) return null;
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return toNumber(a) - toNumber(b);
  const sa = toText(a);
  const sb = toText(b);
  if (typeof a === 'number' && typeof b === 'string' && !Number.isNaN(toNumber(b))) return compare(a, toNumber(b));
  if (typeof b === 'number' && typeof a === 'string' && !Number.isNaN(toNumber(a))) return compare(toNumber(a), b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

export function arith(op: string, a: Value, b: Value): Value {
  if (isNull(a) || isNull(b)) return null;
  const x = toNumber(a);
  const y = toNumber(b);
  if (Number.isNaN(x) || Number.isNaN(y)) return null;
  switch (op) {
    case '+':
      return x + y;
    case '-':
      return x - y;
    case '*':
      return x * y;
    case '/':
      return y === 0 ? null : x / y;
    default:
      return y === 0 ? null : x % y;
  }
}

const likeCache = new Map<string, RegExp>();
export function like(v: Value, pattern: Value): boolean | null {
  if (isNull(v) || isNull(pattern)) return null;
  const p = toText(pattern);
  let re = likeCache.get(p);
  if (re === undefined) {
    re = new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.')}$`, 's');
    if (likeCache.size > 1000) likeCache.clear();
    likeCache.set(p, re);
  }
  return re.test(toText(v));
}

export const CAST_TYPES: Record<string, 'string' | 'integer' | 'number' | 'boolean' | 'timestamp'> = {
  VARCHAR: 'string', STRING: 'string', TEXT: 'string', CHAR: 'string',
  BIGINT: 'integer', INT: 'integer', INTEGER: 'integer', SMALLINT: 'integer',
  DOUBLE: 'number', FLOAT: 'number', REAL: 'number', DECIMAL: 'number', NUMERIC: 'number',
  BOOLEAN: 'boolean', BOOL: 'boolean', TIMESTAMP: 'timestamp',
};

export function cast(v: Value, type: string): Value {
  if (isNull(v)) return null;
  switch (CAST_TYPES[type]) {
    case 'string':
      return toText(v);
    case 'integer': {
      const n = toNumber(v);
      return Number.isFinite(n) ? Math.trunc(n) : null;
    }
    case 'number': {
      const n = toNumber(v);
      return Number.isFinite(n) ? n : null;
    }
    case 'boolean':
      if (typeof v === 'boolean') return v;
      if (typeof v === 'number') return v !== 0;
      return v === 'true' ? true : v === 'false' ? false : null;
    case 'timestamp': {
      if (typeof v === 'number') return v;
      const ms = Date.parse(toText(v));
      return Number.isFinite(ms) ? ms : null;
    }
    default:
      return null;
  }
}

const TRUNC_MS: Record<string, number> = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 };

export interface ScalarFunction {
  readonly minArgs: number;
  readonly maxArgs: number;
  readonly fn: (args: Value[], nowMs: number) => Value;
}

export const SCALAR_FUNCTIONS: Record<string, ScalarFunction> = {
  COALESCE: { minArgs: 1, maxArgs: 64, fn: (a) => a.find((v) => !isNull(v)) ?? null },
  LOWER: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : toText(v).toLowerCase()) },
  UPPER: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : toText(v).toUpperCase()) },
  LENGTH: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : toText(v).length) },
  ABS: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : Math.abs(toNumber(v))) },
  ROUND: {
    minArgs: 1,
    maxArgs: 2,
    fn: ([v, d]) => {
      if (isNull(v)) return null;
      const f = 10 ** toNumber(d ?? 0);
      return Math.round(toNumber(v) * f) / f;
    },
  },
  FLOOR: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : Math.floor(toNumber(v))) },
  CEIL: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : Math.ceil(toNumber(v))) },
  NOW: { minArgs: 0, maxArgs: 0, fn: (_a, now) => now },
  DATE_TRUNC: {
    minArgs: 2,
    maxArgs: 2,
    fn: ([unit, t]) => {
      if (isNull(unit) || isNull(t)) return null;
      const ms = typeof t === 'number' ? t : Date.parse(toText(t));
      const u = toText(unit).toLowerCase();
      if (u in TRUNC_MS) return Math.floor(ms / TRUNC_MS[u]) * TRUNC_MS[u];
      const d = new Date(ms);
      if (u === 'month') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      if (u === 'year') return Date.UTC(d.getUTCFullYear(), 0, 1);
      if (u === 'week') {
        const day = Math.floor(ms / 86_400_000) * 86_400_000;
        return day - ((new Date(day).getUTCDay() + 6) % 7) * 86_400_000;
      }
      return null;
    },
  },
};
