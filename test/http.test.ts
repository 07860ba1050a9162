import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type TestServer } from './helpers/server.js';

const pageView = {
  type: 'object',
  properties: {
    article_id: { type: 'string' },
    user_id: { type: 'string' },
    read_ms: { type: 'integer', minimum: 0 },
  },
  required: ['article_id'],
};

async function inject(t: TestServer, method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) {
  const res = await t.server.app.inject({
    method: method as 'GET',
    url,
    payload: payload === undefined ? undefined : typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { status: res.statusCode, body: res.body.length > 0 ? (JSON.parse(res.body) as any) : undefined, headers: res.headers };
}

describe('HTTP API', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer({ ingest: { maxEventBytes: 2048, maxDepth: 5, maxBodyBytes: 64 * 1024 } as never });
    const res = await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    assert.equal(res.status, 201);
  });
  after(() => t.cleanup());

  test('health and readiness', async () => {
    assert.deepEqual((await inject(t, 'GET', '/healthz')).body, { status: 'ok' });
    assert.deepEqual((await inject(t, 'GET', '/readyz')).body, { ready: true });
  });

  test('unknown routes answer 404 ROUTE_NOT_FOUND in the error shape', async () => {
    const res = await inject(t, 'GET', '/v1/nope');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'ROUTE_NOT_FOUND');
    assert.equal(typeof res.body.error.message, 'string');
    assert.deepEqual(res.body.error.details, { method: 'GET', url: '/v1/nope' });
  });

  test('a partial batch keeps the good events and reports each bad one', async () => {
    const res = await inject(t, 'POST', '/v1/events', [
      { type: 'page_view', data: { article_id: 'a1', user_id: 'u1' } },
      { type: 'page_view', data: { user_id: 'u2' } },
      { type: 'nope', data: {} },
      { type: 'page_view', data: { article_id: 'a2', read_ms: -5 } },
      { type: 'page_view', data: { article_id: 'a3' }, extra: 1 },
      { type: 'page_view', data: { article_id: 'a4' }, key: 'a4', ts: new Date(Date.now() - 3_600_000).toISOString() },
      'not an object',
    ]);
    assert.equal(res.status, 200);
    assert.equal(res.body.accepted, 2);
    assert.equal(res.body.rejected, 5);
    assert.equal(res.body.duplicates, 0);
    assert.deepEqual(
      res.body.errors.map((e: any) => [e.index, e.code, e.path]),
      [
        [1, 'SCHEMA_VALIDATION', '$.data.article_id'],
        [2, 'UNKNOWN_TYPE', '$.type'],
        [3, 'SCHEMA_VALIDATION', '$.data.read_ms'],
        [4, 'INVALID_EVENT', '$.extra'],
        [6, 'INVALID_EVENT', '$'],
      ],
    );
    assert.match(res.body.errors[0].message, /missing required field "article_id"/);
    const dl = await inject(t, 'GET', '/v1/deadletters?code=SCHEMA_VALIDATION&limit=10');
    const letter = dl.body.deadletters.find((d: any) => d.raw.includes('"u2"'));
    assert.ok(letter, 'the bad event is dead-lettered');
    assert.equal(letter.type, 'page_view');
    assert.equal(letter.schema_version, 1);
    assert.equal(letter.path, '$.data.article_id');
    assert.equal(typeof letter.received_at, 'number');
    assert.equal(letter.source.address, '127.0.0.1');
    assert.equal(letter.replayed, false);
  });

  test('a single object body is accepted, and the stored record carries received_at and schema_version', async () => {
    const before = t.server.log.stats().records;
    const ts = Date.now() - 60_000;
    const res = await inject(t, 'POST', '/v1/events', { type: 'page_view', data: { article_id: 'single' }, key: 'single-key', ts });
    assert.deepEqual(res.body, { accepted: 1, rejected: 0, duplicates: 0, shed: 0, errors: [] });
    assert.equal(t.server.log.stats().records, before + 1);
    const p = t.server.log.partitionFor('single-key');
    const read = await inject(t, 'GET', `/v1/events?partition=${p}&limit=1000`);
    const rec = read.body.records.find((r: any) => r.data.article_id === 'single');
    assert.equal(rec.type, 'page_view');
    assert.equal(rec.key, 'single-key');
    assert.equal(rec.event_time, ts);
    assert.equal(rec.schema_version, 1);
    assert.equal(rec.partition, p);
    assert.ok(Math.abs(rec.received_at - Date.now()) < 60_000);
  });

  test('NDJSON: only the bad lines are rejected', async () => {
    const body = [
      JSON.stringify({ type: 'page_view', data: { article_id: 'n1' } }),
      '{"type": "page_view", "data": {',
      '',
      JSON.stringify({ type: 'page_view', data: { article_id: 'n2' } }),
      'x'.repeat(3000),
    ].join('\n');
    const res = await inject(t, 'POST', '/v1/events', body, { 'content-type': 'application/x-ndjson' });
    assert.equal(res.status, 200);
    assert.equal(res.body.accepted, 2);
    assert.deepEqual(res.body.errors.map((e: any) => [e.index, e.code]), [[1, 'MALFORMED_JSON'], [3, 'EVENT_TOO_LARGE']]);
    assert.match(res.body.errors[0].message, /line 2/);
    const dl = await inject(t, 'GET', '/v1/deadletters?code=MALFORMED_JSON');
    assert.ok(dl.body.deadletters.some((d: any) => d.raw === '{"type": "page_view", "data": {'));
  });

  test('a malformed JSON body is 400 MALFORMED_JSON and dead-lettered, bounded', async () => {
    const res = await inject(t, 'POST', '/v1/events', '[{"type": "page_view", ' + ' '.repeat(40_000));
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'MALFORMED_JSON');
    const dl = await inject(t, 'GET', '/v1/deadletters?code=MALFORMED_JSON&limit=1000');
    const letter = dl.body.deadletters.find((d: any) => d.raw.startsWith('[{"type": "page_view", '));
    assert.ok(letter);
    assert.equal(letter.raw_truncated, true);
    assert.equal(letter.raw.length, t.config.ingest.deadLetterRawBytes);
  });

  test('limits: body size 413, event size, depth', async () => {
    const big = await inject(t, 'POST', '/v1/events', JSON.stringify([{ type: 'page_view', data: { article_id: 'x'.repeat(70_000) } }]));
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'BODY_TOO_LARGE');
    const res = await inject(t, 'POST', '/v1/events', [
      { type: 'page_view', data: { article_id: 'y'.repeat(3000) } },
      { type: 'page_view', data: { article_id: 'deep', a: { b: { c: { d: { e: 1 } } } } } },
      { type: 'page_view', data: { article_id: 'ok', a: { b: { c: { d: 1 } } } } },
    ]);
    assert.deepEqual(res.body.errors.map((e: any) => e.code), ['EVENT_TOO_LARGE', 'TOO_DEEP']);
    assert.equal(res.body.accepted, 1);
  });

  test('unsupported content types are refused with 415', async () => {
    const res = await inject(t, 'POST', '/v1/events', '<xml/>', { 'content-type': 'application/xml' });
    assert.equal(res.status, 415);
    assert.equal(res.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('an id makes an event idempotent: repeats are acknowledged, counted and stored once', async () => {
    const ev = { type: 'page_view', data: { article_id: 'idem' }, id: 'evt-42', key: 'idem' };
    const first = await inject(t, 'POST', '/v1/events', [ev, ev]);
    assert.deepEqual([first.body.accepted, first.body.duplicates], [1, 1]);
    const second = await inject(t, 'POST', '/v1/events', ev);
    assert.deepEqual([second.body.accepted, second.body.duplicates], [0, 1]);
    const p = t.server.log.partitionFor('idem');
    const read = await inject(t, 'GET', `/v1/events?partition=${p}&limit=10000`);
    assert.equal(read.body.records.filter((r: any) => r.id === 'evt-42').length, 1);
  });

  test('schemas: versions, listing, unchanged PUT, and every read route', async () => {
    const again = await inject(t, 'PUT', '/v1/schemas/page_view', pageView);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, { type: 'page_view', version: 1, created: false });
    const list = await inject(t, 'GET', '/v1/schemas');
    assert.deepEqual(list.body.schemas.find((s: any) => s.type === 'page_view'), {
      type: 'page_view', latestVersion: 1, versions: 1, compatibility: 'backward',
    });
    const one = await inject(t, 'GET', '/v1/schemas/page_view');
    assert.equal(one.body.version, 1);
    assert.deepEqual(one.body.schema, pageView);
    assert.deepEqual(one.body.versions, [1]);
    assert.equal((await inject(t, 'GET', '/v1/schemas/page_view/versions/1')).body.version, 1);
    const missing = await inject(t, 'GET', '/v1/schemas/page_view/versions/9');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'SCHEMA_VERSION_NOT_FOUND');
    assert.equal((await inject(t, 'GET', '/v1/schemas/ghost')).body.error.code, 'SCHEMA_NOT_FOUND');
    assert.equal((await inject(t, 'PUT', '/v1/schemas/bad%20name', {})).body.error.code, 'INVALID_TYPE_NAME');
    const invalid = await inject(t, 'PUT', '/v1/schemas/weird', { type: 'banana' });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, 'SCHEMA_INVALID');
    const malformed = await inject(t, 'PUT', '/v1/schemas/weird', '{"type":');
    assert.equal(malformed.body.error.code, 'MALFORMED_JSON');
  });

  test('a registration takes effect for the very next request, and incompatible ones get 409 with reasons', async () => {
    const before = await inject(t, 'POST', '/v1/events', { type: 'signup', data: { email: 'a@b.c' } });
    assert.equal(before.body.errors[0].code, 'UNKNOWN_TYPE');
    const v1 = { type: 'object', properties: { email: { type: 'string' }, plan: { enum: ['free', 'pro'] } } };
    assert.equal((await inject(t, 'PUT', '/v1/schemas/signup', v1)).status, 201);
    assert.equal((await inject(t, 'POST', '/v1/events', { type: 'signup', data: { email: 'a@b.c' } })).body.accepted, 1);

    const narrowed = { ...v1, properties: { ...v1.properties, plan: { enum: ['pro'] } }, required: ['email'] };
    const refused = await inject(t, 'PUT', '/v1/schemas/signup', narrowed);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'SCHEMA_INCOMPATIBLE');
    assert.deepEqual(refused.body.error.details.reasons.sort(), ['plan: enum narrowed: "free" no longer accepted', 'the event: new required field "email"']);

    const cfg = await inject(t, 'PUT', '/v1/schemas/signup/config', { compatibility: 'none' });
    assert.deepEqual(cfg.body, { type: 'signup', compatibility: 'none' });
    assert.equal((await inject(t, 'PUT', '/v1/schemas/signup', narrowed)).body.version, 2);
    const now = await inject(t, 'POST', '/v1/events', { type: 'signup', data: { plan: 'free' } });
    assert.equal(now.body.errors[0].code, 'SCHEMA_VALIDATION');
    assert.equal((await inject(t, 'PUT', '/v1/schemas/signup/config', { compatibility: 'loose' })).body.error.code, 'INVALID_COMPATIBILITY');
  });

  test('streams report per-partition offsets, records and bytes', async () => {
    const res = await inject(t, 'GET', '/v1/streams');
    assert.equal(res.body.partitions.length, 8);
    const sum = res.body.partitions.reduce((a: number, p: any) => a + p.records, 0);
    assert.equal(res.body.records, sum);
    assert.ok(res.body.bytes > 0);
    for (const p of res.body.partitions) assert.equal(p.records, p.nextOffset - p.firstOffset);
  });

  test('reading events across partitions with a cursor returns each record once', async () => {
    let cursor = '';
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const res = await inject(t, 'GET', `/v1/events?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      for (const r of res.body.records) {
        const id = `${r.partition}:${r.offset}`;
        assert.ok(!seen.has(id), `duplicate ${id}`);
        seen.add(id);
      }
      if (res.body.records.length === 0) break;
      cursor = res.body.next;
    }
    assert.equal(seen.size, t.server.log.stats().records);
    const bad = await inject(t, 'GET', '/v1/events?cursor=garbage');
    assert.equal(bad.body.error.code, 'INVALID_QUERY');
    assert.equal((await inject(t, 'GET', '/v1/events?partition=99')).body.error.code, 'INVALID_QUERY');
    assert.equal((await inject(t, 'GET', '/v1/events?since=yesterday')).body.error.code, 'INVALID_QUERY');
    const future = await inject(t, 'GET', `/v1/events?since=${Date.now() + 3_600_000}`);
    assert.equal(future.body.records.length, 0);
  });
});

describe('dead-letter replay', () => {
  let t: TestServer;
  before(async () => {
    t = await startServer();
  });
  after(() => t.cleanup());

  test('fix a schema, replay, replay again: each dead letter is replayed at most once', async () => {
    const strict = { type: 'object', properties: { sku: { type: 'string' }, qty: { type: 'integer' } }, required: ['sku', 'qty'] };
    await inject(t, 'PUT', '/v1/schemas/order', strict);
    const events = Array.from({ length: 10 }, (_, i) => ({ type: 'order', data: i % 2 === 0 ? { sku: `s${i}` } : { sku: `s${i}`, qty: i } }));
    const sent = await inject(t, 'POST', '/v1/events', events);
    assert.deepEqual([sent.body.accepted, sent.body.rejected], [5, 5]);
    await inject(t, 'POST', '/v1/events', [{ type: 'other', data: {} }]);

    const early = await inject(t, 'POST', '/v1/deadletters/replay', { type: 'order' });
    assert.deepEqual(early.body, { replayed: 0, failed: 5, skipped: 0, refused: 0 });

    await inject(t, 'PUT', '/v1/schemas/order/config', { compatibility: 'none' });
    await inject(t, 'PUT', '/v1/schemas/order', { ...strict, required: ['sku'] });
    const first = await inject(t, 'POST', '/v1/deadletters/replay', { type: 'order' });
    assert.deepEqual(first.body, { replayed: 5, failed: 0, skipped: 0, refused: 0 });
    const second = await inject(t, 'POST', '/v1/deadletters/replay', { type: 'order' });
    assert.deepEqual(second.body, { replayed: 0, failed: 0, skipped: 5, refused: 0 });
    const everything = await inject(t, 'POST', '/v1/deadletters/replay');
    assert.deepEqual(everything.body, { replayed: 0, failed: 1, skipped: 5, refused: 0 });

    const all = await inject(t, 'GET', '/v1/events?limit=1000&type=order');
    assert.equal(all.body.records.length, 10);
    assert.equal(new Set(all.body.records.map((r: any) => r.data.sku)).size, 10);
    const replayed = all.body.records.filter((r: any) => r.replay_of !== undefined);
    assert.equal(replayed.length, 5);
    assert.ok(replayed.every((r: any) => r.schema_version === 2));

    const listed = await inject(t, 'GET', '/v1/deadletters?type=order');
    assert.ok(listed.body.deadletters.every((d: any) => d.replayed));
  });

  test('replay state survives a restart', async () => {
    const dir = t.dir;
    await t.server.close();
    const again = await startServer({}, dir);
    try {
      const res = await again.server.app.inject({ method: 'POST', url: '/v1/deadletters/replay?type=order' });
      assert.deepEqual(JSON.parse(res.body), { replayed: 0, failed: 0, skipped: 5, refused: 0 });
    } finally {
      await again.server.close();
    }
  });

  test('dead letters filter by code, type and since, with paging', async () => {
    const t2 = await startServer();
    try {
      await inject(t2, 'POST', '/v1/events', Array.from({ length: 7 }, (_, i) => ({ type: `t${i % 2}`, data: {} })));
      const page1 = await inject(t2, 'GET', '/v1/deadletters?limit=3');
      assert.equal(page1.body.deadletters.length, 3);
      const page2 = await inject(t2, 'GET', `/v1/deadletters?limit=10&from=${page1.body.next}`);
      assert.equal(page2.body.deadletters.length, 4);
      assert.equal(page2.body.next, null);
      assert.equal((await inject(t2, 'GET', '/v1/deadletters?type=t1')).body.deadletters.length, 3);
      assert.equal((await inject(t2, 'GET', '/v1/deadletters?code=TOO_DEEP')).body.deadletters.length, 0);
      assert.equal((await inject(t2, 'GET', `/v1/deadletters?since=${Date.now() + 1000}`)).body.deadletters.length, 0);
      assert.equal((await inject(t2, 'GET', '/v1/deadletters?limit=0')).body.error.code, 'INVALID_QUERY');
    } finally {
      await t2.cleanup();
    }
  });
});
