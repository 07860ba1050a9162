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
  if (typeof a === 'number' && typeof b === 'string' && !Number.isNaN(toNumber(b))) return compare(a, toNumber(b));
  if (typeof b === 'number' && typeof a === 'string' && !Number.isNaN(toNumber(a))) return compare(toNumber(a), b);
  return compareText(toText(a), toText(b));
}

/** ORDER BY's order: `compare`, with NULL above every value (as PostgreSQL: last ascending, first descending). */
export function compareForOrder(a: Value | undefined, b: Value | undefined): number {
  const an = a === undefined || isNull(a);
  const bn = b === undefined || isNull(b);
  if (an || bn) return an === bn ? 0 : an ? 1 : -1;
  return compare(a, b) ?? 0;
}

/**
 * Strings in code point order (= the byte order of their UTF-8, as DuckDB and PostgreSQL's C collation sort). JS's
 * `<` compares UTF-16 units, which puts every character above U+FFFF (a surrogate pair, D800–DFFF) before
 * U+E000–U+FFFF.
 */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length < b.length ? -1 : 1;
  let x = a.charCodeAt(i);
  let y = b.charCodeAt(i);
  if (x >= 0xd800 && y >= 0xd800) {
    // Move surrogates above U+E000–U+FFFF.
    x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
    y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
  }
  return x < y ? -1 : 1;
}

/** Characters (code points) in a string; a surrogate pair is one character. */
export function charLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/**
 * SUBSTRING(s, start[, length]) over characters, positions from 1, as in PostgreSQL: the characters at positions
 * start … start + length - 1 that exist (SUBSTRING('hello', 0, 2) = 'h'). A negative length is NULL (PostgreSQL
 * refuses it; a view cannot stop on one row).
 */
export function substring(s: string, start: number, length?: number): string | null {
  if (!Number.isFinite(start) || (length !== undefined && !(length >= 0))) return null;
  const from = Math.max(1, Math.trunc(start));
  const to = length === undefined ? Infinity : Math.trunc(start) + Math.trunc(length); // exclusive
  if (to <= from) return '';
  if (charLength(s) === s.length) return s.slice(from - 1, to === Infinity ? undefined : to - 1);
  const chars = Array.from(s);
  return chars.slice(from - 1, to === Infinity ? undefined : to - 1).join('');
}

/** Rounds half away from zero, as SQL's ROUND does (Math.round takes -2.5 to -2). */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
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

const likeCache = new Map<string, (text: string) => boolean>();
export function like(v: Value, pattern: Value): boolean | null {
  if (isNull(v) || isNull(pattern)) return null;
  const p = toText(pattern);
  let m = likeCache.get(p);
  if (m === undefined) {
    m = compileLike(p);
    if (likeCache.size > 1000) likeCache.clear();
    likeCache.set(p, m);
  }
  return m(toText(v));
}

/**
 * A LIKE pattern as a matcher that never backtracks (a regular expression for '%a%a%a%a%a%a%b' took seconds on a
 * long string of a's): the pattern is split at `%` into segments, the first anchored at the start, the last at the
 * end, and each middle one placed at its leftmost match after the previous — which finds a match whenever one exists.
 * Time is at most text length × pattern length. `_` is one character (code point), so '🚀b' LIKE '_b'.
 */
function compileLike(pattern: string): (text: string) => boolean {
  const segments: string[][] = [[]];
  for (const c of pattern) {
    if (c === '%') segments.push([]);
    else segments[segments.length - 1]!.push(c);
  }
  const first = segments[0]!;
  const last = segments[segments.length - 1]!;
  const middle = segments.slice(1, -1).filter((s) => s.length > 0);
  return (text) => {
    // Indexable by code point: a string without surrogates indexes as it is.
    const t: ArrayLike<string> = /[\uD800-\uDFFF]/.test(text) ? Array.from(text) : text;
    const n = t.length;
    const at = (seg: readonly string[], i: number): boolean => {
      for (let k = 0; k < seg.length; k++) if (seg[k] !== '_' && seg[k] !== t[i + k]) return false;
      return true;
    };
    if (segments.length === 1) return n === first.length && at(first, 0);
    const end = n - last.length;
    if (first.length > end || !at(first, 0) || !at(last, end)) return false;
    let i = first.length;
    for (const seg of middle) {
      let found = -1;
      for (let j = i; j + seg.length <= end; j++) {
        if (at(seg, j)) {
          found = j;
          break;
        }
      }
      if (found < 0) return false;
      i = found + seg.length;
    }
    return true;
  };
}

export const CAST_TYPES: Record<string, 'string' | 'integer' | 'number' | 'boolean' | 'timestamp'> = {
  VARCHAR: 'string', STRING: 'string', TEXT: 'string', CHAR: 'string',
  BIGINT: 'integer', INT: 'integer', INTEGER: 'integer', SMALLINT: 'integer',
  DOUBLE: 'number', FLOAT: 'number', REAL: 'number', DECIMAL: 'number', NUMERIC: 'number',
  BOOLEAN: 'boolean', BOOL: 'boolean', TIMESTAMP: 'timestamp',
};

/**
 * A name looked up in a table of names (functions, types, units) or in an event's object: own properties only, so
 * `toString`, `constructor` or `__proto__` are never found on Object.prototype.
 */
export function own<T>(o: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(o, name) ? o[name] : undefined;
}

export function cast(v: Value, type: string): Value {
  if (isNull(v)) return null;
  switch (own(CAST_TYPES, type)) {
    case 'string':
      return toText(v);
    case 'integer': {
      // Rounded half away from zero (as PostgreSQL and DuckDB cast a NUMERIC; a DOUBLE they round half to even); beyond 64 bits NULL (they refuse it).
      const n = toNumber(v);
      return Number.isFinite(n) && Math.abs(n) < 2 ** 63 ? roundHalfAway(n) : null;
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

/** A numeric function of one argument: NULL for NULL and for what is not a number. */
function numeric(v: Value, f: (x: number) => number): Value {
  const x = toNumber(v);
  return isNull(v) || Number.isNaN(x) ? null : f(x);
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
  LENGTH: { minArgs: 1, maxArgs: 1, fn: ([v]) => (isNull(v) ? null : charLength(toText(v))) },
  SUBSTR: { minArgs: 2, maxArgs: 3, fn: (a) => SCALAR_FUNCTIONS.SUBSTRING.fn(a, 0) },
  SUBSTRING: { minArgs: 2, maxArgs: 3, fn: ([v, start, n]) => (isNull(v) || isNull(start) || (n !== undefined && isNull(n)) ? null : substring(toText(v), toNumber(start), n === undefined ? undefined : toNumber(n))) },
  ABS: { minArgs: 1, maxArgs: 1, fn: ([v]) => numeric(v, Math.abs) },
  ROUND: {
    minArgs: 1,
    maxArgs: 2,
    fn: ([v, d]) => {
      if (isNull(v) || isNull(d ?? 0)) return null;
      const x = toNumber(v);
      const digits = Math.trunc(toNumber(d ?? 0));
      if (Number.isNaN(x) || Number.isNaN(digits)) return null;
      if (digits < 0) {
        const f = 10 ** -digits;
        return roundHalfAway(x / f) * f;
      }
      const f = 10 ** digits;
      return roundHalfAway(x * f) / f;
    },
  },
  FLOOR: { minArgs: 1, maxArgs: 1, fn: ([v]) => numeric(v, Math.floor) },
  CEIL: { minArgs: 1, maxArgs: 1, fn: ([v]) => numeric(v, Math.ceil) },
  NOW: { minArgs: 0, maxArgs: 0, fn: (_a, now) => now },
  DATE_TRUNC: {
    minArgs: 2,
    maxArgs: 2,
    fn: ([unit, t]) => {
      if (isNull(unit) || isNull(t)) return null;
      const ms = typeof t === 'number' ? t : Date.parse(toText(t));
      const u = toText(unit).toLowerCase();
      const unitMs = own(TRUNC_MS, u);
      if (unitMs !== undefined) return Math.floor(ms / unitMs) * unitMs;
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
