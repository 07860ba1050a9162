import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { backwardIncompatibilities } from './compatibility.js';
import { createAjv } from './compiler.js';

// The oracle is the validator itself (Ajv configured as in compiler.ts): whenever the check accepts a new schema,
// every generated event the old schema accepts must be accepted by the new one. Schemas, mutations and events
// draw from small pools of values so that bounds meet, enums overlap and names collide often.

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: unknown } | boolean;

const NAMES = ['a', 'b', 'c'] as const;
/** Object keys in events: the declarable names, and two never declared (one matching the pattern "^a"). */
const EVENT_KEYS = [...NAMES, 'a2', 'q'];
const numbers = fc.constantFrom(-1, 0, 0.5, 1, 2, 10);
const counts = fc.integer({ min: 0, max: 3 });
const scalars = fc.constantFrom<Json>(null, true, false, -1, 0, 0.5, 1, 2, '', 'a', 'ab', 'b');
const typeName = fc.constantFrom('null', 'boolean', 'integer', 'number', 'string', 'array', 'object');

/** The value generator of each keyword, given the generator of subschemas. */
function keywordValues(sub: fc.Arbitrary<Schema>): Record<string, fc.Arbitrary<unknown>> {
  return {
    type: fc.oneof(typeName, fc.uniqueArray(typeName, { minLength: 1, maxLength: 3 })),
    nullable: fc.constant(true),
    enum: fc.subarray(['a', 'b', 'ab', '', 0, 1, 0.5, 2, null, true], { minLength: 1, maxLength: 4 }),
    const: scalars,
    minimum: numbers, exclusiveMinimum: numbers, maximum: numbers, exclusiveMaximum: numbers,
    multipleOf: fc.constantFrom(0.5, 1, 2),
    minLength: counts, maxLength: counts,
    pattern: fc.constantFrom('^a', '^[ab]', 'b$', '^a.'),
    format: fc.constantFrom('date', 'email'),
    items: sub,
    prefixItems: fc.array(sub, { minLength: 1, maxLength: 2 }),
    minItems: counts, maxItems: counts, uniqueItems: fc.boolean(),
    contains: sub, minContains: fc.integer({ min: 0, max: 2 }), maxContains: fc.integer({ min: 0, max: 2 }),
    properties: fc.dictionary(fc.constantFrom(...NAMES), sub, { maxKeys: 2 }),
    required: fc.subarray([...NAMES], { maxLength: 2 }),
    additionalProperties: fc.oneof(fc.boolean(), sub),
    patternProperties: fc.dictionary(fc.constantFrom('^a', '^q'), sub, { minKeys: 1, maxKeys: 1 }),
    minProperties: counts, maxProperties: counts,
    propertyNames: fc.oneof(fc.record({ maxLength: fc.integer({ min: 0, max: 2 }) }), fc.record({ pattern: fc.constantFrom('^a', '^[ab]') })),
    dependentRequired: fc.dictionary(fc.constantFrom(...NAMES), fc.subarray([...NAMES], { minLength: 1 }), { minKeys: 1, maxKeys: 1 }),
    dependentSchemas: fc.dictionary(fc.constantFrom(...NAMES), sub, { minKeys: 1, maxKeys: 1 }),
    allOf: fc.array(sub, { minLength: 1, maxLength: 2 }),
    anyOf: fc.array(sub, { minLength: 1, maxLength: 2 }),
    oneOf: fc.array(sub, { minLength: 1, maxLength: 2 }),
    not: sub, if: sub, then: sub, else: sub,
    $ref: fc.constant('#/$defs/d'),
    unevaluatedProperties: fc.oneof(fc.boolean(), sub),
    unevaluatedItems: fc.oneof(fc.boolean(), sub),
  };
}

const KEYWORDS = Object.keys(keywordValues(fc.constant(true)));

function schemaArb(depth: number): fc.Arbitrary<Schema> {
  const sub = depth === 0 ? fc.constantFrom<Schema>(true, false, {}, { type: 'integer' }, { type: 'string' }, { minimum: 1 }) : schemaArb(depth - 1);
  const values = keywordValues(sub);
  const object = fc.uniqueArray(fc.constantFrom(...KEYWORDS), { maxLength: 4 })
    .chain((kws) => fc.record(Object.fromEntries(kws.map((k) => [k, values[k]]))) as fc.Arbitrary<Schema>);
  // Nodes of one kind with that kind's keywords, where limits, pairs and quirks meet more often.
  const typed = (type: fc.Arbitrary<unknown>, keywords: string[]) =>
    fc.record({ type, ...Object.fromEntries(keywords.map((k) => [k, values[k]])) }, { requiredKeys: ['type'] }) as fc.Arbitrary<Schema>;
  return fc.oneof(
    { weight: 1, arbitrary: fc.boolean() },
    { weight: 6, arbitrary: object },
    { weight: 2, arbitrary: typed(fc.constantFrom('integer', 'number', ['integer', 'string']), ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum', 'multipleOf', 'enum']) },
    { weight: 1, arbitrary: typed(fc.constantFrom('string', ['string', 'null']), ['minLength', 'maxLength', 'pattern', 'format', 'enum']) },
    { weight: 2, arbitrary: typed(fc.constant('array'), ['items', 'prefixItems', 'contains', 'minContains', 'maxContains', 'minItems', 'maxItems', 'uniqueItems']) },
    { weight: 2, arbitrary: typed(fc.constant('object'), ['properties', 'required', 'additionalProperties', 'patternProperties', 'propertyNames', 'dependentRequired', 'dependentSchemas', 'minProperties', 'maxProperties']) },
  );
}

/** One edit of the old schema: at the n-th subschema, delete a keyword, set one, or swap a pair. */
type Edit =
  | { kind: 'delete'; at: number; index: number }
  | { kind: 'tweak'; at: number; index: number; values: Record<string, unknown> }
  | { kind: 'set'; at: number; keyword: string; value: unknown }
  | { kind: 'rename'; at: number; pair: readonly [string, string] };

const PAIRS = [['minimum', 'exclusiveMinimum'], ['maximum', 'exclusiveMaximum'], ['minimum', 'maximum'], ['anyOf', 'oneOf'],
  ['allOf', 'anyOf'], ['minItems', 'maxItems'], ['minLength', 'maxLength'], ['items', 'contains'], ['then', 'else']] as const;

const setValues = keywordValues(schemaArb(0));
/** A fresh value for every keyword, one of which a tweak puts in place of the value a keyword has. */
const freshValues = fc.record(setValues);
const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), index: fc.nat() }),
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('tweak' as const), at: fc.nat(), index: fc.nat(), values: freshValues }) },
  fc.constantFrom(...KEYWORDS).chain((keyword) => fc.record({ kind: fc.constant('set' as const), at: fc.nat(), keyword: fc.constant(keyword), value: setValues[keyword] })),
  fc.record({ kind: fc.constant('rename' as const), at: fc.nat(), pair: fc.constantFrom(...PAIRS) }),
);

const MAPS = new Set(['properties', 'patternProperties', '$defs', 'dependentSchemas']);
const VALUES = new Set(['enum', 'const', 'required', 'dependentRequired', 'propertyNames']);

/** The object subschemas of a schema (not the maps that hold them, nor values). */
function subschemas(s: unknown, out: Record<string, unknown>[] = [], isMap = false): Record<string, unknown>[] {
  if (typeof s !== 'object' || s === null) return out;
  if (!Array.isArray(s) && !isMap) out.push(s as Record<string, unknown>);
  for (const [k, v] of Object.entries(s)) {
    if (isMap || Array.isArray(s)) subschemas(v, out);
    else if (!VALUES.has(k)) subschemas(v, out, MAPS.has(k));
  }
  return out;
}

function applyEdits(schema: Schema, edits: Edit[]): Schema {
  const copy = structuredClone(schema);
  for (const e of edits) {
    const nodes = subschemas(copy);
    if (nodes.length === 0) continue;
    const node = nodes[e.at % nodes.length];
    if (e.kind === 'delete') {
      const keys = Object.keys(node);
      if (keys.length > 0) delete node[keys[e.index % keys.length]];
    } else if (e.kind === 'tweak') {
      const keys = Object.keys(node).filter((k) => k in e.values);
      if (keys.length > 0) {
        const k = keys[e.index % keys.length];
        node[k] = structuredClone(e.values[k]);
      }
    } else if (e.kind === 'set') node[e.keyword] = structuredClone(e.value);
    else {
      const [x, y] = e.pair;
      const [vx, vy] = [node[x], node[y]];
      delete node[x];
      delete node[y];
      if (vx !== undefined) node[y] = vx;
      if (vy !== undefined) node[x] = vy;
    }
  }
  return copy;
}

const eventArb: fc.Arbitrary<Json> = fc.letrec<{ v: Json }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom<Json>(null, true, false, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 10, 11, 1.5e21, 5e-324,
      '', 'a', 'aa', 'ab', 'abc', 'b', 'ba', 'q', '2020-01-01', 'x@y.z'),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...EVENT_KEYS), tie('v'), { maxKeys: 3 }),
  ),
})).v;

/**
 * Events shaped by a schema, so that they reach its subschemas and sit on and around its limits: values from its
 * enums, numbers at its bounds and half a step either side, strings and arrays of the lengths it names, objects
 * with the properties it declares (valued after their schemas, or at random). Each choice may also be random.
 */
function guided(s: unknown, root: Schema, depth = 0): fc.Arbitrary<Json> {
  if (depth > 4 || typeof s !== 'object' || s === null) return eventArb;
  const o = s as Record<string, unknown>;
  const sub = (x: unknown) => guided(x, root, depth + 1);
  const options: fc.Arbitrary<Json>[] = [eventArb];
  if (o.$ref === '#/$defs/d' && typeof root === 'object') options.push(sub((root.$defs as Record<string, unknown> | undefined)?.d));
  for (const kw of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(o[kw])) options.push(...(o[kw] as unknown[]).map(sub));
  for (const kw of ['if', 'then', 'else', 'not']) if (o[kw] !== undefined) options.push(sub(o[kw]));
  if (Array.isArray(o.enum) && o.enum.length > 0) options.push(fc.constantFrom(...(o.enum as Json[])));
  if (o.const !== undefined) options.push(fc.constant(o.const as Json));
  const bounds = ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum', 'multipleOf'].map((k) => o[k]).filter((v): v is number => typeof v === 'number');
  if (bounds.length > 0) options.push(fc.constantFrom(...bounds.flatMap((b) => [b - 1, b - 0.5, b, b + 0.5, b + 1, b * 3]), 1.5e21, 5e-324));
  const lengths = ['minLength', 'maxLength'].map((k) => o[k]).filter((v): v is number => typeof v === 'number');
  if (lengths.length > 0 || o.pattern !== undefined || o.format !== undefined) {
    options.push(fc.constantFrom(...lengths.flatMap((n) => [n - 1, n, n + 1]).filter((n) => n >= 0).map((n) => 'ab'.repeat(n).slice(0, n)), 'a', 'ab', 'b', 'ba', 'a.', '2020-01-01', 'x@y.z'));
  }
  const arrayish = ['items', 'prefixItems', 'contains', 'minItems', 'maxItems', 'uniqueItems', 'unevaluatedItems'].some((k) => o[k] !== undefined);
  if (arrayish) {
    const prefix = Array.isArray(o.prefixItems) ? (o.prefixItems as unknown[]).map((x) => fc.oneof(sub(x), eventArb)) : [];
    const rest = fc.oneof(sub(o.items), sub(o.contains), fc.constantFrom<Json>(1, 1, 'a'), eventArb);
    options.push(fc.tuple(fc.tuple(...prefix), fc.array(rest, { maxLength: 3 }), fc.nat({ max: prefix.length }))
      .map(([head, tail, cut]) => [...head.slice(0, cut), ...(cut === head.length ? tail : [])]));
  }
  const objectish = ['properties', 'required', 'patternProperties', 'additionalProperties', 'propertyNames', 'dependentRequired', 'dependentSchemas', 'minProperties', 'maxProperties', 'unevaluatedProperties'].some((k) => o[k] !== undefined);
  if (objectish) {
    const props = (typeof o.properties === 'object' && o.properties !== null ? o.properties : {}) as Record<string, unknown>;
    const pats = (typeof o.patternProperties === 'object' && o.patternProperties !== null ? o.patternProperties : {}) as Record<string, unknown>;
    const value = (x: unknown) => fc.oneof(sub(x), eventArb);
    const declared = fc.record(Object.fromEntries([...NAMES].map((k) => [k, value(props[k] ?? pats['^a'] ?? o.additionalProperties)])), { requiredKeys: [] });
    const extra = fc.dictionary(fc.constantFrom('a2', 'q'), value(pats['^a'] ?? pats['^q'] ?? o.additionalProperties), { maxKeys: 2 });
    options.push(fc.tuple(declared, extra).map(([a, b]) => ({ ...a, ...b }) as Json));
  }
  return fc.oneof(...options);
}

const ajv = createAjv();
function compile(schema: Schema): ((data: unknown) => boolean | 'throws') | undefined {
  let fn: (data: unknown) => boolean;
  try {
    fn = ajv.compile(schema as object) as (data: unknown) => boolean;
  } catch {
    return undefined; // the registry refuses a schema Ajv cannot compile before comparing it
  }
  return (data) => {
    try {
      return fn(data);
    } catch {
      return 'throws'; // a $ref cycle that never descends into the event overflows Ajv's stack
    }
  };
}

/** Every old schema has $defs.d, so a generated `$ref` always resolves. */
/** Old schemas `depth` deep, a few edits, and events shaped by both versions. */
const pairArb = (depth: number) => fc.record({
  old: fc.record({ d: schemaArb(Math.min(depth, 1)), body: schemaArb(depth) }).map(({ d, body }): Schema => (typeof body === 'boolean' ? { $defs: { d }, allOf: [body] } : { ...body, $defs: { d } })),
  edits: fc.array(editArb, { minLength: 1, maxLength: depth === 0 ? 2 : 3 }),
}).chain(({ old, edits }) => {
  const next = applyEdits(old, edits);
  const events = fc.array(fc.oneof(guided(old, old), guided(next, next)), { minLength: 20, maxLength: 40 });
  // Through JSON, as events arrive (fc.dictionary builds objects without a prototype, which Ajv's equality trips on).
  return events.map((es) => ({ old, next, events: JSON.parse(JSON.stringify(es)) as Json[] }));
});

/** Runs the property; counts accepted changes (not counting edits that changed nothing), refusals and events checked. */
function checkSound(lenient: boolean, depth: number, numRuns: number): { accepted: number; refused: number; eventsChecked: number } {
  const stats = { accepted: 0, refused: 0, eventsChecked: 0 };
  fc.assert(
    fc.property(pairArb(depth), ({ old, next, events }) => {
      const validateOld = compile(old);
      const validateNew = compile(next);
      if (validateOld === undefined || validateNew === undefined) return;
      const reasons = backwardIncompatibilities(old, next, { lenient });
      for (const r of reasons) assert.match(r, /^.+: .+/, 'a reason says `path: what changed`');
      if (reasons.length > 0) {
        stats.refused++;
        return;
      }
      if (!isDeepStrictEqual(old, next)) stats.accepted++;
      for (const e of events) {
        if (validateOld(e) !== true) continue;
        if (!lenient) stats.eventsChecked++;
        if (lenient && usesLeniency(old, next, e)) continue;
        if (lenient) stats.eventsChecked++;
        assert.equal(validateNew(e), true, `the new schema rejects ${JSON.stringify(e)}, which the old accepted`);
      }
    }),
    { numRuns },
  );
  return stats;
}

/**
 * Whether an event may be one the leniency lets through: it carries, somewhere, a key that the new schema
 * declares in some `properties` (where the old one may have left it open). An over-approximation: such events
 * are skipped, every other event must pass; the exact check above covers them all.
 */
function usesLeniency(_old: Schema, next: Schema, event: Json): boolean {
  const declared = new Set(subschemas(next).flatMap((n) => (typeof n.properties === 'object' && n.properties !== null ? Object.keys(n.properties) : [])));
  const keys = (v: Json): string[] => (Array.isArray(v) ? v.flatMap(keys) : typeof v === 'object' && v !== null ? Object.entries(v).flatMap(([k, x]) => [k, ...keys(x)]) : []);
  return keys(event).some((k) => declared.has(k));
}

test('when the exact check accepts a change, the new schema accepts every event the old one accepted (Ajv)', () => {
  const stats = checkSound(false, 2, 600);
  // Not vacuous: both outcomes occur, and accepted changes are tested with real events.
  assert.ok(stats.accepted > 50 && stats.refused > 50 && stats.eventsChecked > 300, JSON.stringify(stats));
});

test('with the leniency (the registry default), the same holds for events that do not use it', () => {
  const stats = checkSound(true, 2, 400);
  assert.ok(stats.accepted > 30 && stats.refused > 30 && stats.eventsChecked > 200, JSON.stringify(stats));
});

test('the same for one-level schemas, where limits, exclusive/inclusive pairs and quirks meet most often', () => {
  const stats = checkSound(false, 0, 1500);
  assert.ok(stats.accepted > 200 && stats.refused > 200 && stats.eventsChecked > 2000, JSON.stringify(stats));
});

test('numeric bounds are judged exactly: accepted iff no number on a fine grid is lost (Ajv)', () => {
  const grid = [...Array.from({ length: 69 }, (_, i) => -3 + i * 0.25), 1.5e21, -1.5e21];
  const bounds = fc.record({ minimum: numbers, exclusiveMinimum: numbers, maximum: numbers, exclusiveMaximum: numbers }, { requiredKeys: [] });
  const side = fc.record({ type: fc.constantFrom('integer', 'number'), bounds });
  fc.assert(
    fc.property(side, side, (a, b) => {
      const old = { type: a.type, ...a.bounds };
      const next = { type: a.type, ...b.bounds };
      const [validateOld, validateNew] = [compile(old)!, compile(next)!];
      const lost = grid.filter((x) => validateOld(x) === true && validateNew(x) !== true);
      const reasons = backwardIncompatibilities({ properties: { qty: old } }, { properties: { qty: next } });
      assert.equal(reasons.length === 0, lost.length === 0, `reasons ${JSON.stringify(reasons)}, lost ${JSON.stringify(lost)}`);
      for (const r of reasons) assert.match(r, /^qty: (minimum|exclusiveMinimum|maximum|exclusiveMaximum) tightened from .+ to .+$/);
    }),
    { numRuns: 1500 },
  );
});
