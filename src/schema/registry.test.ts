import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileKvStore, HalflifeError } from '../core/index.js';
import { SchemaRegistry } from './registry.js';
import { SchemaCompiler } from './compiler.js';
import { tempDir } from '../../test/helpers/tmp.js';

const pageView = {
  type: 'object',
  properties: { article_id: { type: 'string' }, user_id: { type: 'string' } },
  required: ['article_id'],
};

test('versions are created only when the schema changes, and persist across restarts', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await reg.start();
    assert.deepEqual(await reg.register('page_view', pageView), { type: 'page_view', version: 1, created: true });
    assert.deepEqual(await reg.register('page_view', structuredClone(pageView)), { type: 'page_view', version: 1, created: false });
    const v2 = { ...pageView, properties: { ...pageView.properties, referrer: { type: 'string' } } };
    assert.equal((await reg.register('page_view', v2)).version, 2);
    await reg.close();

    const again = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await again.start();
    assert.equal(again.latest('page_view')?.version, 2);
    assert.deepEqual(again.get('page_view', 1).schema, pageView);
    assert.deepEqual(again.list(), [{ type: 'page_view', latestVersion: 2, versions: 2, compatibility: 'backward' }]);
    assert.throws(() => again.get('page_view', 7), { code: 'SCHEMA_VERSION_NOT_FOUND' });
    assert.throws(() => again.get('nope'), { code: 'SCHEMA_NOT_FOUND' });
    await again.close();
  } finally {
    await cleanup();
  }
});

test('validation reports the first problem with a JSON path; formats are checked', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await reg.start();
    await reg.register('signup', {
      type: 'object',
      properties: { email: { type: 'string', format: 'email' }, age: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } },
      required: ['email'],
      additionalProperties: false,
    });
    const s = reg.latest('signup')!;
    assert.deepEqual(s.validate({ email: 'a@b.co', age: 3 }), { ok: true });
    assert.deepEqual(s.validate({ age: 3 }), { ok: false, message: 'data: missing required field "email"', path: '$.data.email' });
    assert.deepEqual(s.validate({ email: 'nope' }), { ok: false, message: 'data.email: must match format "email"', path: '$.data.email' });
    assert.deepEqual(s.validate({ email: 'a@b.co', tags: ['x', 5] }), { ok: false, message: 'data.tags.1: must be string', path: '$.data.tags[1]' });
    assert.equal((s.validate({ email: 'a@b.co', extra: 1 }) as { path: string }).path, '$.data.extra');
    await reg.close();
  } finally {
    await cleanup();
  }
});

test('incompatible schemas are refused with reasons unless compatibility is none', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await reg.start();
    await reg.register('page_view', pageView);
    const stricter = { ...pageView, required: ['article_id', 'user_id'] };
    await assert.rejects(reg.register('page_view', stricter), (err: HalflifeError) => {
      assert.equal(err.code, 'SCHEMA_INCOMPATIBLE');
      assert.equal(err.status, 409);
      assert.deepEqual(err.details?.reasons, ['the event: new required field "user_id"']);
      return true;
    });
    await reg.setCompatibility('page_view', 'none');
    assert.equal((await reg.register('page_view', stricter)).version, 2);
    await assert.rejects(reg.setCompatibility('page_view', 'sideways'), { code: 'INVALID_COMPATIBILITY' });
    await assert.rejects(reg.register('bad type!', {}), { code: 'INVALID_TYPE_NAME' });
    await assert.rejects(reg.register('x', { type: 'nonsense' }), { code: 'SCHEMA_INVALID' });
    await assert.rejects(reg.register('x', [1]), { code: 'SCHEMA_INVALID' });
    await reg.close();
    const again = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await again.start();
    assert.equal(again.compatibility('page_view'), 'none');
    await again.close();
  } finally {
    await cleanup();
  }
});

test('schemas in a configured folder are registered at start', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const folder = join(dir, 'schemas');
    await mkdir(folder);
    await writeFile(join(folder, 'click.json'), JSON.stringify({ type: 'object', properties: { x: { type: 'number' } } }));
    const reg = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'data')), defaultCompatibility: 'backward', loadDir: folder });
    await reg.start();
    assert.equal(reg.latest('click')?.version, 1);
    await reg.close();
    const again = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'data')), defaultCompatibility: 'backward', loadDir: folder });
    await again.start();
    assert.equal(again.latest('click')?.version, 1, 'unchanged file adds no version');
    await again.close();
  } finally {
    await cleanup();
  }
});

test('a $ref loop that never reads into the event is refused, and a stored one rejects events instead of throwing', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'none' });
    await reg.start();
    const loops: [unknown, string][] = [
      [{ $ref: '#' }, '#/$ref'],
      [{ $defs: { d: { $ref: '#/$defs/d', type: 'null' } }, $ref: '#/$defs/d' }, '#/$defs/d/$ref'],
      [{ properties: { a: { anyOf: [{ type: 'string' }, { $ref: '#/properties/a' }] } } }, '#/properties/a/anyOf/1/$ref'],
      [{ allOf: [{ not: { $ref: '#/allOf/0' } }] }, '#/allOf/0/not/$ref'],
    ];
    for (const [schema, at] of loops) {
      await assert.rejects(reg.register('loop', schema), (err: HalflifeError) => {
        assert.equal(err.code, 'SCHEMA_INVALID');
        assert.match(String(err.details?.reason), new RegExp(`the \\$ref at ${at.replaceAll('$', '\\$')} leads back to itself`));
        return true;
      });
    }
    // Recursion that reads one level deeper each time is fine.
    const tree = { type: 'object', properties: { n: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#' } } } };
    await reg.register('tree', tree);
    assert.deepEqual(reg.latest('tree')!.validate({ n: 1, kids: [{ n: 2, kids: [] }] }), { ok: true });
    assert.equal(reg.latest('tree')!.validate({ kids: [{ n: 'x' }] }).ok, false);
    await reg.close();

    // A loop stored before this check existed: its events are rejected with a reason, never a thrown RangeError.
    const stored = new SchemaCompiler().compile('loop', 1, { properties: { a: { $ref: '#/$defs/d' } }, $defs: { d: { $ref: '#/$defs/d', type: 'null' } } });
    assert.deepEqual(stored.validate({ b: 1 }), { ok: true });
    const v = stored.validate({ a: null });
    assert.equal(v.ok, false);
    assert.match((v as { message: string }).message, /^data: the schema could not be evaluated/);
  } finally {
    await cleanup();
  }
});

test('a schema giving rules to a property named __proto__ is refused (the validator would skip them); constructor and toString are validated as own fields', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'none' });
    await reg.start();
    const cases: [string, string][] = [
      ['{"type": "object", "properties": {"__proto__": {"type": "string"}}}', '#/properties'],
      ['{"type": "object", "properties": {"a": {"type": "object", "properties": {"__proto__": {"type": "integer"}}}}}', '#/properties/a/properties'],
    ];
    for (const [text, at] of cases) {
      await assert.rejects(reg.register('p', JSON.parse(text)), (err: HalflifeError) => {
        assert.equal(err.code, 'SCHEMA_INVALID');
        assert.match(String(err.details?.reason), new RegExp(`^${at} names a property __proto__`));
        return true;
      });
    }
    // Requiring it works (the field is the event's own or missing).
    await reg.register('r', JSON.parse('{"type": "object", "required": ["__proto__"]}'));
    assert.equal(reg.latest('r')!.validate({}).ok, false);
    assert.equal(reg.latest('r')!.validate(JSON.parse('{"__proto__": 1}')).ok, true);
    // Other names every object inherits are ordinary properties, and validated.
    await reg.register('q', JSON.parse('{"type": "object", "properties": {"constructor": {"type": "string"}, "toString": {"type": "string"}}}'));
    assert.equal(reg.latest('q')!.validate(JSON.parse('{"constructor": 5}')).ok, false);
    assert.equal(reg.latest('q')!.validate(JSON.parse('{"toString": "x"}')).ok, true);
    await reg.close();
  } finally {
    await cleanup();
  }
});

test('a stored version the compiler now refuses rejects its events with the reason instead of stopping the start', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // Written as an older halflife would have: a lookahead pattern the linear-time engine cannot run.
    const { mkdir, writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    await mkdir(join(dir, 'schemas', 'old'), { recursive: true });
    await writeFile(join(dir, 'schemas', 'old', 'v1.json'), JSON.stringify({ version: 1, schema: { type: 'object', properties: { a: { type: 'string', pattern: '^(?=x)' } } }, createdAt: '2026-01-01T00:00:00.000Z' }));
    const reg = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'state')), importDir: join(dir, 'schemas'), defaultCompatibility: 'none' });
    await reg.start();
    const result = reg.latest('old')!.validate({ a: 'x' });
    assert.equal(result.ok, false);
    assert.match((result as { message: string }).message, /version 1 of the schema of old can no longer be used .*register a fixed version/);
    await reg.register('old', { type: 'object', properties: { a: { type: 'string' } } });
    assert.deepEqual(reg.latest('old')!.validate({ a: 'x' }), { ok: true });
    await reg.close();
  } finally {
    await cleanup();
  }
});

test('a registry folder of the layout before the state store is imported once, then renamed', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const old = join(dir, 'schemas');
    await mkdir(join(old, 'app.page_view'), { recursive: true });
    await writeFile(join(old, 'app.page_view', 'v1.json'), JSON.stringify({ type: 'app.page_view', version: 1, schema: pageView, registeredAt: '2026-01-01T00:00:00.000Z' }));
    await writeFile(join(old, 'app.page_view', 'v2.json'), JSON.stringify({ type: 'app.page_view', version: 2, schema: { ...pageView, required: [] }, registeredAt: '2026-01-02T00:00:00.000Z' }));
    await writeFile(join(old, 'app.page_view', 'config.json'), JSON.stringify({ compatibility: 'none' }));
    const kv = new FileKvStore(join(dir, 'state'));
    const reg = new SchemaRegistry({ kv, importDir: old, defaultCompatibility: 'backward' });
    await reg.start();
    assert.deepEqual(reg.list(), [{ type: 'app.page_view', latestVersion: 2, versions: 2, compatibility: 'none' }]);
    assert.equal((await reg.register('app.page_view', pageView)).version, 3);
    await reg.close();
    assert.deepEqual(await kv.keys('schemas'), ['schemas.app=2Epage_view.config', 'schemas.app=2Epage_view.v1', 'schemas.app=2Epage_view.v2', 'schemas.app=2Epage_view.v3']);
    const again = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'state')), importDir: old, defaultCompatibility: 'backward' });
    await again.start();
    assert.equal(again.latest('app.page_view')?.version, 3);
    await again.close();
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual((await readdir(dir)).sort(), ['schemas.imported', 'state']);
  } finally {
    await cleanup();
  }
});

test('two registries sharing one store (two nodes): versions registered on one are in force on the other, and version N is allocated once', async () => {
  const kv = new FileKvStore();
  const a = new SchemaRegistry({ kv, defaultCompatibility: 'none' });
  const b = new SchemaRegistry({ kv, defaultCompatibility: 'none' });
  await a.start();
  await b.start();
  const seenByB: number[] = [];
  b.onRegistered((v) => seenByB.push(v.version));
  await a.register('t', { type: 'object' });
  assert.equal(b.latest('t')?.version, 1);
  assert.deepEqual(b.latest('t')!.validate(5), { ok: false, message: 'data: must be object', path: '$.data' });
  // Both register a different schema at once: one becomes version 2, the other version 3 (checked against 2).
  const [ra, rb] = await Promise.all([a.register('t', { type: 'object', required: ['x'] }), b.register('t', { type: 'object', required: ['y'] })]);
  assert.deepEqual([ra.version, rb.version].sort(), [2, 3]);
  assert.equal(a.latest('t')?.version, 3);
  assert.equal(b.latest('t')?.version, 3);
  assert.deepEqual(a.versions('t').map((v) => v.version), [1, 2, 3]);
  assert.deepEqual(b.versions('t').map((v) => v.version), [1, 2, 3]);
  assert.deepEqual(seenByB, [1, 2, 3]);
  await a.setCompatibility('t', 'backward');
  assert.equal(b.compatibility('t'), 'backward');
  await a.close();
  await b.close();
});

test('a schema nested deeper than any real one is refused, not a stack overflow: as arrays, as subschemas, as a root that is no schema', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const reg = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
    await reg.start();
    let nots: unknown = { type: 'string' };
    for (let i = 0; i < 5000; i++) nots = { not: nots };
    let arrays: unknown = [];
    for (let i = 0; i < 5000; i++) arrays = [arrays];
    await assert.rejects(reg.register('deep', nots), (err: HalflifeError) => err.code === 'SCHEMA_INVALID' && /more than 100 levels deep/.test(err.message));
    await assert.rejects(reg.register('deep', { type: 'object', default: arrays }), (err: HalflifeError) => err.code === 'SCHEMA_INVALID' && /more than 100 levels deep/.test(err.message));
    await assert.rejects(reg.register('deep', arrays), { code: 'SCHEMA_INVALID', message: /must be a JSON object or a boolean/ });
    // 100 levels are fine.
    let ok: unknown = { type: 'string' };
    for (let i = 0; i < 49; i++) ok = { not: ok };
    assert.equal((await reg.register('deep', ok)).created, true);
    await reg.close();
  } finally {
    await cleanup();
  }
});
