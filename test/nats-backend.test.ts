import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, inject, caughtUp, type TestServer } from './helpers/server.js';
import { hasNatsServer, startNats, type NatsServer } from './helpers/nats.js';
import { capture } from './helpers/io.js';
import { main } from '../src/cli/main.js';

/**
 * `log.backend: nats`: the event log, dead letters, the replay ledger, schemas, alert rules and consumer positions on
 * NATS JetStream. A second halflife process with an empty data folder, pointed at the same JetStream, finds
 * everything the first one acknowledged: nothing of it lives on the first machine.
 */
const servers: TestServer[] = [];
// Registered before the NATS server is started: the file's `after` hooks run in the order they were registered, and
// startNats registers one that kills the server. Run after it, every stop below would wait on requests to a server
// that is gone (a lease round's renewal, the handover's lease, the node entry's removal, the last checkpoint).
after(async () => {
  for (const s of servers) await s.cleanup().catch(() => {});
  await nats?.stop();
});
const nats: NatsServer | undefined = hasNatsServer ? await startNats() : undefined;

const schema = { type: 'object', properties: { article: { type: 'string' }, user: { type: 'string' } }, required: ['article', 'user'] };

async function node(stream: string): Promise<TestServer> {
  const t = await startServer({
    log: { backend: 'nats', partitions: 4 },
    nats: { servers: nats!.url, stream, subjectPrefix: `e_${stream.toLowerCase()}`, replicas: 1, bucketPrefix: `b_${stream.toLowerCase()}` },
  });
  servers.push(t);
  return t;
}

describe('NATS JetStream backend', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('a second process with an empty data folder finds every acknowledged event, dead letter and schema of the first', async () => {
    const a = await node('SHARED1');
    assert.equal((await inject(a, 'PUT', '/v1/schemas/page_view', schema)).status, 201);
    const events = Array.from({ length: 600 }, (_, i) => ({ type: 'page_view', key: `a${i % 7}`, id: `ev-${i}`, data: { article: `a${i % 7}`, user: `u${i % 97}` } }));
    const res = await inject(a, 'POST', '/v1/events', [...events.slice(0, 300), { type: 'page_view', data: { article: 'x' } }, ...events.slice(300)]);
    assert.equal(res.status, 200);
    assert.equal(res.body.accepted, 600);
    assert.equal(res.body.rejected, 1);
    // A retried request is stored once (the per-event id window).
    assert.equal((await inject(a, 'POST', '/v1/events', events.slice(0, 10))).body.accepted, 0);

    const sql = 'CREATE VIEW per_article AS SELECT article, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user) AS readers FROM page_view GROUP BY article';
    assert.equal((await inject(a, 'PUT', '/v1/views/per_article', { sql })).status, 201);
    await caughtUp(a, 'per_article');
    const expected = new Map<string, { views: number; readers: Set<string> }>();
    for (const e of events) {
      const x = expected.get(e.data.article) ?? { views: 0, readers: new Set<string>() };
      x.views++;
      x.readers.add(e.data.user);
      expected.set(e.data.article, x);
    }
    const check = async (t: TestServer) => {
      const rows = (await inject(t, 'GET', '/v1/views/per_article?limit=100')).body.rows as { article: string; views: number; readers: number }[];
      assert.equal(rows.length, expected.size);
      for (const r of rows) {
        assert.equal(r.views, expected.get(r.article)!.views);
        assert.equal(r.readers, expected.get(r.article)!.readers.size, 'HLL is exact at this size');
      }
    };
    await check(a);
    await a.cleanup();
    servers.splice(servers.indexOf(a), 1);

    // Another machine: a new data folder, the same JetStream.
    const b = await node('SHARED1');
    assert.equal((await inject(b, 'GET', '/v1/schemas/page_view')).status, 200, 'the schema is in the shared bucket');
    const stored: unknown[] = [];
    let cursor = '';
    for (;;) {
      const page = (await inject(b, 'GET', `/v1/events?limit=250${cursor ? `&cursor=${cursor}` : ''}`)).body;
      stored.push(...page.records);
      if (page.records.length === 0) break;
      cursor = page.next;
    }
    assert.equal(stored.length, 600);
    assert.deepEqual(new Set(stored.map((r) => (r as { id: string }).id)), new Set(events.map((e) => e.id)));
    const letters = (await inject(b, 'GET', '/v1/deadletters')).body.deadletters;
    assert.equal(letters.length, 1);
    assert.equal(letters[0].code, 'SCHEMA_VALIDATION');
    // The dedup window is rebuilt from JetStream: a retry sent to the new process is still stored once.
    assert.equal((await inject(b, 'POST', '/v1/events', events.slice(590))).body.accepted, 0);
    // The view's definition is in the shared bucket too: it runs here, backfilled from the shared log.
    assert.deepEqual((await inject(b, 'GET', '/v1/views')).body.views.map((v: { name: string }) => v.name), ['per_article']);
    assert.equal((await inject(b, 'PUT', '/v1/views/per_article', { sql })).body.error.code, 'VIEW_EXISTS');
    await caughtUp(b, 'per_article');
    await check(b);
    // New events reach the view as they are appended.
    assert.equal((await inject(b, 'POST', '/v1/events', [{ type: 'page_view', data: { article: 'a0', user: 'new-reader' } }])).body.accepted, 1);
    expected.get('a0')!.views++;
    expected.get('a0')!.readers.add('new-reader');
    await caughtUp(b, 'per_article');
    await check(b);
  });

  test('two processes at once: a view created, replaced or dropped on one is on the other (within a second when idle), and counts the same there', async () => {
    const a = await node('SHARED2');
    const b = await node('SHARED2');
    assert.equal((await inject(a, 'PUT', '/v1/schemas/page_view', schema)).status, 201);
    const waitFor = async (what: string, ok: () => Promise<boolean>) => {
      const t0 = Date.now();
      while (!(await ok())) {
        assert.ok(Date.now() - t0 < 10_000, `${what} did not happen`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return Date.now() - t0;
    };
    const names = async (t: TestServer) => (await inject(t, 'GET', '/v1/views')).body.views.map((v: { name: string }) => v.name) as string[];
    assert.equal((await inject(a, 'PUT', '/v1/views/n', { sql: 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM page_view' })).status, 201);
    const took = await waitFor('the view reaching the other process', async () => (await names(b)).includes('n'));
    // Within a second on an idle machine (docs/scale-out.md); the bound here leaves room for busy cores.
    assert.ok(took < 5000, `a view created on one process ran on the other after ${took} ms`);
    // Events sent to either process count in both.
    await inject(a, 'POST', '/v1/events', Array.from({ length: 30 }, (_, i) => ({ type: 'page_view', data: { article: 'x', user: `u${i}` } })));
    await inject(b, 'POST', '/v1/events', Array.from({ length: 12 }, (_, i) => ({ type: 'page_view', data: { article: 'y', user: `v${i}` } })));
    for (const t of [a, b]) await waitFor('both processes counting every event', async () => (await inject(t, 'GET', '/v1/views/n')).body.rows[0]?.n === 42);
    // A retry sent to the other process is recognised there (the ids travel with the batch): stored once.
    const withIds = Array.from({ length: 20 }, (_, i) => ({ type: 'page_view', id: `retry-${i}`, data: { article: 'z', user: `w${i}` } }));
    assert.equal((await inject(a, 'POST', '/v1/events', withIds)).body.accepted, 20);
    const stored = async (t: TestServer) => (await inject(t, 'GET', '/v1/streams')).body.records as number;
    await waitFor('the other process seeing the batch', async () => (await stored(b)) >= 62);
    const retried = await inject(b, 'POST', '/v1/events', withIds);
    assert.deepEqual([retried.body.accepted, retried.body.duplicates], [0, 20]);
    await waitFor('both processes counting each event once', async () => (await inject(b, 'GET', '/v1/views/n')).body.rows[0]?.n === 62);
    assert.equal((await inject(a, 'GET', '/v1/views/n')).body.rows[0]?.n, 62);
    // Two processes creating the same name: one wins, the other is told the view exists.
    const race = await Promise.all([a, b].map((t) => inject(t, 'PUT', '/v1/views/m', { sql: 'CREATE VIEW m AS SELECT COUNT(*) AS c FROM page_view' })));
    assert.deepEqual(race.map((r) => r.status).sort(), [201, 409]);
    // Replaced on b: a runs the new definition.
    assert.equal((await inject(b, 'PUT', '/v1/views/n', { sql: 'CREATE OR REPLACE VIEW n AS SELECT article, COUNT(*) AS n FROM page_view GROUP BY article' })).status, 200);
    await waitFor('the replacement reaching the other process', async () => (await inject(a, 'GET', '/v1/views/n/definition')).body.sql?.includes('GROUP BY article') === true);
    await waitFor('the replaced view counting per article', async () => (await inject(a, 'GET', '/v1/views/n?article=y')).body.rows[0]?.n === 12);
    await waitFor('the replaced view counting the retried events once', async () => (await inject(a, 'GET', '/v1/views/n?article=z')).body.rows[0]?.n === 20);
    // Dropped on a: gone from b.
    assert.equal((await inject(a, 'DELETE', '/v1/views/n')).status, 204);
    await waitFor('the drop reaching the other process', async () => !(await names(b)).includes('n'));
    // A static table of 2 MB put on b (more than one NATS message holds) joins on a.
    const rows = Array.from({ length: 8000 }, (_, i) => ({ id: i === 0 ? 'x' : `a${i}`, author: `author ${i} ${'·'.repeat(120)}` }));
    assert.equal((await inject(b, 'PUT', '/v1/tables/articles?key=id', rows)).status, 200);
    await waitFor('the table reaching the other process', async () => (await inject(a, 'GET', '/v1/tables')).body.tables?.some((t: { name: string; rows: number }) => t.name === 'articles' && t.rows === 8000) === true);
    const joined = 'CREATE VIEW by_author AS SELECT t.author, COUNT(*) AS n FROM page_view JOIN articles t ON article = t.id GROUP BY t.author';
    assert.equal((await inject(a, 'PUT', '/v1/views/by_author', { sql: joined })).status, 201);
    await waitFor('the joined view counting on the other process', async () => (await inject(b, 'GET', '/v1/views/by_author')).body.rows?.[0]?.n === 30);
    assert.equal((await inject(a, 'DELETE', '/v1/tables/articles')).status, 204);
    await waitFor('the table drop reaching the other process', async () => (await inject(b, 'GET', '/v1/tables/articles')).status === 404);
  });

  test('API keys are shared: one created on a process or by the CLI works on the others; one revoked stops working there', async () => {
    const a = await node('SHARED3');
    const b = await node('SHARED3');
    const status = async (t: TestServer, key?: string) =>
      (await t.server.app.inject({ method: 'GET', url: '/v1/views', headers: key === undefined ? {} : { authorization: `Bearer ${key}` } })).statusCode;
    assert.equal(await status(b), 200, 'no key yet: loopback answers');
    const created = await inject(a, 'POST', '/v1/keys', { scopes: ['admin'], name: 'ops' });
    assert.equal(created.status, 201);
    const admin = created.body.key as string;
    const t0 = Date.now();
    while ((await status(b)) !== 401) {
      assert.ok(Date.now() - t0 < 10_000, 'the other process did not start requiring keys');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await status(b, admin), 200);
    // The CLI, pointed at the cluster (no server URL), writes the shared state.
    const io = capture();
    const saved = { ...process.env };
    Object.assign(process.env, { HALFLIFE_NATS: nats!.url, HALFLIFE_NATS_REPLICAS: '1', HALFLIFE_NATS_BUCKET_PREFIX: 'b_shared3', HALFLIFE_NATS_STREAM: 'SHARED3', HALFLIFE_NATS_SUBJECT_PREFIX: 'e_shared3' });
    delete process.env.HALFLIFE_URL;
    try {
      assert.equal(await main(['keys', 'create', '--scope', 'read', '--data', a.dir], io), 0, io.stderr);
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
    const reader = io.stdout.trim().split('\n').at(-1)!;
    const waitStatus = async (t: TestServer, key: string, want: number) => {
      const t1 = Date.now();
      while ((await status(t, key)) !== want) {
        assert.ok(Date.now() - t1 < 10_000, `expected ${want} for the key`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await waitStatus(a, reader, 200);
    await waitStatus(b, reader, 200);
    const id = /^hl_([0-9a-f]{12})_/.exec(reader)![1];
    assert.equal((await b.server.app.inject({ method: 'DELETE', url: `/v1/keys/${id}`, headers: { authorization: `Bearer ${admin}` } })).statusCode, 200);
    await waitStatus(a, reader, 401);
  });

  test('three replicas on a single server are refused at start with what to do', async () => {
    await assert.rejects(
      startServer({ log: { backend: 'nats' }, nats: { servers: nats!.url, stream: 'R3', subjectPrefix: 'r3', replicas: 3, bucketPrefix: 'r3' } }),
      (err: { code: string; message: string }) => {
        assert.equal(err.code, 'NATS_SETUP_FAILED');
        assert.match(err.message, /nats\.replicas/);
        return true;
      },
    );
  });

  test('no server at the address: NATS_UNAVAILABLE naming it', async () => {
    await assert.rejects(startServer({ log: { backend: 'nats' }, nats: { servers: 'nats://127.0.0.1:1', replicas: 1 } }), (err: { code: string; message: string }) => {
      assert.equal(err.code, 'NATS_UNAVAILABLE');
      assert.match(err.message, /127\.0\.0\.1:1/);
      return true;
    });
  });
});
