import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backwardIncompatibilities, KEYWORDS } from './compatibility.js';
import { createAjv } from './compiler.js';

const base = {
  type: 'object',
  properties: {
    article_id: { type: 'string', minLength: 1, maxLength: 64 },
    user_id: { type: 'string' },
    read_ms: { type: 'integer', minimum: 0, maximum: 3_600_000 },
    section: { enum: ['news', 'sport', 'test'] },
    tags: { type: 'array', items: { type: 'string' }, maxItems: 10 },
  },
  required: ['article_id'],
};

function variant(mutate: (s: any) => void): any {
  const s = structuredClone(base);
  mutate(s);
  return s;
}

const refused: [string, any, RegExp][] = [
  ['new required field', variant((s) => s.required.push('user_id')), /new required field "user_id"/],
  ['property removed under additionalProperties:false', variant((s) => { delete s.properties.user_id; s.additionalProperties = false; }), /user_id: property removed/],
  ['object closed', variant((s) => { s.additionalProperties = false; }), /additionalProperties is now false/],
  ['type narrowed', variant((s) => { s.properties.read_ms.type = 'string'; }), /read_ms: type narrowed: integer/],
  ['enum narrowed', variant((s) => { s.properties.section.enum = ['news', 'sport']; }), /section: enum narrowed: "test"/],
  ['minimum tightened', variant((s) => { s.properties.read_ms.minimum = 10; }), /read_ms: minimum tightened from 0 to 10/],
  ['maximum tightened', variant((s) => { s.properties.read_ms.maximum = 1000; }), /maximum tightened/],
  ['maxLength tightened', variant((s) => { s.properties.article_id.maxLength = 8; }), /article_id: maxLength tightened/],
  ['minLength added', variant((s) => { s.properties.user_id.minLength = 3; }), /user_id: minLength tightened from none to 3/],
  ['maxItems tightened', variant((s) => { s.properties.tags.maxItems = 2; }), /tags: maxItems tightened/],
  ['items type narrowed', variant((s) => { s.properties.tags.items.type = 'integer'; }), /tags\[\]: type narrowed/],
  ['pattern added', variant((s) => { s.properties.user_id.pattern = '^u'; }), /user_id: pattern changed/],
  ['format added', variant((s) => { s.properties.user_id.format = 'email'; }), /format changed/],
  ['enum added', variant((s) => { s.properties.user_id.enum = ['a']; }), /user_id: enum added/],
  ['opaque keyword changed', variant((s) => { s.properties.user_id.oneOf = [{ minLength: 2 }]; }), /"oneOf" changed/],
  ['type added where any was allowed', variant((s) => { s.properties.user_id.type = ['string', 'null']; s.properties.section.type = 'integer'; }), /section: type narrowed: "news", "sport", "test" no longer accepted \(now integer\)/],
  ['schema false', false, /rejects everything/],
];

const accepted: [string, any][] = [
  ['identical', structuredClone(base)],
  ['optional property added', variant((s) => { s.properties.referrer = { type: 'string' }; })],
  ['required field dropped', variant((s) => { s.required = []; })],
  ['type widened', variant((s) => { s.properties.read_ms.type = ['integer', 'null']; })],
  ['integer widened to number', variant((s) => { s.properties.read_ms.type = 'number'; })],
  ['enum widened', variant((s) => { s.properties.section.enum.push('culture'); })],
  ['bounds loosened', variant((s) => { s.properties.read_ms.maximum = 7_200_000; delete s.properties.article_id.minLength; })],
  ['description changed', variant((s) => { s.description = 'page views'; })],
  ['schema true', true],
];

for (const [name, next, pattern] of refused) {
  test(`backward compatibility refuses: ${name}`, () => {
    const reasons = backwardIncompatibilities(base, next);
    assert.ok(reasons.length > 0, 'expected a reason');
    assert.ok(reasons.some((r) => pattern.test(r)), `reasons: ${reasons.join(' | ')}`);
  });
}

for (const [name, next] of accepted) {
  test(`backward compatibility accepts: ${name}`, () => {
    assert.deepEqual(backwardIncompatibilities(base, next), []);
  });
}

test('a property removed from an open object is still accepted by additionalProperties', () => {
  assert.deepEqual(backwardIncompatibilities(base, variant((s) => delete s.properties.user_id)), []);
});

// ---- every keyword the check understands: a widening it accepts, a narrowing it refuses --------------------------

const ajv = createAjv();
const accepts = (schema: unknown, event: unknown) => ajv.compile(schema as object)(event);

/** `{ qty: s }` as the only property, so reasons name the path `qty`. */
const at = (s: unknown) => ({ type: 'object', properties: { qty: s } });

interface Row {
  readonly name: string;
  readonly before: unknown;
  readonly after: unknown;
  /** For a refusal: what a reason must say. Undefined: the change must be accepted. */
  readonly reason?: RegExp;
  /** For a refusal: an event the old schema accepts and the new one rejects (checked with Ajv). */
  readonly witness?: unknown;
}

const widen = (name: string, before: unknown, after: unknown): Row => ({ name, before, after });
const narrow = (name: string, before: unknown, after: unknown, reason: RegExp, witness?: unknown): Row => ({ name, before, after, reason, witness });

const rows: Row[] = [
  // the reported bug and the exclusive/inclusive pairs
  widen('exclusiveMinimum 0 -> minimum 0', at({ type: 'number', exclusiveMinimum: 0 }), at({ type: 'number', minimum: 0 })),
  narrow('minimum 0 -> exclusiveMinimum 0', at({ type: 'number', minimum: 0 }), at({ type: 'number', exclusiveMinimum: 0 }), /^qty: exclusiveMinimum tightened from minimum 0 to 0$/, { qty: 0 }),
  widen('exclusiveMaximum 10 -> maximum 10', at({ type: 'number', exclusiveMaximum: 10 }), at({ type: 'number', maximum: 10 })),
  narrow('maximum 10 -> exclusiveMaximum 10', at({ type: 'number', maximum: 10 }), at({ type: 'number', exclusiveMaximum: 10 }), /^qty: exclusiveMaximum tightened from maximum 10 to 10$/, { qty: 10 }),
  widen('minimum 1 -> exclusiveMinimum 0', at({ type: 'number', minimum: 1 }), at({ type: 'number', exclusiveMinimum: 0 })),
  narrow('exclusiveMinimum 0 -> minimum 0.5', at({ type: 'number', exclusiveMinimum: 0 }), at({ type: 'number', minimum: 0.5 }), /^qty: minimum tightened from exclusiveMinimum 0 to 0.5$/, { qty: 0.25 }),
  widen('integer: exclusiveMinimum 0 -> minimum 1', at({ type: 'integer', exclusiveMinimum: 0 }), at({ type: 'integer', minimum: 1 })),
  narrow('number: exclusiveMinimum 0 -> minimum 1', at({ type: 'number', exclusiveMinimum: 0 }), at({ type: 'number', minimum: 1 }), /^qty: minimum tightened from exclusiveMinimum 0 to 1$/, { qty: 0.5 }),
  narrow('integer: exclusiveMinimum 0 -> minimum 2', at({ type: 'integer', exclusiveMinimum: 0 }), at({ type: 'integer', minimum: 2 }), /^qty: minimum tightened from exclusiveMinimum 0 to 2$/, { qty: 1 }),
  narrow('integer: exclusiveMaximum 10 -> maximum 8', at({ type: 'integer', exclusiveMaximum: 10 }), at({ type: 'integer', maximum: 8 }), /^qty: maximum tightened from exclusiveMaximum 10 to 8$/, { qty: 9 }),
  widen('integer: exclusiveMaximum 10 -> maximum 9', at({ type: 'integer', exclusiveMaximum: 10 }), at({ type: 'integer', maximum: 9 })),
  widen('both present -> the inclusive one only', at({ type: 'number', minimum: 0, exclusiveMinimum: 0 }), at({ type: 'number', minimum: 0 })),
  widen('both present, equal bounds kept', at({ type: 'number', minimum: 0, exclusiveMinimum: 0 }), at({ type: 'number', exclusiveMinimum: 0 })),
  narrow('exclusiveMinimum added beside an equal minimum', at({ type: 'number', minimum: 0 }), at({ type: 'number', minimum: 0, exclusiveMinimum: 0 }), /^qty: exclusiveMinimum tightened from minimum 0 to 0$/, { qty: 0 }),
  widen('minimum lowered', at({ type: 'number', minimum: 5 }), at({ type: 'number', minimum: 1 })),
  narrow('minimum raised', at({ type: 'number', minimum: 1 }), at({ type: 'number', minimum: 5 }), /^qty: minimum tightened from 1 to 5$/, { qty: 1 }),
  narrow('minimum added', at({ type: 'number' }), at({ type: 'number', minimum: 0 }), /^qty: minimum tightened from none to 0$/, { qty: -1 }),
  widen('maximum raised', at({ type: 'number', maximum: 5 }), at({ type: 'number', maximum: 9 })),
  narrow('maximum lowered', at({ type: 'number', maximum: 9 }), at({ type: 'number', maximum: 5 }), /^qty: maximum tightened from 9 to 5$/, { qty: 9 }),
  widen('exclusiveMaximum raised', at({ exclusiveMaximum: 5 }), at({ exclusiveMaximum: 6 })),
  narrow('exclusiveMaximum lowered', at({ exclusiveMaximum: 6 }), at({ exclusiveMaximum: 5 }), /^qty: exclusiveMaximum tightened from 6 to 5$/, { qty: 5.5 }),
  widen('a bound on numbers added where numbers were not accepted', at({ type: 'string' }), at({ type: 'string', minimum: 3 })),
  widen('enum values within a new bound', at({ enum: [1, 2] }), at({ minimum: 1 })),
  narrow('enum value outside a new bound', at({ enum: [0, 1] }), at({ minimum: 1 }), /^qty: minimum 1 rejects 0, which was accepted before$/, { qty: 0 }),
  // multipleOf
  widen('multipleOf removed', at({ type: 'number', multipleOf: 5 }), at({ type: 'number' })),
  narrow('multipleOf added', at({ type: 'number' }), at({ type: 'number', multipleOf: 5 }), /^qty: multipleOf 5 now required \(was "none"\)$/, { qty: 1 }),
  narrow('multipleOf 2 -> 1 (Ajv: 1.5e21 / 1 fails its parseInt test)', at({ type: 'number', multipleOf: 2 }), at({ type: 'number', multipleOf: 1 }), /^qty: multipleOf 1 now required \(was 2\)$/, { qty: 1.5e21 }),
  // type
  widen('integer -> number', at({ type: 'integer' }), at({ type: 'number' })),
  narrow('number -> integer', at({ type: 'number' }), at({ type: 'integer' }), /^qty: type narrowed: number is no longer accepted \(now integer\)$/, { qty: 1.5 }),
  widen('type -> type array', at({ type: 'string' }), at({ type: ['string', 'null'] })),
  narrow('type array shrunk', at({ type: ['string', 'null'] }), at({ type: 'string' }), /^qty: type narrowed: null is no longer accepted \(now string\)$/, { qty: null }),
  widen('nullable: true added', at({ type: 'string' }), at({ type: 'string', nullable: true })),
  narrow('nullable: true removed', at({ type: 'string', nullable: true }), at({ type: 'string' }), /^qty: type narrowed: null is no longer accepted \(now string\)$/, { qty: null }),
  narrow('type added', at({}), at({ type: 'string' }), /^qty: type narrowed from any to string$/, { qty: 1 }),
  widen('type added that every enum value has', at({ enum: ['a', 'b'] }), at({ type: 'string', enum: ['a', 'b'] })),
  narrow('type added that an enum value lacks', at({ enum: ['a', 1] }), at({ type: 'string' }), /^qty: type narrowed: 1 no longer accepted \(now string\)$/, { qty: 1 }),
  // enum / const
  widen('enum grown', at({ enum: ['a'] }), at({ enum: ['a', 'b'] })),
  narrow('enum shrunk', at({ enum: ['a', 'b'] }), at({ enum: ['a'] }), /^qty: enum narrowed: "b" no longer accepted$/, { qty: 'b' }),
  narrow('enum added', at({ type: 'string' }), at({ type: 'string', enum: ['a'] }), /^qty: enum added: values outside \["a"\] are now rejected$/, { qty: 'b' }),
  widen('enum over every boolean added to a boolean', at({ type: 'boolean' }), at({ enum: [true, false] })),
  widen('const -> enum', at({ const: 'a' }), at({ enum: ['a', 'b'] })),
  narrow('enum -> const', at({ enum: ['a', 'b'] }), at({ const: 'a' }), /^qty: const "a" now required$/, { qty: 'b' }),
  widen('const removed', at({ const: { x: 1 } }), at({ type: 'object' })),
  // strings
  widen('minLength lowered', at({ type: 'string', minLength: 3 }), at({ type: 'string', minLength: 1 })),
  narrow('minLength raised', at({ type: 'string', minLength: 1 }), at({ type: 'string', minLength: 3 }), /^qty: minLength tightened from 1 to 3$/, { qty: 'ab' }),
  widen('maxLength raised', at({ type: 'string', maxLength: 3 }), at({ type: 'string', maxLength: 8 })),
  narrow('maxLength lowered', at({ type: 'string', maxLength: 8 }), at({ type: 'string', maxLength: 3 }), /^qty: maxLength tightened from 8 to 3$/, { qty: 'abcd' }),
  widen('pattern removed', at({ type: 'string', pattern: '^a' }), at({ type: 'string' })),
  narrow('pattern changed (refused: cannot be proven)', at({ type: 'string', pattern: '^a' }), at({ type: 'string', pattern: '^[ab]' }), /^qty: pattern changed from "\^a" to "\^\[ab\]"$/),
  narrow('pattern added', at({ type: 'string' }), at({ type: 'string', pattern: '^a' }), /^qty: pattern changed from null to "\^a"$/, { qty: 'b' }),
  widen('pattern added that every enum value matches', at({ enum: ['ab', 'ac'] }), at({ pattern: '^a' })),
  widen('format removed', at({ type: 'string', format: 'email' }), at({ type: 'string' })),
  narrow('format added', at({ type: 'string' }), at({ type: 'string', format: 'email' }), /^qty: format changed from null to "email"$/, { qty: 'x' }),
  narrow('formatMinimum changed', at({ type: 'string', format: 'date', formatMinimum: '2020-01-01' }), at({ type: 'string', format: 'date', formatMinimum: '2021-01-01' }), /^qty: "formatMinimum" changed/, { qty: '2020-06-01' }),
  widen('formatMinimum removed', at({ type: 'string', format: 'date', formatMinimum: '2020-01-01' }), at({ type: 'string', format: 'date' })),
  widen('formatMaximum removed', at({ type: 'string', format: 'date', formatMaximum: '2020-01-01' }), at({ type: 'string', format: 'date' })),
  narrow('formatMaximum added', at({ type: 'string', format: 'date' }), at({ type: 'string', format: 'date', formatMaximum: '2020-01-01' }), /^qty: "formatMaximum" changed/, { qty: '2021-01-01' }),
  widen('formatExclusiveMinimum removed', at({ type: 'string', format: 'date', formatExclusiveMinimum: '2020-01-01' }), at({ type: 'string', format: 'date' })),
  narrow('formatExclusiveMinimum added', at({ type: 'string', format: 'date' }), at({ type: 'string', format: 'date', formatExclusiveMinimum: '2020-01-01' }), /^qty: "formatExclusiveMinimum" changed/, { qty: '2020-01-01' }),
  widen('formatExclusiveMaximum removed', at({ type: 'string', format: 'date', formatExclusiveMaximum: '2020-01-01' }), at({ type: 'string', format: 'date' })),
  narrow('formatExclusiveMaximum added', at({ type: 'string', format: 'date' }), at({ type: 'string', format: 'date', formatExclusiveMaximum: '2020-01-01' }), /^qty: "formatExclusiveMaximum" changed/, { qty: '2020-01-01' }),
  // arrays
  widen('items widened', at({ type: 'array', items: { type: 'integer' } }), at({ type: 'array', items: { type: 'number' } })),
  narrow('items narrowed', at({ type: 'array', items: { type: 'number' } }), at({ type: 'array', items: { type: 'integer' } }), /^qty\[\]: type narrowed: number is no longer accepted/, { qty: [1.5] }),
  widen('prefixItems widened', at({ type: 'array', prefixItems: [{ const: 'a' }] }), at({ type: 'array', prefixItems: [{ enum: ['a', 'b'] }] })),
  narrow('prefixItems narrowed', at({ type: 'array', prefixItems: [{ enum: ['a', 'b'] }] }), at({ type: 'array', prefixItems: [{ const: 'a' }] }), /^qty\[0\]: const "a" now required$/, { qty: ['b'] }),
  narrow('prefixItems added where items applied', at({ type: 'array', items: { type: 'number' } }), at({ type: 'array', prefixItems: [{ type: 'integer' }], items: { type: 'number' } }), /^qty\[0\]: type narrowed: number/, { qty: [1.5] }),
  widen('items false lifted', at({ type: 'array', prefixItems: [{}], items: false }), at({ type: 'array', prefixItems: [{}] })),
  narrow('items false added', at({ type: 'array', prefixItems: [{}] }), at({ type: 'array', prefixItems: [{}], items: false }), /^qty\[\]: the new schema is false/, { qty: [1, 2] }),
  widen('maxItems implied by items false', at({ type: 'array', prefixItems: [{}, {}], items: false }), at({ type: 'array', maxItems: 2 })),
  widen('minItems lowered', at({ type: 'array', minItems: 2 }), at({ type: 'array', minItems: 1 })),
  narrow('minItems raised', at({ type: 'array', minItems: 1 }), at({ type: 'array', minItems: 2 }), /^qty: minItems tightened from 1 to 2$/, { qty: [1] }),
  widen('maxItems raised', at({ type: 'array', maxItems: 2 }), at({ type: 'array', maxItems: 3 })),
  narrow('maxItems lowered', at({ type: 'array', maxItems: 3 }), at({ type: 'array', maxItems: 2 }), /^qty: maxItems tightened from 3 to 2$/, { qty: [1, 2, 3] }),
  widen('uniqueItems dropped', at({ type: 'array', uniqueItems: true }), at({ type: 'array' })),
  narrow('uniqueItems added', at({ type: 'array' }), at({ type: 'array', uniqueItems: true }), /^qty: uniqueItems now required$/, { qty: [1, 1] }),
  narrow('uniqueItems kept, items type changed (Ajv checks only elements of items\' type)',
    at({ type: 'array', prefixItems: [{ type: 'object' }, { type: 'object' }], items: { type: 'integer' }, uniqueItems: true }),
    at({ type: 'array', prefixItems: [{ type: 'object' }, { type: 'object' }], uniqueItems: true }),
    /^qty: uniqueItems now compares all elements \(was integer\)/, { qty: [{}, {}] }),
  narrow('contains kept, the prefixItems entry that made Ajv skip it on [] made trivial', at({ type: 'array', prefixItems: [{ type: 'integer' }], contains: { type: 'string' } }), at({ type: 'array', prefixItems: [{}], contains: { type: 'string' } }),
    /^qty: contains now applies to arrays of 0 element\(s\), which the validator did not check before/, { qty: [] }),
  narrow('uniqueItems kept, Ajv no longer skips it on short arrays', at({ type: 'array', prefixItems: [{}, {}, { type: 'integer' }], uniqueItems: true }), at({ type: 'array', prefixItems: [{}, {}, {}], uniqueItems: true }),
    /^qty: uniqueItems now applies to arrays of 2 element\(s\), which the validator did not check before/, { qty: [1, 1] }),
  widen('contains kept, arrays skipped before cannot occur', at({ type: 'array', minItems: 1, prefixItems: [{ type: 'integer' }], contains: { type: 'string' } }), at({ type: 'array', minItems: 1, contains: { type: 'string' } })),
  widen('contains widened', at({ type: 'array', contains: { const: 1 } }), at({ type: 'array', contains: { enum: [1, 2] } })),
  narrow('contains narrowed', at({ type: 'array', contains: { enum: [1, 2] } }), at({ type: 'array', contains: { const: 1 } }), /^qty: contains changed/, { qty: [2] }),
  narrow('contains added', at({ type: 'array' }), at({ type: 'array', contains: { const: 1 } }), /^qty: contains added/, { qty: [] }),
  widen('minContains lowered', at({ type: 'array', contains: { const: 1 }, minContains: 2 }), at({ type: 'array', contains: { const: 1 } })),
  narrow('minContains raised', at({ type: 'array', contains: { const: 1 } }), at({ type: 'array', contains: { const: 1 }, minContains: 2 }), /^qty: contains changed \(with minContains 2\)/, { qty: [1] }),
  widen('maxContains raised', at({ type: 'array', contains: { const: 1 }, maxContains: 1 }), at({ type: 'array', contains: { const: 1 }, maxContains: 2 })),
  narrow('contains widened under a maxContains', at({ type: 'array', contains: { const: 1 }, maxContains: 1 }), at({ type: 'array', contains: { enum: [1, 2] }, maxContains: 1 }), /^qty: contains changed \(with minContains 1, maxContains 1\)/, { qty: [1, 2] }),
  // objects
  widen('required dropped', at({ type: 'object', required: ['a'] }), at({ type: 'object' })),
  narrow('required added', at({ type: 'object' }), at({ type: 'object', required: ['a'] }), /^qty: new required field "a"$/, { qty: {} }),
  widen('additionalProperties false lifted', at({ type: 'object', additionalProperties: false }), at({ type: 'object' })),
  narrow('additionalProperties false added', at({ type: 'object' }), at({ type: 'object', additionalProperties: false }), /^qty: additionalProperties is now false: unknown fields are rejected$/, { qty: { z: 1 } }),
  widen('additionalProperties schema widened', at({ additionalProperties: { type: 'integer' } }), at({ additionalProperties: { type: 'number' } })),
  narrow('additionalProperties schema narrowed', at({ additionalProperties: { type: 'number' } }), at({ additionalProperties: { type: 'integer' } }), /^qty \(additional properties\): type narrowed: number/, { qty: { z: 1.5 } }),
  widen('property added to a closed object', at({ type: 'object', additionalProperties: false }), at({ type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false })),
  narrow('property added, narrower than additionalProperties', at({ additionalProperties: { type: 'number' } }), at({ properties: { a: { type: 'integer' } }, additionalProperties: { type: 'number' } }), /^qty\.a: type narrowed: number/, { qty: { a: 1.5 } }),
  narrow('property removed from a closed object', at({ properties: { a: {} }, additionalProperties: false }), at({ additionalProperties: false }), /^qty\.a: property removed while additionalProperties is false$/, { qty: { a: 1 } }),
  widen('nested property widened', at({ properties: { a: { properties: { b: { type: 'integer' } } } } }), at({ properties: { a: { properties: { b: { type: ['integer', 'string'] } } } } })),
  narrow('nested property narrowed', at({ properties: { a: { properties: { b: { type: 'integer', minimum: 0 } } } } }), at({ properties: { a: { properties: { b: { type: 'integer', minimum: 1 } } } } }), /^qty\.a\.b: minimum tightened from 0 to 1$/, { qty: { a: { b: 0 } } }),
  widen('patternProperties widened', at({ patternProperties: { '^x': { type: 'integer' } } }), at({ patternProperties: { '^x': { type: 'number' } } })),
  narrow('patternProperties added', at({ type: 'object' }), at({ type: 'object', patternProperties: { '^x': { type: 'integer' } } }), /^qty \(properties matching \/\^x\/\): type narrowed from any to integer$/, { qty: { x1: 'a' } }),
  narrow('patternProperties now covers a declared property', at({ properties: { xa: { type: 'number' } } }), at({ properties: { xa: { type: 'number' } }, patternProperties: { '^x': { type: 'integer' } } }), /^qty\.xa: type narrowed: number/, { qty: { xa: 1.5 } }),
  widen('minProperties lowered', at({ type: 'object', minProperties: 2 }), at({ type: 'object', minProperties: 1 })),
  narrow('minProperties raised', at({ type: 'object', minProperties: 1 }), at({ type: 'object', minProperties: 2 }), /^qty: minProperties tightened from 1 to 2$/, { qty: { a: 1 } }),
  widen('maxProperties raised', at({ type: 'object', maxProperties: 1 }), at({ type: 'object', maxProperties: 2 })),
  narrow('maxProperties lowered', at({ type: 'object', maxProperties: 2 }), at({ type: 'object', maxProperties: 1 }), /^qty: maxProperties tightened from 2 to 1$/, { qty: { a: 1, b: 2 } }),
  widen('propertyNames widened', at({ propertyNames: { maxLength: 2 } }), at({ propertyNames: { maxLength: 3 } })),
  narrow('propertyNames narrowed', at({ propertyNames: { maxLength: 3 } }), at({ propertyNames: { maxLength: 2 } }), /^qty \(property names\): maxLength tightened from 3 to 2$/, { qty: { abc: 1 } }),
  widen('propertyNames that every name of a closed object meets', at({ properties: { ab: {} }, additionalProperties: false }), at({ properties: { ab: {} }, additionalProperties: false, propertyNames: { pattern: '^a' } })),
  widen('dependentRequired dropped', at({ dependentRequired: { a: ['b'] } }), at({})),
  narrow('dependentRequired added', at({ type: 'object' }), at({ type: 'object', dependentRequired: { a: ['b'] } }), /^qty: dependentRequired: "b" now required when "a" is present$/, { qty: { a: 1 } }),
  widen('dependentSchemas widened', at({ dependentSchemas: { a: { required: ['b', 'c'] } } }), at({ dependentSchemas: { a: { required: ['b'] } } })),
  narrow('dependentSchemas narrowed', at({ dependentSchemas: { a: { required: ['b'] } } }), at({ dependentSchemas: { a: { required: ['b', 'c'] } } }), /^qty \(when "a" is present\): new required field "c"$/, { qty: { a: 1, b: 1 } }),
  widen('dependencies (schema form) widened', at({ dependencies: { a: { required: ['b', 'c'] } } }), at({ dependencies: { a: { required: ['b'] } } })),
  narrow('dependencies (array form) added', at({ type: 'object' }), at({ type: 'object', dependencies: { a: ['b'] } }), /^qty: dependencies: "b" now required when "a" is present$/, { qty: { a: 1 } }),
  // applicators and references
  widen('allOf member widened', at({ allOf: [{ minimum: 1 }] }), at({ allOf: [{ minimum: 0 }] })),
  narrow('allOf member narrowed', at({ allOf: [{ minimum: 0 }] }), at({ allOf: [{ minimum: 1 }] }), /^qty: minimum tightened from 0 to 1$/, { qty: 0 }),
  widen('anyOf member added', at({ anyOf: [{ type: 'string' }] }), at({ anyOf: [{ type: 'string' }, { type: 'null' }] })),
  narrow('anyOf member removed', at({ anyOf: [{ type: 'string' }, { type: 'null' }] }), at({ anyOf: [{ type: 'string' }] }), /^qty: "anyOf" changed; it cannot be proven/, { qty: null }),
  narrow('oneOf changed (refused: cannot be proven)', at({ oneOf: [{ type: 'string' }] }), at({ oneOf: [{ type: 'string' }, { type: 'null' }] }), /^qty: "oneOf" changed; it cannot be proven/),
  widen('not narrowed (excludes less)', at({ not: { type: ['string', 'null'] } }), at({ not: { type: 'null' } })),
  narrow('not widened (excludes more)', at({ not: { type: 'null' } }), at({ not: { type: ['string', 'null'] } }), /^qty: "not" changed; it cannot be proven/, { qty: 'a' }),
  widen('then widened', at({ if: { type: 'string' }, then: { minLength: 2 } }), at({ if: { type: 'string' }, then: { minLength: 1 } })),
  narrow('then narrowed', at({ if: { type: 'string' }, then: { minLength: 1 } }), at({ if: { type: 'string' }, then: { minLength: 2 } }), /^qty: "then\/else" changed; it cannot be proven/, { qty: 'a' }),
  widen('else widened', at({ if: { type: 'string' }, then: { minLength: 1 }, else: { minimum: 1 } }), at({ if: { type: 'string' }, then: { minLength: 1 }, else: { minimum: 0 } })),
  narrow('else narrowed', at({ if: { type: 'string' }, then: { minLength: 1 }, else: { minimum: 0 } }), at({ if: { type: 'string' }, then: { minLength: 1 }, else: { minimum: 1 } }), /^qty: "then\/else" changed; it cannot be proven/, { qty: 0 }),
  narrow('if changed', at({ if: { type: 'string' }, then: { minLength: 1 } }), at({ if: { type: 'number' }, then: { minimum: 1 } }), /^qty: "if" changed; it cannot be proven/, { qty: 0 }),
  widen('$ref target widened', { $defs: { q: { type: 'integer' } }, properties: { qty: { $ref: '#/$defs/q' } } }, { $defs: { q: { type: 'number' } }, properties: { qty: { $ref: '#/$defs/q' } } }),
  narrow('$ref target narrowed', { $defs: { q: { type: 'number' } }, properties: { qty: { $ref: '#/$defs/q' } } }, { $defs: { q: { type: 'integer' } }, properties: { qty: { $ref: '#/$defs/q' } } }, /^qty: type narrowed: number/, { qty: 1.5 }),
  narrow('unchanged allOf with a narrowed $ref target', { $defs: { q: { type: 'number' } }, properties: { qty: { allOf: [{ $ref: '#/$defs/q' }] } } }, { $defs: { q: { type: 'integer' } }, properties: { qty: { allOf: [{ $ref: '#/$defs/q' }] } } }, /^qty: type narrowed: number/, { qty: 1.5 }),
  narrow('unchanged not with a widened $ref target', { $defs: { q: { type: 'integer' } }, properties: { qty: { not: { $ref: '#/$defs/q' } } } }, { $defs: { q: { type: 'number' } }, properties: { qty: { not: { $ref: '#/$defs/q' } } } }, /^qty: "not" changed; it cannot be proven/, { qty: 1.5 }),
  widen('recursive $ref widened', { $defs: { t: { type: 'object', properties: { n: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/t' } } } } }, $ref: '#/$defs/t' },
    { $defs: { t: { type: 'object', properties: { n: { type: 'number' }, kids: { type: 'array', items: { $ref: '#/$defs/t' } } } } }, $ref: '#/$defs/t' }),
  narrow('recursive $ref narrowed', { $defs: { t: { type: 'object', properties: { n: { type: 'number' }, kids: { type: 'array', items: { $ref: '#/$defs/t' } } } } }, $ref: '#/$defs/t' },
    { $defs: { t: { type: 'object', properties: { n: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/t' } } } } }, $ref: '#/$defs/t' }, /^n: type narrowed: number/, { kids: [{ n: 1.5 }] }),
  narrow('unevaluatedProperties with the schema around it changed', at({ properties: { a: {} }, unevaluatedProperties: false }), at({ unevaluatedProperties: false }), /^qty: "unevaluatedProperties" applies and the schema around it changed/, { qty: { a: 1 } }),
  widen('unevaluatedItems dropped', at({ prefixItems: [{}], unevaluatedItems: false }), at({ prefixItems: [{}] })),
  widen('unevaluatedProperties dropped', at({ properties: { a: {} }, unevaluatedProperties: false }), at({ properties: { a: {} } })),
  narrow('unevaluatedItems with the schema around it changed', at({ prefixItems: [{}], unevaluatedItems: false }), at({ unevaluatedItems: false }), /^qty: "unevaluatedItems" applies/, { qty: [1] }),
  // keywords the check does not model, and keywords the validator ignores
  narrow('$dynamicRef in a changed schema', { $defs: { q: { $dynamicAnchor: 'q', type: 'number' } }, properties: { qty: { $dynamicRef: '#q' } } }, { $defs: { q: { $dynamicAnchor: 'q', type: 'number' } }, properties: { qty: { $dynamicRef: '#q' } }, description: 'x' }, /^qty: "\$dynamicRef" is not supported by the compatibility check/),
  narrow('$recursiveRef in a changed schema', { $recursiveAnchor: true, properties: { qty: { $recursiveRef: '#' } } }, { $recursiveAnchor: true, properties: { qty: { $recursiveRef: '#' } }, description: 'x' }, /^qty: "\$recursiveRef" is not supported by the compatibility check/),
  narrow('$recursiveAnchor in a changed schema', { $recursiveAnchor: true, type: 'object' }, { $recursiveAnchor: true, type: ['object', 'null'] }, /^the event: "\$recursiveAnchor" is not supported by the compatibility check/),
  widen('unchanged oneOf, pattern and $ref beside a widening', { $defs: { s: { type: 'string' } }, properties: { a: { oneOf: [{ type: 'string' }, { type: 'null' }] }, b: { pattern: '^x' }, c: { $ref: '#/$defs/s' }, qty: { type: 'integer' } } },
    { $defs: { s: { type: 'string' } }, properties: { a: { oneOf: [{ type: 'string' }, { type: 'null' }] }, b: { pattern: '^x' }, c: { $ref: '#/$defs/s' }, qty: { type: 'number' } } }),
  widen('annotations and keywords Ajv ignores changed', at({ type: 'string', title: 'a', 'x-owner': 'ads', additionalItems: false }), at({ type: 'string', title: 'b', 'x-owner': 'growth', additionalItems: true, description: 'c' })),
];

for (const row of rows) {
  test(`${row.reason === undefined ? 'widening accepted' : 'narrowing refused'}: ${row.name}`, () => {
    const reasons = backwardIncompatibilities(row.before, row.after);
    if (row.reason === undefined) {
      assert.deepEqual(reasons, []);
      return;
    }
    assert.ok(reasons.some((r) => row.reason!.test(r)), `reasons: ${JSON.stringify(reasons)}`);
    if (row.witness !== undefined) {
      assert.equal(accepts(row.before, row.witness), true, 'the old schema accepts the witness');
      assert.equal(accepts(row.after, row.witness), false, 'the new schema rejects the witness');
    }
  });
}

test('the keyword table covers exactly the keywords the validator implements', () => {
  // $halflifeStep counts the references validation follows; the compiler strips it from a user's schema.
  assert.deepEqual(Object.keys(KEYWORDS).sort(), Object.keys(createAjv().RULES.all).filter((k) => k !== '$halflifeStep').sort());
});

test('every modelled keyword has a widening and a narrowing in the table', () => {
  const seen = (row: Row, kw: string) => JSON.stringify([row.before, row.after]).includes(`"${kw}"`);
  const missing: string[] = [];
  for (const [kw, how] of Object.entries(KEYWORDS)) {
    if (kw === '$comment' || kw === 'id') continue; // $comment has no effect; Ajv refuses to compile "id"
    const kinds = how === 'unsupported' ? [true] : [false, true];
    for (const narrowing of kinds) {
      if (!rows.some((r) => (r.reason !== undefined) === narrowing && seen(r, kw))) missing.push(`${kw} ${narrowing ? 'narrowing' : 'widening'}`);
    }
  }
  assert.deepEqual(missing, []);
});

test('schemas that refer to themselves at the same place (through not and $ref) are compared, not overflowed', () => {
  const d = { maxProperties: 0, maximum: -1, not: { $ref: '#/$defs/d', items: true } };
  const before = { $ref: '#/$defs/d', $defs: { d } };
  const after = { $ref: '#/$defs/d', $defs: { d: { ...d, unevaluatedItems: false } } };
  assert.ok(backwardIncompatibilities(before, after, { lenient: false }).length > 0);
  let deep: unknown = { type: 'string' };
  for (let i = 0; i < 20_000; i++) deep = { items: deep };
  assert.deepEqual(backwardIncompatibilities(deep, { items: deep, minItems: 0 }), ['the event: the schemas are nested too deeply to compare']);
});

test('the check runs schema patterns in linear time: a backtracking pattern cannot hang a registration', () => {
  const name = `${'a'.repeat(40)}!`;
  const reasons = backwardIncompatibilities(
    { properties: { [name]: { type: 'string' } } },
    { properties: { [name]: { type: 'string' } }, patternProperties: { '^(a+)+$': { type: 'string' } } },
  );
  // (A backtracking engine takes about 2^40 steps to decide that the name does not match.)
  assert.ok(Array.isArray(reasons));
});
