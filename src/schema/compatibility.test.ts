import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backwardIncompatibilities } from './compatibility.js';

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
  ['type added where any was allowed', variant((s) => { s.properties.section.type = 'string'; }), /section: type narrowed from any/],
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
