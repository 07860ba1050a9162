// Hostile input: random and adversarial bodies never crash the server, never pollute prototypes, keep every good
// event of a batch and give every bad one a stable code and a bounded dead letter.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startServer, type TestServer } from './helpers/server.js';
import { allErrorCodes } from '../src/core/index.js';

const KNOWN = new Set(allErrorCodes().keys());
const schema = { type: 'object', properties: { a: { type: 'string' }, n: { type: 'integer' } }, required: ['a'] };
const good = fc.record({ type: fc.constant('t'), data: fc.record({ a: fc.string(), n: fc.integer() }) });
/** Anything a client could send as one element of a batch, most of it wrong. */
const anything = fc.oneof(
  fc.jsonValue(),
  fc.record({ type: fc.oneof(fc.constant('t'), fc.string()), data: fc.jsonValue() }),
  fc.record({ type: fc.constant('t'), data: fc.record({ a: fc.jsonValue(), n: fc.jsonValue() }) }),
  fc.dictionary(fc.constantFrom('type', 'data', 'id', 'key', 'ts', '__proto__', 'constructor', 'extra'), fc.jsonValue()),
  fc.record({ type: fc.constant('t'), data: fc.constant({ a: 'x' }), ts: fc.oneof(fc.string(), fc.double(), fc.constant(-1)) }),
);

async function post(t: TestServer, body: string | Buffer, contentType = 'application/json') {
  const res = await t.server.app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': contentType }, payload: body });
  return { status: res.statusCode, body: JSON.parse(res.body) as any };
}

describe('hostile input', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ ingest: { maxEventBytes: 64 * 1024, maxBodyBytes: 2 * 2 ** 20, deadLetterRawBytes: 1024 } as never });
    await t.server.registry.register('t', schema);
  });
  after(() => t.cleanup());

  test('property: in any batch every good event is accepted and every other one is refused with a known code', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(good.map((g) => ({ g })), anything.map((x) => ({ x }))), { maxLength: 40 }), async (items) => {
        const events = items.map((i) => ('g' in i ? i.g : i.x));
        const res = await post(t, JSON.stringify(events));
        assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300));
        const bad = new Set(res.body.errors.map((e: { index: number }) => e.index));
        items.forEach((i, index) => {
          if ('g' in i) assert.ok(!bad.has(index), `good event ${index} refused: ${JSON.stringify(res.body.errors.find((e: { index: number }) => e.index === index))}`);
        });
        for (const e of res.body.errors) assert.ok(KNOWN.has(e.code), `unknown code ${e.code}`);
        assert.equal(res.body.accepted + res.body.rejected + res.body.duplicates, events.length);
      }),
      { numRuns: 400 },
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('property: random bytes as JSON or NDJSON never get a 5xx, only stable codes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.boolean(), async (bytes, ndjson) => {
        const res = await post(t, Buffer.from(bytes), ndjson ? 'application/x-ndjson' : 'application/json');
        assert.ok(res.status < 500, `${res.status}: ${JSON.stringify(res.body)}`);
        const codes = res.status === 200 ? res.body.errors.map((e: { code: string }) => e.code) : [res.body.error.code];
        for (const c of codes) assert.ok(KNOWN.has(c), `unknown code ${c}`);
      }),
      { numRuns: 1000 },
    );
  });

  test('adversarial bodies each get their code and a bounded dead letter', async () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const cases: [string, string | Buffer, string, string][] = [
      ['nesting 100,000 deep', `[{"type":"t","data":{"a":"x","d":${deep(100_000)}}}]`, 'application/json', 'TOO_DEEP'],
      ['a 1 MB string', `[{"type":"t","data":{"a":"${'x'.repeat(2 ** 20)}"}}]`, 'application/json', 'EVENT_TOO_LARGE'],
      ['a number too large for a double', '[{"type":"t","data":{"a":"x","n":1' + '0'.repeat(400) + '}}]', 'application/json', 'INVALID_EVENT'],
      ['100,000 keys', `[{"type":"t","data":{"a":"x",${Array.from({ length: 100_000 }, (_, i) => `"k${i}":1`).join(',')}}}]`, 'application/json', 'EVENT_TOO_LARGE'],
      ['a 1 MB NDJSON line', `{"type":"t","data":{"a":"${'y'.repeat(2 ** 20)}"}}\n{"type":"t","data":{"a":"ok"}}\n`, 'application/x-ndjson', 'EVENT_TOO_LARGE'],
      ['invalid UTF-8 in NDJSON', Buffer.concat([Buffer.from('{"type":"t","data":{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}\n{"type":"t","data":{"a":"ok"}}\n')]), 'application/x-ndjson', 'MALFORMED_JSON'],
    ];
    for (const [name, body, contentType, code] of cases) {
      const before = (await t.server.deadLetters.list({}, 100_000)).deadletters.length;
      const res = await post(t, body, contentType);
      assert.equal(res.status, 200, `${name}: ${JSON.stringify(res.body).slice(0, 200)}`);
      assert.equal(res.body.errors[0]?.code, code, `${name}: ${JSON.stringify(res.body.errors[0])}`);
      if (contentType === 'application/x-ndjson') assert.equal(res.body.accepted, 1, `${name}: the good line is kept`);
      const letters = (await t.server.deadLetters.list({}, 100_000)).deadletters.slice(before);
      assert.equal(letters.length, 1, name);
      assert.equal(letters[0].code, code);
      assert.ok(letters[0].raw.length <= 1024, `${name}: the dead letter keeps at most deadLetterRawBytes (${letters[0].raw.length})`);
    }
    const utf8 = await post(t, Buffer.concat([Buffer.from('[{"type":"t","data":{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}}]')]));
    assert.equal(utf8.status, 400);
    assert.match(utf8.body.error.message, /not valid UTF-8/);
    const huge = await post(t, `[${'1,'.repeat(1_100_000)}1]`);
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, 'BODY_TOO_LARGE');
  });

  test('__proto__ and constructor keys are stored as data and pollute nothing', async () => {
    const res = await post(t, '[{"type":"t","key":"proto-test","data":{"a":"x","__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}}]');
    assert.equal(res.body.accepted, 1);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
    const p = t.server.log.partitionFor('proto-test');
    const events = (await t.server.app.inject({ method: 'GET', url: `/v1/events?partition=${p}&limit=10000` })).json() as { records: { data: Record<string, unknown> }[] };
    const stored = events.records.find((r) => Object.hasOwn(r.data, '__proto__'));
    assert.ok(stored, 'the event reads back with its __proto__ key');
    assert.deepEqual(stored!.data.constructor, { prototype: { polluted: true } });
    assert.equal((await t.server.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });
});
