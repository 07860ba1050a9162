import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { SchemaCompiler } from './compiler.js';
import { linearRegExp } from './linear-regexp.js';

// Patterns from a grammar that covers what the translation to RE2 rewrites: ., \s, \S, \d, \w, \b, escapes, classes.
const atom = fc.constantFrom(
  'a', 'b', 'A', '-', '0', 'é', '😀', '\\n', '\\r', '\\t', '\\v', '\\f', '\\0', '\\.', '\\/', '\\-', '\\u00e9', '\\u{1F600}', '\\uD83D\\uDE00', '\\x41', '\\cJ',
  '.', '\\s', '\\S', '\\d', '\\D', '\\w', '\\W', '[ab]', '[^a\\s]', '[a-c\\d]', '[\\b]', '[^]', '[]', '[\\-a]', '[😀é]', '\\p{L}', '\\P{Lu}', '\\p{Script=Latin}',
);
const pattern = fc.letrec<{ re: string }>((tie) => ({
  re: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    atom,
    fc.tuple(tie('re'), tie('re')).map(([x, y]) => x + y),
    fc.tuple(tie('re'), tie('re')).map(([x, y]) => `${x}|${y}`),
    fc.tuple(tie('re'), fc.constantFrom('*', '+', '?', '{1,2}', '*?', '{2}')).map(([x, q]) => `(?:${x})${q}`),
    tie('re').map((x) => `(${x})`),
    tie('re').map((x) => `^${x}`),
    tie('re').map((x) => `${x}$`),
    tie('re').map((x) => `\\b${x}\\B`),
  ),
})).re;
const text = fc.array(fc.constantFrom('a', 'b', 'A', '-', '0', '9', '_', ' ', '\n', '\r', '\t', '\v', '\f', '\0', '\u2028', '\u00a0', '\ufeff', '\u3000', 'é', 'É', '😀', '\u0008', '.', '/'), { maxLength: 12 }).map((a) => a.join(''));

test('a pattern matches on the linear-time engine exactly as on the native one (ECMA-262, u flag)', () => {
  fc.assert(
    fc.property(pattern, fc.array(text, { minLength: 1, maxLength: 8 }), (p, strings) => {
      let native: RegExp;
      try {
        native = new RegExp(p, 'u');
      } catch {
        assert.throws(() => linearRegExp(p), /is not a valid regular expression/);
        return;
      }
      const linear = linearRegExp(p);
      for (const s of strings) assert.equal(linear.test(s), native.test(s), `${JSON.stringify(p)} on ${JSON.stringify(s)}`);
    }),
    { numRuns: 3000 },
  );
});

test('schemas with several patterns and patternProperties validate as with the native engine', () => {
  const compiler = new SchemaCompiler();
  const native = new Ajv2020({ strict: false, ownProperties: true });
  const schemaOf = (a: string, b: string, k: string) => ({
    type: 'object',
    properties: { a: { type: 'string', pattern: a }, b: { type: 'string', pattern: b } },
    patternProperties: { [k]: { type: 'string', maxLength: 3 }, [a]: { type: 'string', minLength: 1 } },
  });
  fc.assert(
    fc.property(pattern, pattern, pattern, fc.dictionary(text, text, { maxKeys: 4 }), (a, b, k, data) => {
      let want: (d: unknown) => boolean;
      try {
        want = native.compile(schemaOf(a, b, k));
      } catch {
        return;
      }
      const got = compiler.compile('t', 1, schemaOf(a, b, k));
      for (const d of [data, { ...data, a: 'aA-' }, { ...data, b: '0 é' }]) assert.equal(got.validate(d).ok, want(d), JSON.stringify(d));
    }),
    { numRuns: 500 },
  );
});

test('patterns RE2 cannot run are refused at compile (SCHEMA_INVALID), the reason naming the pattern and why', () => {
  const c = new SchemaCompiler();
  const cases: [unknown, RegExp][] = [
    [{ type: 'string', pattern: '^(a)\\1$' }, /pattern "\^\(a\)\\\\1\$" uses a backreference/],
    [{ type: 'string', pattern: '(?<x>a)\\k<x>' }, /backreference \(\\k<name>\)/],
    [{ type: 'string', pattern: 'a(?=b)' }, /pattern "a\(\?=b\)" uses a lookaround/],
    [{ type: 'string', pattern: '(?<!a)b' }, /lookaround/],
    [{ type: 'object', patternProperties: { '^(?!x)': { type: 'integer' } } }, /pattern "\^\(\?!x\)" uses a lookaround/],
    [{ properties: { a: { pattern: '[\\S]' } } }, /\\S inside a character class/],
    [{ pattern: 'a{1001}' }, /cannot run on the linear-time engine \(RE2\).*repeat count/],
    [{ pattern: '(' }, /is not a valid regular expression/],
  ];
  for (const [schema, reason] of cases) {
    assert.throws(() => c.compile('t', 1, schema), (err: { code: string; message: string }) => {
      assert.equal(err.code, 'SCHEMA_INVALID');
      assert.match(err.message, reason);
      return true;
    }, JSON.stringify(schema));
  }
});

test('a schema whose $dynamicRef recursion fails every event is refused at compile (SCHEMA_INVALID)', () => {
  const c = new SchemaCompiler();
  const loops = [
    { $dynamicAnchor: 'n', $dynamicRef: '#n' },
    { $dynamicAnchor: 'n', anyOf: [{ $dynamicRef: '#n' }] },
    { $defs: { x: { $dynamicAnchor: 'n', not: { $dynamicRef: '#n' } } }, $ref: '#/$defs/x' },
    { $defs: { a: { $id: 'a', $dynamicAnchor: 'n', $ref: 'b' }, b: { $id: 'b', $dynamicRef: '#n' } }, $ref: 'a' },
  ];
  for (const schema of loops) {
    assert.throws(() => c.compile('t', 1, schema), (err: { code: string; message: string }) => {
      assert.equal(err.code, 'SCHEMA_INVALID');
      assert.match(err.message, /would fail every event/);
      return true;
    }, JSON.stringify(schema));
  }
  // Recursion that reads into the event (a tree) is fine.
  const tree = c.compile('t', 1, { $dynamicAnchor: 'node', type: 'object', properties: { kids: { type: 'array', items: { $dynamicRef: '#node' } } } });
  assert.deepEqual(tree.validate({ kids: [{ kids: [] }] }), { ok: true });
  assert.equal(tree.validate({ kids: [{ kids: 1 }] }).ok, false);
});

test('a pathological pattern on a 60-byte and a 100 KB string validates at once (pattern and patternProperties)', async () => {
  // In a child process that is killed at the deadline: the native engine would hold its thread for ever.
  const script = `
    import { SchemaCompiler } from ${JSON.stringify(new URL('./compiler.ts', import.meta.url).href)};
    const v = new SchemaCompiler().compile('t', 1, { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } }, patternProperties: { '^(b|bb)+$': { type: 'integer' } } });
    const out = [];
    for (const n of [60, 100_000]) {
      out.push(v.validate({ s: 'a'.repeat(n - 1) + '!' }).ok, v.validate({ s: 'a'.repeat(n) }).ok);
      out.push(v.validate({ ['b'.repeat(n - 1) + '!']: 'x' }).ok, v.validate({ ['b'.repeat(n)]: 'x' }).ok, v.validate({ ['b'.repeat(n)]: 1 }).ok);
    }
    console.log(JSON.stringify(out));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 60_000, killSignal: 'SIGKILL' });
  assert.deepEqual(JSON.parse(stdout), [false, true, true, false, true, false, true, true, false, true]);
});

test('uniqueItems validates as with Ajv\'s own keyword: same verdict, same message', () => {
  const ours = new SchemaCompiler();
  const native = new Ajv2020({ strict: false, ownProperties: true });
  const value = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, fc.constantFrom(0, -0, 1, 1.5, '1', '', 'a', 'null', 'true', '__proto__', 'constructor', true, false, null), fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b', 'c'), tie('v'), { maxKeys: 3 })),
  })).v;
  fc.assert(
    fc.property(fc.array(value, { maxLength: 8 }), fc.constantFrom(undefined, {}, { type: 'object' }, { type: 'array' }, { type: 'integer' }, { type: 'string' }, { type: ['string', 'null'] }, { type: ['number', 'boolean'] }, { type: ['integer', 'number'] }, { type: ['object', 'string'] }), (generated, items) => {
      const u = JSON.parse(JSON.stringify(generated)) as unknown[]; // plain objects, as events are
      // prefixItems let elements of other types than items' in: Ajv then skips them when items' types are scalar.
      const schema = { type: 'object', properties: { u: { type: 'array', uniqueItems: true, prefixItems: [{}, {}, {}], ...(items ? { items } : {}) } } };
      // Shuffled key order: deep equality ignores it.
      const copy = JSON.parse(JSON.stringify(u, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v))) as unknown[];
      const want = native.compile(schema);
      for (const data of [{ u }, { u: [...u, ...copy] }]) {
        const got = ours.compile('t', 1, schema).validate(data);
        assert.equal(got.ok, want(data), JSON.stringify(data));
        if (!got.ok) assert.equal(got.message.replace(/^data[^:]*: /, ''), want.errors![0].message);
      }
    }),
    { numRuns: 1000 },
  );
});

test('uniqueItems over 50,000 objects takes linear time', async () => {
  // Ajv's own keyword compares object items pairwise (about a minute here); the child is killed at the deadline.
  const script = `
    import { SchemaCompiler } from ${JSON.stringify(new URL('./compiler.ts', import.meta.url).href)};
    const v = new SchemaCompiler().compile('t', 1, { type: 'array', uniqueItems: true });
    const u = Array.from({ length: 50_000 }, (_, i) => ({ a: i, b: [i] }));
    console.log(JSON.stringify([v.validate(u).ok, v.validate([...u, { b: [7], a: 7 }]).ok]));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000, killSignal: 'SIGKILL' });
  assert.deepEqual(JSON.parse(stdout), [true, false]);
});

test('metered schemas stop an event at ingest.maxValidationSteps or ingest.maxValidationMs with SCHEMA_TOO_COSTLY', async () => {
  // In a child process that is killed at the deadline: without the meter, the first event takes minutes.
  const script = `
    import { SchemaCompiler } from ${JSON.stringify(new URL('./compiler.ts', import.meta.url).href)};
    const result = (f) => { try { return f(); } catch (err) { return err.code + ': ' + err.message; } };
    const steps = new SchemaCompiler({ maxValidationMs: 600_000 });
    const time = new SchemaCompiler({ maxValidationSteps: 1_000_000_000, maxValidationMs: 50 });
    // Each level tries a branch that recurses and then fails, then one that recurses again: 2^depth nodes.
    const ref = { properties: { x: { $ref: '#/$defs/n' } } };
    const exponential = { $defs: { n: { anyOf: [{ allOf: [ref, { required: ['never'] }] }, ref] } }, $ref: '#/$defs/n' };
    let deep = {};
    for (let i = 0; i < 30; i++) deep = { x: deep };
    // The same through $dynamicRef, and through a schema kept under "examples" (Ajv follows pointers anywhere).
    const dynamic = { $dynamicAnchor: 'n', anyOf: [{ allOf: [{ properties: { x: { $dynamicRef: '#n' } } }, { required: ['never'] }] }, { properties: { x: { $dynamicRef: '#n' } } }] };
    const examples = { examples: [{ type: 'object', properties: { x: { allOf: [{ $ref: '#/examples/0' }, { $ref: '#/examples/0' }] } } }], $ref: '#/examples/0' };
    // Few references, but each one loops over a long array: only the clock stops it.
    const wide = { $defs: { n: { anyOf: [{ allOf: [{ properties: { x: { $ref: '#/$defs/n' }, a: { items: { type: 'string' } } } }, { required: ['never'] }] }, { properties: { x: { $ref: '#/$defs/n' }, a: { items: { type: 'string' } } } }] } }, $ref: '#/$defs/n' };
    let wideEvent = { a: Array(20_000).fill('s') };
    for (let i = 0; i < 16; i++) wideEvent = { x: wideEvent };
    // A chain of $defs, each naming the one before twice: 2^k nodes for any event, no recursion.
    const defs = { a0: { type: 'object' } };
    for (let i = 1; i <= 40; i++) defs['a' + i] = { allOf: [{ $ref: '#/$defs/a' + (i - 1) }, { $ref: '#/$defs/a' + (i - 1) }] };
    // 1 + (2^(k+2) - 3) nodes for {}: 62 for a4, 126 for a5.
    const small = new SchemaCompiler({ maxValidationSteps: 100 });
    const a4 = small.compile('t', 1, { $defs: defs, $ref: '#/$defs/a4' });
    const t0 = performance.now();
    const wideVerdict = time.compile('t', 1, wide).validate(wideEvent);
    const wideMs = performance.now() - t0;
    console.log(JSON.stringify({
      recursive: steps.compile('t', 1, exponential).validate(deep),
      dynamic: steps.compile('t', 1, dynamic).validate(deep),
      examples: steps.compile('t', 1, examples).validate(deep),
      timed: time.compile('t', 1, exponential).validate(deep),
      wide: wideVerdict,
      wideMs,
      laughs: result(() => steps.compile('t', 1, { $defs: defs, $ref: '#/$defs/a40' })),
      a5: result(() => small.compile('t', 1, { $defs: defs, $ref: '#/$defs/a5' })),
      a4: a4.validate({}),
      shallow: steps.compile('t', 1, exponential).validate({ x: { x: {} } }),
      intoConst: result(() => steps.compile('t', 1, { const: { type: 'string' }, properties: { a: { $ref: '#/const' } } })),
      intoEnum: result(() => steps.compile('t', 1, { enum: [{ $ref: '#/enum/0' }, 1], $ref: '#/enum/0' })),
      metered: [steps.compile('t', 1, exponential).metered, a4.metered, steps.compile('t', 1, { type: 'object', properties: { a: { type: 'string' } } }).metered,
        steps.compile('t', 1, { type: 'object', properties: Object.fromEntries(Array.from({ length: 250 }, (_, i) => ['p' + i, { type: 'integer' }])) }).metered],
    }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 60_000, killSignal: 'SIGKILL' });
  const r = JSON.parse(stdout);
  for (const name of ['recursive', 'dynamic', 'examples']) {
    assert.equal(r[name].ok, false, name);
    assert.equal(r[name].code, 'SCHEMA_TOO_COSTLY', name);
    assert.equal(r[name].path, '$.data');
    assert.match(r[name].message, /^data: validating it evaluated more than 1000000 schema nodes \(ingest\.maxValidationSteps\)/, name);
  }
  for (const name of ['timed', 'wide']) {
    assert.equal(r[name].code, 'SCHEMA_TOO_COSTLY', name);
    assert.match(r[name].message, /^data: validating it took longer than 50 ms \(ingest\.maxValidationMs\)/, name);
  }
  // The clock is read every 1,024 nodes: one event stops soon after its time is up (loosely bounded: a busy machine).
  assert.ok(r.wideMs < 10_000, `the wide event took ${r.wideMs} ms`);
  // A schema too costly for any event is refused when it is registered.
  assert.match(r.laughs, /^SCHEMA_INVALID: .*validating \{\} against it evaluated more than 1000000 schema nodes/);
  assert.match(r.a5, /^SCHEMA_INVALID: .*evaluated more than 100 schema nodes/);
  assert.deepEqual(r.a4, { ok: true });
  assert.deepEqual(r.shallow, { ok: true });
  // A reference into data would reach schemas the meter does not see.
  assert.match(r.intoConst, /^SCHEMA_INVALID: .*the reference "#\/const" points into the value of enum or const/);
  assert.match(r.intoEnum, /^SCHEMA_INVALID: .*the reference "#\/enum\/0" points into the value of enum or const/);
  // Schemas with references, or large ones, are metered; small ones without references are not.
  assert.deepEqual(r.metered, [true, true, false, true]);
});

test('metering changes no verdict (against Ajv on the schema as written)', () => {
  // Schemas with references in every place a subschema can be, properties named like keywords, enum values that
  // look like references, unevaluatedProperties across a $ref, and a schema that names the counting keyword itself.
  const schemas: Record<string, unknown>[] = [
    { $defs: { node: { type: 'object', properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['v'] } }, $ref: '#/$defs/node' },
    { type: 'object', properties: { enum: { $ref: '#/$defs/s' }, $ref: { type: 'string' }, const: { enum: [{ $ref: '#/$defs/s' }] } }, $defs: { s: { type: 'string', maxLength: 3 } } },
    { $defs: { base: { properties: { a: { type: 'integer' } } } }, allOf: [{ $ref: '#/$defs/base' }], properties: { b: { type: 'boolean' } }, unevaluatedProperties: false },
    { $dynamicAnchor: 'n', type: 'object', properties: { next: { $dynamicRef: '#n' }, v: { type: 'number', minimum: 0 } } },
    { $halflifeStep: 'not a boolean', type: 'object', patternProperties: { '^x': { $ref: '#/$defs/n' } }, $defs: { n: { type: ['number', 'null'] } }, additionalProperties: { not: { $ref: '#/$defs/n' } } },
    { type: 'object', properties: { p: { if: { $ref: '#/$defs/i' }, then: { minimum: 5 }, else: { type: 'string' } } }, $defs: { i: { type: 'integer' } }, dependentSchemas: { p: { required: ['q'] } } },
  ];
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true, ownProperties: true });
  const compiler = new SchemaCompiler();
  const compiled = schemas.map((s) => {
    const { $halflifeStep: _ignored, ...plain } = s;
    return { ours: compiler.compile('t', 1, s), theirs: ajv.compile(plain) };
  });
  const values = fc.letrec<{ v: unknown }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom<unknown>(null, true, 0, -1, 3, 5.5, 6, 'ab', 'abcd', '', [], {}),
      fc.dictionary(fc.constantFrom('v', 'kids', 'enum', '$ref', 'const', 'a', 'b', 'next', 'x1', 'y', 'p', 'q'), tie('v'), { maxKeys: 4 }),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.constant({ $ref: '#/$defs/s' }),
    ),
  })).v;
  fc.assert(
    fc.property(fc.nat(schemas.length - 1), values, (i, value) => {
      const { ours, theirs } = compiled[i];
      const verdict = ours.validate(value);
      const ok = theirs(value);
      assert.equal(verdict.ok, ok, JSON.stringify({ schema: schemas[i], value }));
      if (!verdict.ok) assert.equal(verdict.code, undefined);
    }),
    { numRuns: 3000 },
  );
});
