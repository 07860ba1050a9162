import { createAjv } from './src/schema/compiler.ts';
const ajv = createAjv();
const v = (s: object, d: unknown) => { try { return ajv.compile(s)(d); } catch (e) { return 'throws ' + (e as Error).constructor.name; } };
const cases: [string, object, unknown][] = [
  ['uniq f=2 len2', { prefixItems: [{}, {}, { type: 'integer' }], uniqueItems: true }, [1, 1]],
  ['uniq+items f=2 len2', { prefixItems: [{}, {}, { type: 'integer' }], items: {}, uniqueItems: true }, [1, 1]],
  ['contains f=1 len1 comment', { prefixItems: [{ $comment: 'x' }, { type: 'integer' }], contains: { type: 'string' } }, [1]],
  ['contains f=0 false-prefix', { prefixItems: [false], contains: { type: 'string' } }, []],
  ['maxContains f=2 len2', { prefixItems: [{}, {}, { type: 'integer' }], contains: {type:'integer'}, maxContains: 1 }, [1, 1]],
  ['minContains0 max', { prefixItems: [{ type: 'integer' }], contains: {type:'integer'}, minContains: 0, maxContains: 0 }, []],
  ['maxItems f=2 len2', { prefixItems: [{}, {}, { type: 'integer' }], maxItems: 1 }, [1, 1]],
  ['minItems f=2 len1', { prefixItems: [{}, {}, { type: 'integer' }], minItems: 2 }, [1]],
  ['items false f=2 len2', { prefixItems: [{}, {}, { type: 'integer' }], items: false }, [1, 1]],
];
for (const [n, s, d] of cases) console.log(n, v(s, d));
console.log(ajv.compile({ prefixItems: [{}, {}, { type: 'integer' }], uniqueItems: true , contains: {type: 'string'}}).toString());
