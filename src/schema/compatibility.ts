/**
 * Backward compatibility between two JSON Schemas: may the new version reject an event that the previous one
 * accepted? Returns the reasons it may (empty = compatible), each `path: what changed`, where path is the place in
 * the event (`the event`, `order.items[]`, `tags[0]`).
 *
 * The check models the validator events are checked with (`createAjv` in compiler.ts: Ajv, draft 2020-12,
 * `strict: false`) and is conservative: where it cannot prove that a keyword still accepts everything it accepted
 * (a changed pattern, oneOf, a keyword it does not model), it reports a reason naming the keyword and the path.
 * Keywords that Ajv does not implement are ignored by it, so changing them changes nothing and is allowed.
 *
 * One deliberate leniency: adding an optional property to an object that was open (no `additionalProperties`,
 * or `true`, and no `patternProperties` matching the name) is allowed, although strictly the old schema accepted
 * any value under that name; refusing it would forbid the most common evolution of all. It applies only where a
 * wider schema means more events are accepted (not inside `not`, nor where `contains` counts matches).
 */
import { linearRegExp, UnsupportedPatternError } from './linear-regexp.js';
type Schema = Record<string, unknown>;
type S = Schema | boolean;

/** What the check does with each keyword Ajv (configured as in compiler.ts) implements. */
export type KeywordTreatment = 'modelled' | 'equal-only' | 'unsupported';

/**
 * Every keyword the validator implements (`Object.keys(ajv.RULES.all)`; a test keeps this table and Ajv in step).
 * `modelled`: compared by meaning. `equal-only`: any change is refused. `unsupported`: any change anywhere in a
 * schema that uses it is refused, because an unchanged use can change meaning (dynamic scopes).
 */
export const KEYWORDS: Readonly<Record<string, KeywordTreatment>> = {
  $comment: 'modelled', $ref: 'modelled', type: 'modelled', nullable: 'modelled', const: 'modelled', enum: 'modelled',
  maximum: 'modelled', minimum: 'modelled', exclusiveMaximum: 'modelled', exclusiveMinimum: 'modelled',
  multipleOf: 'modelled', maxLength: 'modelled', minLength: 'modelled', pattern: 'modelled', format: 'modelled',
  maxProperties: 'modelled', minProperties: 'modelled', required: 'modelled', dependentRequired: 'modelled',
  dependencies: 'modelled', properties: 'modelled', patternProperties: 'modelled', additionalProperties: 'modelled',
  propertyNames: 'modelled', dependentSchemas: 'modelled', maxItems: 'modelled', minItems: 'modelled',
  uniqueItems: 'modelled', prefixItems: 'modelled', items: 'modelled', contains: 'modelled', maxContains: 'modelled',
  minContains: 'modelled', allOf: 'modelled', anyOf: 'modelled', oneOf: 'modelled', not: 'modelled', if: 'modelled',
  then: 'modelled', else: 'modelled', unevaluatedProperties: 'modelled', unevaluatedItems: 'modelled',
  id: 'equal-only', formatMaximum: 'equal-only', formatMinimum: 'equal-only', formatExclusiveMaximum: 'equal-only',
  formatExclusiveMinimum: 'equal-only',
  $dynamicRef: 'unsupported', $dynamicAnchor: 'unsupported', $recursiveRef: 'unsupported', $recursiveAnchor: 'unsupported',
};

export interface CompatibilityOptions {
  /**
   * Allow adding an optional property to an open object (see above). Default true; false gives the exact check
   * (every event the previous schema accepted, the new one accepts), which the property tests verify with Ajv.
   */
  readonly lenient?: boolean;
}

export function backwardIncompatibilities(previous: unknown, next: unknown, options: CompatibilityOptions = {}): string[] {
  try {
    return incompatibilities(previous, next, options);
  } catch (err) {
    // Every walk here recurses; a schema nested thousands deep must get an answer, not a crash.
    if (!(err instanceof RangeError)) throw err;
    return ['the event: the schemas are nested too deeply to compare'];
  }
}

function incompatibilities(previous: unknown, next: unknown, options: CompatibilityOptions): string[] {
  if (deepEqual(previous, next)) return [];
  // The references first: they are where the meaning depends on the (dynamic) scope.
  for (const keywords of [['$dynamicRef', '$recursiveRef'], ['$dynamicAnchor', '$recursiveAnchor']]) {
    for (const root of [next, previous]) {
      const found = findUnsupported(root as S, '', keywords);
      if (found !== undefined) {
        return [`${at(found.path)}: "${found.keyword}" is not supported by the compatibility check; a schema that uses it cannot change`];
      }
    }
  }
  const ctx: Ctx = {
    prevRoot: previous as S,
    nextRoot: next as S,
    prevRefs: !hasNestedId(previous, true),
    nextRefs: !hasNestedId(next, true),
    inProgress: new Map(),
    reverseInProgress: new Map(),
    budget: { steps: 0 },
  };
  const out: string[] = [];
  compare(previous as S, next as S, { path: '', depth: 0, lenient: options.lenient ?? true }, ctx, out);
  return [...new Set(out)];
}

interface Ctx {
  readonly prevRoot: S;
  readonly nextRoot: S;
  /** Whether each document's local `$ref`s resolve against its root (no `$id` below the root). */
  readonly prevRefs: boolean;
  readonly nextRefs: boolean;
  /** Pairs (previous, next) being compared, with the event depth they were entered at (recursive $refs). */
  readonly inProgress: Map<object, Map<object, number>>;
  /** The same for comparisons the other way round, so that a loop through `not` is recognised too. */
  readonly reverseInProgress: Map<object, Map<object, number>>;
  readonly budget: { steps: number };
}

/** The context for comparing the other way round (a new subschema against an old one, as inside `not`). */
function reversed(ctx: Ctx): Ctx {
  return {
    prevRoot: ctx.nextRoot,
    nextRoot: ctx.prevRoot,
    prevRefs: ctx.nextRefs,
    nextRefs: ctx.prevRefs,
    inProgress: ctx.reverseInProgress,
    reverseInProgress: ctx.inProgress,
    budget: ctx.budget,
  };
}

/** `true` as the previous schema: one object, so that recursion through it is recognised. */
const EMPTY: Schema = Object.freeze({});

/** Where in the event a comparison applies; `lenient` is false where the leniency above would be unsound. */
interface Pos {
  readonly path: string;
  readonly depth: number;
  readonly lenient: boolean;
}

/** Bounds the work on pathological schemas (nested anyOf of anyOf ...): past it, the check refuses. */
const MAX_STEPS = 200_000;

function at(path: string): string {
  return path === '' ? 'the event' : path;
}

function child(pos: Pos, name: string): Pos {
  return { ...pos, path: pos.path === '' ? name : `${pos.path}.${name}`, depth: pos.depth + 1 };
}

function suffixed(pos: Pos, suffix: string, deeper = true): Pos {
  return { ...pos, path: `${pos.path}${suffix}`, depth: pos.depth + (deeper ? 1 : 0) };
}

function labelled(pos: Pos, label: string, deeper = true): Pos {
  return { ...pos, path: `${at(pos.path)} (${label})`, depth: pos.depth + (deeper ? 1 : 0) };
}

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True for a schema that accepts everything: `true`, or an object with no keyword the validator implements. */
function acceptsAll(s: S): boolean {
  return s === true || (isObject(s) && !Object.keys(s).some((k) => k in KEYWORDS && k !== '$comment'));
}

function compare(prev: S, next: S, pos: Pos, ctx: Ctx, out: string[]): void {
  if (acceptsAll(next) || prev === false) return;
  if (same(prev, next, ctx)) return;
  if (++ctx.budget.steps > MAX_STEPS) {
    out.push(`${at(pos.path)}: the schemas are too complex to compare`);
    return;
  }
  const p: Schema = prev === true ? EMPTY : prev;
  if (next === false || next === true) {
    if (kindsOf(p).size > 0 && !conjuncts(p, ctx).some((c) => c === false)) {
      out.push(`${at(pos.path)}: the new schema is false, which rejects everything`);
    }
    return;
  }
  let byPrev = ctx.inProgress.get(p);
  const entered = byPrev?.get(next);
  if (entered !== undefined) {
    // Deeper in the event: by induction on the event's size, the pair holds if everything else does.
    if (pos.depth > entered) return;
    out.push(`${at(pos.path)}: a recursive "$ref" applies at the same place again; it cannot be checked`);
    return;
  }
  if (byPrev === undefined) ctx.inProgress.set(p, (byPrev = new Map()));
  byPrev.set(next, pos.depth);
  try {
    const reasons: string[] = [];
    compareOwn(p, next, pos, ctx, reasons);
    if (reasons.length > 0) {
      // The previous schema is the conjunction of its own keywords, its allOf members and its $ref target:
      // it is enough that one of them implies the new schema.
      for (const c of conjuncts(p, ctx)) {
        if (holds(c, next, pos, ctx)) return;
      }
    }
    out.push(...reasons);
  } finally {
    byPrev.delete(next);
  }
}

/** Whether `prev` provably implies `next` (no reasons). */
function holds(prev: S, next: S, pos: Pos, ctx: Ctx): boolean {
  const r: string[] = [];
  compare(prev, next, pos, ctx, r);
  return r.length === 0;
}

function conjuncts(p: Schema, ctx: Ctx): S[] {
  const list: S[] = Array.isArray(p.allOf) ? [...(p.allOf as S[])] : [];
  if (typeof p.$ref === 'string') {
    const target = resolve(ctx.prevRoot, p.$ref, ctx.prevRefs);
    if (target !== undefined) list.push(target);
  }
  return list;
}

/**
 * What the previous schema says at one place, merged over the schemas it is the conjunction of (itself, its allOf
 * members, its $ref targets, transitively): the kinds and values it accepts, and each simple keyword's values.
 */
interface Facts {
  readonly all: readonly Schema[];
  readonly kinds: Set<Kind>;
  readonly values: unknown[] | undefined;
  /** Whether any of them has `type` (else a new type narrows "from any"). */
  readonly typed: boolean;
}

function factsOf(p: Schema, ctx: Ctx): Facts {
  const all: Schema[] = [];
  let accepted = true;
  const visit = (s: S) => {
    if (s === false) accepted = false;
    if (!isObject(s) || all.includes(s)) return;
    all.push(s);
    for (const c of conjuncts(s, ctx)) visit(c);
  };
  visit(p);
  let kinds = new Set<Kind>(accepted ? ALL_KINDS : []);
  let values: unknown[] | undefined;
  for (const s of all) {
    const own = kindsOf(s);
    kinds = new Set([...kinds].filter((k) => own.has(k)));
    const v = finiteValues(s);
    if (v !== undefined) values = values === undefined ? v : values.filter((x) => v.some((y) => deepEqual(x, y)));
  }
  if (values !== undefined) {
    values = values.filter((v) => kinds.has(kindOfValue(v)));
    kinds = new Set(values.map(kindOfValue));
  }
  return { all, kinds, values, typed: all.some((s) => s.type !== undefined) };
}

/** The values of a keyword over the merged schemas (numbers only, for limits). */
function limits(f: Facts, kw: string): number[] {
  return f.all.map((s) => s[kw]).filter((v): v is number => typeof v === 'number');
}

function compareOwn(p: Schema, n: Schema, pos: Pos, ctx: Ctx, out: string[]): void {
  const f = factsOf(p, ctx);
  const { kinds, values } = f;
  if (kinds.size === 0) return; // the previous schema accepted nothing here
  compareTypes(f, n, pos, out);
  compareValues(n, values, pos, out);
  if (kinds.has('integer') || kinds.has('fraction')) {
    if (values === undefined) compareNumbers(f, n, pos, out);
    else checkScalars(NUMBER_KEYWORDS, n, values.filter((v) => typeof v === 'number'), pos, out);
  }
  if (kinds.has('string')) {
    if (values === undefined) compareStrings(f, n, pos, out);
    else checkScalars(STRING_KEYWORDS, n, values.filter((v) => typeof v === 'string'), pos, out);
  }
  if (kinds.has('string') || kinds.has('integer') || kinds.has('fraction')) {
    // Ajv applies format (ajv-formats has number formats too) and its ordering keywords to strings and numbers.
    compareEqualOnly(f, n, ['format', 'formatMaximum', 'formatMinimum', 'formatExclusiveMaximum', 'formatExclusiveMinimum'], pos, ctx, out);
  }
  if (kinds.has('array')) compareArrays(f, p, n, pos, ctx, out);
  if (kinds.has('object')) compareObjects(f, p, n, pos, ctx, out);
  compareApplicators(p, n, pos, ctx, out);
  compareEqualOnly(f, n, ['id'], pos, ctx, out);
}

function compareEqualOnly(f: Facts, n: Schema, keywords: readonly string[], pos: Pos, ctx: Ctx, out: string[]): void {
  for (const kw of keywords) {
    if (n[kw] === undefined || f.all.some((s) => same(s[kw], n[kw], ctx))) continue;
    if (kw === 'format') {
      const was = f.all.find((s) => s.format !== undefined)?.format ?? null;
      out.push(`${at(pos.path)}: format changed from ${JSON.stringify(was)} to ${JSON.stringify(n.format)}`);
    } else out.push(`${at(pos.path)}: "${kw}" changed; it cannot be proven to accept what it accepted before`);
  }
}

// ---- kinds and values -----------------------------------------------------------------------------------------

/** The kinds of JSON value the validator tells apart; `integer` and `fraction` together are its `number`. */
type Kind = 'null' | 'boolean' | 'integer' | 'fraction' | 'string' | 'array' | 'object';
const ALL_KINDS: readonly Kind[] = ['null', 'boolean', 'integer', 'fraction', 'string', 'array', 'object'];

function kindsOfTypeName(t: string): Kind[] {
  if (t === 'number') return ['integer', 'fraction'];
  return ALL_KINDS.includes(t as Kind) && t !== 'fraction' ? [t as Kind] : [];
}

/** The kinds `type` (with Ajv's `nullable`) admits, or undefined without `type`. */
function typeKinds(s: Schema): Set<Kind> | undefined {
  if (s.type === undefined) return undefined;
  const names = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
  const kinds = new Set(names.flatMap(kindsOfTypeName));
  if (s.nullable === true) kinds.add('null');
  return kinds;
}

function kindOfValue(v: unknown): Kind {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  switch (typeof v) {
    case 'boolean': return 'boolean';
    case 'number': return Number.isInteger(v) ? 'integer' : 'fraction';
    case 'string': return 'string';
    default: return 'object';
  }
}

function kindsOf(s: Schema): Set<Kind> {
  const values = finiteValues(s);
  if (values !== undefined) return new Set(values.map(kindOfValue));
  return typeKinds(s) ?? new Set(ALL_KINDS);
}

/**
 * The values the schema's own `const`/`enum`/`type` leave, when they are finitely many (an enum, or only null
 * and booleans); undefined otherwise. Other keywords may reject some of them, so this is an over-approximation.
 */
function finiteValues(s: Schema): unknown[] | undefined {
  const tk = typeKinds(s);
  let values: unknown[] | undefined;
  if (s.const !== undefined) values = [s.const];
  if (Array.isArray(s.enum)) values = values === undefined ? [...s.enum] : values.filter((v) => (s.enum as unknown[]).some((e) => deepEqual(e, v)));
  if (values === undefined && tk !== undefined && [...tk].every((k) => k === 'null' || k === 'boolean')) {
    values = [null, true, false];
  }
  return values?.filter((v) => tk === undefined || tk.has(kindOfValue(v)));
}

function compareTypes(f: Facts, n: Schema, pos: Pos, out: string[]): void {
  const nt = typeKinds(n);
  if (nt === undefined) return;
  const now = typeNames(n);
  if (f.values !== undefined) {
    const lost = f.values.filter((v) => !nt.has(kindOfValue(v)));
    if (lost.length > 0) out.push(`${at(pos.path)}: type narrowed: ${lost.map((v) => JSON.stringify(v)).join(', ')} no longer accepted (now ${now})`);
    return;
  }
  const lost = [...f.kinds].filter((k) => !nt.has(k));
  if (lost.length === 0) return;
  if (!f.typed) {
    out.push(`${at(pos.path)}: type narrowed from any to ${now}`);
    return;
  }
  // Name lost kinds as types: a lost fraction is a lost number (with or without its integers).
  const names = lost.flatMap((k) => (k === 'fraction' ? ['number'] : k === 'integer' ? (lost.includes('fraction') ? [] : ['integer']) : [k]));
  for (const t of names) out.push(`${at(pos.path)}: type narrowed: ${t} is no longer accepted (now ${now})`);
}

function typeNames(s: Schema): string {
  const names = Array.isArray(s.type) ? [...(s.type as string[])] : [s.type as string];
  if (s.nullable === true && !names.includes('null')) names.push('null');
  return names.join(' | ');
}

function compareValues(n: Schema, values: unknown[] | undefined, pos: Pos, out: string[]): void {
  if (Array.isArray(n.enum)) {
    const now = n.enum as unknown[];
    if (values === undefined) out.push(`${at(pos.path)}: enum added: values outside ${JSON.stringify(now)} are now rejected`);
    else {
      const lost = values.filter((v) => !now.some((e) => deepEqual(e, v)));
      if (lost.length > 0) out.push(`${at(pos.path)}: enum narrowed: ${lost.map((v) => JSON.stringify(v)).join(', ')} no longer accepted`);
    }
  }
  if (n.const !== undefined) {
    if (values === undefined || values.some((v) => !deepEqual(v, n.const))) {
      out.push(`${at(pos.path)}: const ${JSON.stringify(n.const)} now required`);
    }
  }
}

// ---- numbers and strings ---------------------------------------------------------------------------------------

const NUMBER_KEYWORDS = ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum', 'multipleOf'] as const;
const STRING_KEYWORDS = ['minLength', 'maxLength', 'pattern'] as const;

/** Ajv's own test of one scalar keyword on one value (the same arithmetic, so the same rounding). */
function scalarAccepts(kw: string, limit: unknown, v: unknown): boolean {
  if (typeof v === 'number' && typeof limit === 'number') {
    switch (kw) {
      case 'minimum': return !(v < limit);
      case 'exclusiveMinimum': return !(v <= limit);
      case 'maximum': return !(v > limit);
      case 'exclusiveMaximum': return !(v >= limit);
      case 'multipleOf': {
        const q = v / limit;
        return !(limit === 0 || q !== parseInt(q as unknown as string));
      }
    }
  }
  if (typeof v === 'string') {
    switch (kw) {
      case 'minLength': return typeof limit === 'number' && !(codePoints(v) < limit);
      case 'maxLength': return typeof limit === 'number' && !(codePoints(v) > limit);
      case 'pattern': return typeof limit === 'string' && patternTest(limit, v);
    }
  }
  return false;
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function checkScalars(keywords: readonly string[], n: Schema, values: unknown[], pos: Pos, out: string[]): void {
  for (const kw of keywords) {
    if (n[kw] === undefined) continue;
    const rejected = values.filter((v) => !scalarAccepts(kw, n[kw], v));
    if (rejected.length > 0) {
      out.push(`${at(pos.path)}: ${kw} ${JSON.stringify(n[kw])} rejects ${rejected.map((v) => JSON.stringify(v)).join(', ')}, which was accepted before`);
    }
  }
}

interface Bound {
  /** The bound as the check uses it (an integer bound made inclusive when only integers are accepted). */
  readonly value: number;
  readonly exclusive: boolean;
  /** The keyword and value it came from, for messages. */
  readonly keyword: string;
  readonly original: number;
}

function bound(f: Facts, side: 'lower' | 'upper', integersOnly: boolean): Bound | undefined {
  const [incKw, excKw] = side === 'lower' ? ['minimum', 'exclusiveMinimum'] : ['maximum', 'exclusiveMaximum'];
  const tighter = (a: number, b: number) => (side === 'lower' ? a > b : a < b);
  let b: Bound | undefined;
  for (const v of limits(f, incKw)) {
    if (b === undefined || tighter(v, b.value)) b = { value: v, exclusive: false, keyword: incKw, original: v };
  }
  for (const v of limits(f, excKw)) {
    // At equal values the exclusive bound is the tighter one.
    if (b === undefined || tighter(v, b.value) || (v === b.value && !b.exclusive)) b = { value: v, exclusive: true, keyword: excKw, original: v };
  }
  if (b === undefined || !integersOnly || !(Math.abs(b.value) < 2 ** 52)) return b;
  // Only integers: x > 0 is x >= 1. (Below 2^52 the arithmetic is exact.)
  const value = side === 'lower'
    ? (b.exclusive ? Math.floor(b.value) + 1 : Math.ceil(b.value))
    : (b.exclusive ? Math.ceil(b.value) - 1 : Math.floor(b.value));
  return { ...b, value, exclusive: false };
}

function compareNumbers(f: Facts, n: Schema, pos: Pos, out: string[]): void {
  const integersOnly = !f.kinds.has('fraction');
  const lower = bound(f, 'lower', integersOnly);
  const upper = bound(f, 'upper', integersOnly);
  if (lower !== undefined && upper !== undefined &&
      (lower.value > upper.value || (lower.value === upper.value && (lower.exclusive || upper.exclusive)))) {
    return; // no number was accepted
  }
  const checks: [string, Bound | undefined, (b: Bound, limit: number) => boolean][] = [
    ['minimum', lower, (b, m) => b.value >= m],
    ['exclusiveMinimum', lower, (b, m) => (b.exclusive ? b.value >= m : b.value > m)],
    ['maximum', upper, (b, m) => b.value <= m],
    ['exclusiveMaximum', upper, (b, m) => (b.exclusive ? b.value <= m : b.value < m)],
  ];
  for (const [kw, b, implies] of checks) {
    const limit = n[kw];
    if (typeof limit !== 'number') continue;
    if (b !== undefined && implies(b, limit)) continue;
    const was = b === undefined ? 'none' : b.keyword === kw ? `${b.original}` : `${b.keyword} ${b.original}`;
    out.push(`${at(pos.path)}: ${kw} tightened from ${was} to ${limit}`);
  }
  // Ajv tests divisibility in floating point (x / m === parseInt(x / m)); a different multipleOf can reject a
  // value the old one accepted however the two divide (5e-324 is a multiple of 2 but not of 1; 1.5e21 of 2 but
  // not of 1), so only an unchanged multipleOf is safe.
  if (n.multipleOf !== undefined && !f.all.some((s) => s.multipleOf === n.multipleOf)) {
    const was = f.all.find((s) => s.multipleOf !== undefined)?.multipleOf ?? 'none';
    out.push(`${at(pos.path)}: multipleOf ${JSON.stringify(n.multipleOf)} now required (was ${JSON.stringify(was)})`);
  }
}

function compareStrings(f: Facts, n: Schema, pos: Pos, out: string[]): void {
  compareCount(f, n, 'minLength', 'maxLength', undefined, pos, out);
  if (n.pattern !== undefined && !f.all.some((s) => s.pattern === n.pattern)) {
    const was = f.all.find((s) => s.pattern !== undefined)?.pattern ?? null;
    out.push(`${at(pos.path)}: pattern changed from ${JSON.stringify(was)} to ${JSON.stringify(n.pattern)}`);
  }
}

/** Lengths and counts: the new minimum may not exceed the old, the new maximum may not be below it. */
function compareCount(f: Facts, n: Schema, minKw: string, maxKw: string, prevMax: number | undefined, pos: Pos, out: string[]): void {
  const mins = limits(f, minKw);
  const maxes = limits(f, maxKw);
  const pMin = Math.max(0, ...mins);
  const pMax = Math.min(Infinity, ...maxes, prevMax ?? Infinity);
  if (pMin > pMax) return;
  const nMin = n[minKw];
  if (typeof nMin === 'number' && nMin > pMin) out.push(`${at(pos.path)}: ${minKw} tightened from ${mins.length > 0 ? pMin : 'none'} to ${nMin}`);
  const nMax = n[maxKw];
  if (typeof nMax === 'number' && nMax < pMax) out.push(`${at(pos.path)}: ${maxKw} tightened from ${maxes.length > 0 ? Math.min(...maxes) : 'none'} to ${nMax}`);
}

// ---- arrays ----------------------------------------------------------------------------------------------------

function compareArrays(f: Facts, p: Schema, n: Schema, pos: Pos, ctx: Ctx, out: string[]): void {
  const ppi = (Array.isArray(p.prefixItems) ? p.prefixItems : []) as S[];
  const npi = (Array.isArray(n.prefixItems) ? n.prefixItems : []) as S[];
  const pItems = (p.items ?? true) as S;
  const nItems = (n.items ?? true) as S;
  const maxLength = Math.min(typeof p.maxItems === 'number' ? p.maxItems : Infinity, pItems === false ? ppi.length : Infinity);
  const prefix = Math.max(ppi.length, npi.length);
  for (let i = 0; i < prefix && i < maxLength; i++) {
    compare(ppi[i] ?? pItems, npi[i] ?? nItems, suffixed(pos, `[${i}]`), ctx, out);
  }
  if (prefix < maxLength) compare(pItems, nItems, suffixed(pos, '[]'), ctx, out);
  compareCount(f, n, 'minItems', 'maxItems', pItems === false ? ppi.length : undefined, pos, out);
  if (n.uniqueItems === true && maxLength > 1) {
    if (p.uniqueItems !== true) out.push(`${at(pos.path)}: uniqueItems now required`);
    else {
      // Ajv compares only the elements whose type is items' type, when that is a simple one.
      const before = uniquenessTypes(p);
      const now = uniquenessTypes(n);
      const covered = before === undefined || (now !== undefined && now.every((t) => before.includes(t) || (t === 'integer' && before.includes('number'))));
      if (!covered) out.push(`${at(pos.path)}: uniqueItems now compares ${now?.join(', ') ?? 'all'} elements (was ${before.join(', ')}), because items' type changed`);
      else skippedBefore(f, p, n, 2, maxLength, 'uniqueItems', pos, out);
    }
  }
  if (compareContains(p, n, pos, ctx, out)) skippedBefore(f, p, n, 0, maxLength, 'contains', pos, out);
}

/** Whether Ajv treats a subschema as always valid (and generates no code for it). */
function trivial(s: S): boolean {
  return s === true || (isObject(s) && !Object.keys(s).some((k) => k in KEYWORDS));
}

/**
 * Ajv 8.20 runs the array keywords after prefixItems (contains, uniqueItems) only when it checked a prefixItems
 * entry, so arrays no longer than the index of the first entry that is not trivially valid skip them:
 * `{ prefixItems: [{ type: 'integer' }], contains: { type: 'string' } }` accepts []. The length up to which
 * arrays skip them, or -1.
 */
function skipsUpTo(s: Schema): number {
  return (Array.isArray(s.prefixItems) ? (s.prefixItems as S[]) : []).findIndex((x) => !trivial(x));
}

/** Refuses when the new schema checks `keyword` on array lengths (at least `from`) the old one skipped. */
function skippedBefore(f: Facts, p: Schema, n: Schema, from: number, maxLength: number, keyword: string, pos: Pos, out: string[]): void {
  const lo = Math.max(skipsUpTo(n) + 1, from, ...limits(f, 'minItems'));
  const hi = Math.min(skipsUpTo(p), maxLength);
  if (lo <= hi) {
    out.push(`${at(pos.path)}: ${keyword} now applies to arrays of ${lo === hi ? lo : `${lo} to ${hi}`} element(s), which the validator did not check before (it skips ${keyword} on arrays that end before the first checked prefixItems entry)`);
  }
}

/** The element types among which Ajv's uniqueItems looks for duplicates (undefined: all elements). */
function uniquenessTypes(s: Schema): string[] | undefined {
  if (!isObject(s.items)) return undefined;
  const t = s.items.type;
  const types = Array.isArray(t) ? [...(t as string[])] : t === undefined ? [] : [t as string];
  if (!types.includes('null') && s.items.nullable === true) types.push('null');
  return types.length === 0 || types.some((x) => x === 'object' || x === 'array') ? undefined : types;
}

interface Contains {
  readonly schema: S;
  readonly min: number;
  readonly max: number | undefined;
}

function containsOf(s: Schema): Contains | undefined {
  if (s.contains === undefined) return undefined;
  const min = typeof s.minContains === 'number' ? s.minContains : 1;
  const max = typeof s.maxContains === 'number' ? s.maxContains : undefined;
  if (min === 0 && max === undefined) return undefined; // Ajv ignores contains then
  return { schema: s.contains as S, min, max };
}

/** Compares contains; true when the new one applies and implies the old one (where both are checked). */
function compareContains(p: Schema, n: Schema, pos: Pos, ctx: Ctx, out: string[]): boolean {
  const nc = containsOf(n);
  if (nc === undefined) return false;
  const pc = containsOf(p);
  const strict = labelled({ ...pos, lenient: false }, 'contains');
  const ok = pc !== undefined && nc.min <= pc.min && (
    nc.max === undefined
      // More elements match a wider schema: enough for a minimum, not for a maximum.
      ? holds(pc.schema, nc.schema, strict, ctx)
      : same(pc.schema, nc.schema, ctx) && pc.max !== undefined && pc.max <= nc.max);
  if (!ok) {
    const what = pc === undefined ? 'added' : 'changed';
    out.push(`${at(pos.path)}: contains ${what} (with minContains ${nc.min}${nc.max === undefined ? '' : `, maxContains ${nc.max}`}); it cannot be proven to accept what it accepted before`);
  }
  return ok;
}

// ---- objects ---------------------------------------------------------------------------------------------------

function compareObjects(f: Facts, p: Schema, n: Schema, pos: Pos, ctx: Ctx, out: string[]): void {
  const prevRequired = new Set(f.all.flatMap((s) => (Array.isArray(s.required) ? (s.required as string[]) : [])));
  for (const r of Array.isArray(n.required) ? (n.required as string[]) : []) {
    if (!prevRequired.has(r)) out.push(`${at(pos.path)}: new required field "${r}"`);
  }
  const propsOf = (s: Schema) => (isObject(s.properties) ? s.properties : {}) as Record<string, S>;
  const patternsOf = (s: Schema) => (isObject(s.patternProperties) ? s.patternProperties : {}) as Record<string, S>;
  const pp = propsOf(p);
  const np = propsOf(n);
  const ppat = patternsOf(p);
  const npat = patternsOf(n);
  const pAdd = (p.additionalProperties ?? true) as S;
  const nAdd = (n.additionalProperties ?? true) as S;
  const matching = (pats: Record<string, S>, name: string) => Object.keys(pats).filter((re) => patternTest(re, name));
  /**
   * Everything the previous schema (with its allOf members and $ref targets) required of a property's value:
   * any one of them implies the rest. `[true]` when nothing did.
   */
  const prevFor = (name: string): S[] => {
    const all = f.all.flatMap((s) => {
      const pats = matching(patternsOf(s), name).map((re) => patternsOf(s)[re]);
      if (has(propsOf(s), name)) return [propsOf(s)[name], ...pats];
      return pats.length > 0 ? pats : [(s.additionalProperties ?? true) as S];
    }).filter((s) => !acceptsAll(s));
    return all.length > 0 ? all : [true];
  };
  const impliedByOne = (sources: S[], next: S, at: Pos) => {
    if (sources.length > 1 && sources.slice(1).some((s) => holds(s, next, at, ctx))) return;
    compare(sources[0], next, at, ctx, out);
  };
  const declaredBefore = new Set(f.all.flatMap((s) => Object.keys(propsOf(s))));
  // With unevaluatedProperties the previous object was not open, whatever its other keywords say.
  const openBefore = !f.all.some((s) => s.unevaluatedProperties !== undefined && !acceptsAll(s.unevaluatedProperties as S));

  for (const name of declaredBefore) {
    const c = child(pos, name);
    const pats = matching(npat, name);
    if (has(np, name) || pats.length > 0) {
      if (has(np, name)) impliedByOne(prevFor(name), np[name], c);
      for (const re of pats) impliedByOne(prevFor(name), npat[re], c);
    } else if (nAdd === false) {
      if (!prevFor(name).includes(false)) out.push(`${c.path}: property removed while additionalProperties is false`);
    } else impliedByOne(prevFor(name), nAdd, c);
  }
  for (const name of Object.keys(np)) {
    if (declaredBefore.has(name)) continue;
    const c = child(pos, name);
    const sources = prevFor(name);
    const lenient = pos.lenient && openBefore && sources.length === 1 && sources[0] === true;
    if (!lenient) impliedByOne(sources, np[name], c);
    for (const re of matching(npat, name)) impliedByOne(sources, npat[re], c);
  }
  // Names declared by neither: what the previous schema let through for them (its additionalProperties, or a
  // pattern of its own) must pass each new pattern they may match and the new additionalProperties.
  const otherSources = (exclude: (re: string) => boolean): [string, S][] => [
    ...(pAdd === false ? [] : [['additional properties', pAdd] as [string, S]]),
    ...Object.keys(ppat).filter((re) => !exclude(re)).map((re) => [`properties matching /${re}/`, ppat[re]] as [string, S]),
  ];
  for (const re of Object.keys(npat)) {
    const label = labelled(pos, `properties matching /${re}/`);
    if (has(ppat, re)) {
      compare(ppat[re], npat[re], label, ctx, out);
      continue;
    }
    for (const [, s] of otherSources(() => false)) compare(s, npat[re], label, ctx, out);
  }
  if (!acceptsAll(nAdd)) {
    for (const [what, s] of otherSources((re) => has(npat, re))) {
      if (nAdd === false && s !== false) {
        out.push(what === 'additional properties'
          ? `${at(pos.path)}: additionalProperties is now false: unknown fields are rejected`
          : `${at(pos.path)}: ${what} are now rejected by additionalProperties false`);
      } else compare(s, nAdd, labelled(pos, what), ctx, out);
    }
  }
  const closed = pAdd === false && Object.keys(ppat).length === 0;
  compareCount(f, n, 'minProperties', 'maxProperties', closed ? Object.keys(pp).filter((k) => pp[k] !== false).length : undefined, pos, out);

  if (n.propertyNames !== undefined && !same(p.propertyNames as S, n.propertyNames as S, ctx)) {
    const names: S[] = [(p.propertyNames ?? true) as S];
    if (closed) names.unshift({ type: 'string', enum: Object.keys(pp).filter((k) => pp[k] !== false) });
    impliedByOne(names, n.propertyNames as S, labelled(pos, 'property names'));
  }
  compareDependencies(p, n, prevRequired, pos, ctx, out);
}

function compareDependencies(p: Schema, n: Schema, prevRequired: Set<string>, pos: Pos, ctx: Ctx, out: string[]): void {
  const entries = (s: Schema, kw: string) => (isObject(s[kw]) ? Object.entries(s[kw] as Schema) : []);
  const prevLists = new Map<string, string[]>();
  const prevSchemas = new Map<string, S[]>();
  for (const kw of ['dependentRequired', 'dependencies', 'dependentSchemas']) {
    for (const [key, v] of entries(p, kw)) {
      if (Array.isArray(v)) prevLists.set(key, [...(prevLists.get(key) ?? []), ...(v as string[])]);
      else prevSchemas.set(key, [...(prevSchemas.get(key) ?? []), v as S]);
    }
  }
  for (const kw of ['dependentRequired', 'dependencies', 'dependentSchemas']) {
    for (const [key, v] of entries(n, kw)) {
      if (Array.isArray(v)) {
        for (const name of v as string[]) {
          if (name === key || prevRequired.has(name) || prevLists.get(key)?.includes(name)) continue;
          out.push(`${at(pos.path)}: ${kw}: "${name}" now required when "${key}" is present`);
        }
        continue;
      }
      const when = { ...pos, path: `${at(pos.path)} (when "${key}" is present)` };
      const sources = prevSchemas.get(key) ?? [];
      if (holds(p, v as S, when, ctx) || sources.some((s) => holds(s, v as S, when, ctx))) continue;
      compare(sources[0] ?? p, v as S, when, ctx, out);
    }
  }
}

// ---- applicators -----------------------------------------------------------------------------------------------

function compareApplicators(p: Schema, n: Schema, pos: Pos, ctx: Ctx, out: string[]): void {
  const cannot = (kw: string) => out.push(`${at(pos.path)}: "${kw}" changed; it cannot be proven to accept what it accepted before`);
  if (Array.isArray(n.allOf)) {
    for (const m of n.allOf as S[]) compare(p, m, pos, ctx, out);
  }
  if (Array.isArray(n.anyOf) && !same(p.anyOf, n.anyOf, ctx)) {
    const members = n.anyOf as S[];
    const prevMembers = Array.isArray(p.anyOf) ? (p.anyOf as S[]) : undefined;
    const ok = members.some((m) => holds(p, m, pos, ctx)) ||
      (prevMembers !== undefined && prevMembers.every((pm) => members.some((m) => holds(pm, m, pos, ctx))));
    if (!ok) cannot('anyOf');
  }
  if (Array.isArray(n.oneOf) && !same(p.oneOf, n.oneOf, ctx)) cannot('oneOf');
  if (n.not !== undefined && !same(p.not as S, n.not as S, ctx)) {
    // Whatever the new `not` excludes, the old one must have excluded already.
    if (p.not === undefined || !holds(n.not as S, p.not as S, { ...pos, lenient: false }, reversed(ctx))) cannot('not');
  }
  if (n.if !== undefined) {
    const nThen = (n.then ?? true) as S;
    const nElse = (n.else ?? true) as S;
    const branches = p.if !== undefined && same(p.if as S, n.if as S, ctx)
      ? holds((p.then ?? true) as S, nThen, pos, ctx) && holds((p.else ?? true) as S, nElse, pos, ctx)
      : false;
    if (!branches && !(holds(p, nThen, pos, ctx) && holds(p, nElse, pos, ctx))) {
      cannot(p.if !== undefined && same(p.if as S, n.if as S, ctx) ? 'then/else' : 'if');
    }
  }
  if (typeof n.$ref === 'string') {
    const target = resolve(ctx.nextRoot, n.$ref, ctx.nextRefs);
    if (target === undefined) out.push(`${at(pos.path)}: $ref ${JSON.stringify(n.$ref)} cannot be resolved by the compatibility check`);
    else compare(p, target, pos, ctx, out);
  }
  // Which properties or items count as evaluated depends on every other keyword here.
  for (const kw of ['unevaluatedProperties', 'unevaluatedItems']) {
    if (n[kw] !== undefined && !acceptsAll(n[kw] as S)) {
      out.push(`${at(pos.path)}: "${kw}" applies and the schema around it changed; it cannot be proven to accept what it accepted before`);
    }
  }
}

// ---- references and equality -----------------------------------------------------------------------------------

/**
 * The target of a local JSON-pointer `$ref` ("#", "#/$defs/x"), or undefined when it is anything else or the
 * schema has an `$id` below its root (which would change what "#" means).
 */
function resolve(root: S, ref: string, resolvable: boolean): S | undefined {
  if (!resolvable || !ref.startsWith('#') || (ref.length > 1 && ref[1] !== '/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.length > 1 ? ref.slice(2).split('/') : []) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    } catch {
      return undefined;
    }
    if (typeof node !== 'object' || node === null || !has(node as Schema, seg)) return undefined;
    node = (node as Record<string, unknown>)[seg];
  }
  return typeof node === 'boolean' || isObject(node) ? node : undefined;
}

function hasNestedId(node: unknown, isRoot: boolean): boolean {
  if (typeof node !== 'object' || node === null) return false;
  if (!isRoot && !Array.isArray(node) && typeof (node as Schema).$id === 'string') return true;
  return Object.entries(node).some(([k, v]) => k !== 'enum' && k !== 'const' && hasNestedId(v, false));
}

function findUnsupported(node: S, path: string, keywords: readonly string[]): { keyword: string; path: string } | undefined {
  if (!isObject(node)) return undefined;
  for (const kw of keywords) {
    if (node[kw] !== undefined) return { keyword: kw, path };
  }
  for (const [k, v] of Object.entries(node)) {
    if (k === 'enum' || k === 'const') continue;
    const sub = k === 'properties' ? undefined : k === 'items' ? `${path}[]` : path;
    const children = isObject(v) && (k === 'properties' || k === '$defs' || k === 'definitions' || k === 'patternProperties' || k === 'dependentSchemas')
      ? Object.entries(v).map(([name, s]) => [k === 'properties' ? (path === '' ? name : `${path}.${name}`) : path, s] as const)
      : Array.isArray(v) ? v.map((s) => [sub ?? path, s] as const) : [[sub ?? path, v] as const];
    for (const [p, s] of children) {
      const found = findUnsupported(s as S, p, keywords);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/**
 * Whether two subschemas validate alike: equal as JSON, with each `$ref` resolving to targets that validate
 * alike in their own documents.
 */
function same(a: unknown, b: unknown, ctx: Ctx, assumed = new Set<string>()): boolean {
  return sameValue(a, b, ctx, assumed);
}

function sameValue(a: unknown, b: unknown, ctx: Ctx, assumed: Set<string>): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of ka) {
    if (!has(rb, k)) return false;
    if (k === 'enum' || k === 'const') {
      if (!deepEqual(ra[k], rb[k])) return false;
      continue;
    }
    if (!sameValue(ra[k], rb[k], ctx, assumed)) return false;
  }
  if (!Array.isArray(a) && typeof ra.$ref === 'string') {
    const key = `${ra.$ref}`;
    if (assumed.has(key)) return true;
    const ta = resolve(ctx.prevRoot, ra.$ref, ctx.prevRefs);
    const tb = resolve(ctx.nextRoot, ra.$ref, ctx.nextRefs);
    if (ta === undefined || tb === undefined) return false;
    assumed.add(key);
    return sameValue(ta, tb, ctx, assumed);
  }
  return true;
}

function has(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/**
 * A schema pattern against a string, in linear time as validation runs it (a registration must not hang on
 * `^(a+)+$`). A pattern RE2 cannot run was refused at registration; one stored before that falls back to the native
 * engine.
 */
function patternTest(pattern: string, s: string): boolean {
  try {
    return linearRegExp(pattern).test(s);
  } catch (err) {
    if (err instanceof UnsupportedPatternError) return new RegExp(pattern, 'u').test(s);
    throw err;
  }
}
