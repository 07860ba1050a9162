import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { FileKvStore, type KvChange, type KvStore } from '../src/core/index.js';
import { NatsKvStore } from '../src/log/nats-kv.js';
import { hasNatsServer, startNats, type NatsServer } from './helpers/nats.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The KvStore contract (ARCHITECTURE.md, "Shared state"), run against every backend: memory, embedded files and a
 * JetStream KV bucket on a nats-server of the test's own.
 */
interface Backend {
  readonly name: string;
  /** A fresh, empty store. */
  fresh(): Promise<KvStore>;
  /** The same store as a new process would open it (file: from its folder; NATS: a new connection). */
  reopen?(store: KvStore): Promise<KvStore>;
  readonly skip?: string | false;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

let nats: NatsServer | undefined;
const connections: NatsConnection[] = [];
let bucketNo = 0;
const cleanups: (() => Promise<void>)[] = [];
const fileDirs = new Map<KvStore, string>();

const backends: Backend[] = [
  { name: 'memory', fresh: async () => new FileKvStore() },
  {
    name: 'files',
    async fresh() {
      const { dir, cleanup } = await tempDir('halflife-kv-');
      cleanups.push(cleanup);
      const store = new FileKvStore(dir);
      await store.open();
      fileDirs.set(store, dir);
      return store;
    },
    async reopen(store) {
      await store.close();
      const again = new FileKvStore(fileDirs.get(store)!);
      await again.open();
      return again;
    },
  },
  {
    name: 'NATS JetStream KV',
    skip: hasNatsServer ? false : 'nats-server not installed',
    async fresh() {
      const nc = await connect({ servers: nats!.url });
      connections.push(nc);
      return NatsKvStore.open(nc, { bucket: `contract_${process.pid}_${++bucketNo}` });
    },
    async reopen(store) {
      const nc = await connect({ servers: nats!.url });
      connections.push(nc);
      await store.close();
      return NatsKvStore.open(nc, { bucket: `contract_${process.pid}_${bucketNo}` });
    },
  },
];

// Registered before the NATS server is started: a file's `after` hooks run in the order they were registered, and
// starting it registers one that kills it (every stop below would then wait on requests to a server that is gone).
after(async () => {
  for (const nc of connections) await nc.close();
  await nats?.stop();
  for (const c of cleanups) await c();
});
// Started at the top level: the kill-on-end hook then belongs to the whole file, not to a before hook.
if (hasNatsServer) nats = await startNats();

/** Waits until `pred` holds for what a watcher saw (watchers on NATS hear changes a moment later). */
async function until(seen: KvChange[], pred: (s: KvChange[]) => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !pred(seen); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(pred(seen), `watcher saw ${JSON.stringify(seen.map((c) => [c.key, dec(c.value), c.revision]))}`);
}

for (const b of backends) {
  describe(`KvStore contract: ${b.name}`, { skip: b.skip }, () => {
    test('put and get; revisions grow with every write; a missing key is undefined', async () => {
      const kv = await b.fresh();
      assert.equal(await kv.get('schemas.page_view.1'), undefined);
      const r1 = await kv.put('schemas.page_view.1', enc('{"type":"object"}'));
      const r2 = await kv.put('views.readers', enc('SELECT 1'));
      const r3 = await kv.put('schemas.page_view.1', enc('{}'));
      assert.ok(r1 < r2 && r2 < r3, `${r1} ${r2} ${r3}`);
      const e = await kv.get('schemas.page_view.1');
      assert.equal(dec(e?.value), '{}');
      assert.equal(e?.revision, r3);
      assert.equal(e?.key, 'schemas.page_view.1');
    });

    test('create only where nothing is; update only at the revision read (compare-and-set)', async () => {
      const kv = await b.fresh();
      const r1 = await kv.create('schemas.t.1', enc('v1'));
      await assert.rejects(kv.create('schemas.t.1', enc('again')), { code: 'KV_CONFLICT' });
      const r2 = await kv.update('schemas.t.1', enc('v2'), r1);
      await assert.rejects(kv.update('schemas.t.1', enc('stale'), r1), { code: 'KV_CONFLICT' });
      assert.equal(dec((await kv.get('schemas.t.1'))?.value), 'v2');
      assert.equal((await kv.get('schemas.t.1'))?.revision, r2);
      // Two writers allocating the same version: exactly one wins.
      const results = await Promise.allSettled([kv.create('schemas.t.2', enc('a')), kv.create('schemas.t.2', enc('b'))]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      await assert.rejects(kv.update('schemas.t.3', enc('x'), 1), { code: 'KV_CONFLICT' });
    });

    test('delete removes; create works again after it; deleting nothing is fine', async () => {
      const kv = await b.fresh();
      await kv.put('keys.k1', enc('a'));
      await kv.delete('keys.k1');
      assert.equal(await kv.get('keys.k1'), undefined);
      assert.deepEqual(await kv.keys('keys'), []);
      await kv.delete('keys.k1');
      await kv.delete('keys.never');
      await kv.create('keys.k1', enc('b'));
      assert.equal(dec((await kv.get('keys.k1'))?.value), 'b');
    });

    test('keys below a prefix, sorted, by tokens (not characters)', async () => {
      const kv = await b.fresh();
      for (const k of ['schemas.b.1', 'schemas.a.2', 'schemas.a.1', 'schemasx.c', 'views.v', 'schemas']) await kv.put(k, enc(k));
      assert.deepEqual(await kv.keys('schemas'), ['schemas.a.1', 'schemas.a.2', 'schemas.b.1']);
      assert.deepEqual(await kv.keys('schemas.a'), ['schemas.a.1', 'schemas.a.2']);
      assert.deepEqual(await kv.keys(), ['schemas', 'schemas.a.1', 'schemas.a.2', 'schemas.b.1', 'schemasx.c', 'views.v']);
    });

    test('keys are tokens of [A-Za-z0-9_=-] joined by dots; anything else is KV_INVALID_KEY', async () => {
      const kv = await b.fresh();
      for (const bad of ['', '.a', 'a.', 'a..b', 'a b', 'a/b', 'é', 'a*', 'a>', '../x', 'x'.repeat(1025)]) {
        await assert.rejects(async () => kv.put(bad, enc('x')), { code: 'KV_INVALID_KEY' }, JSON.stringify(bad));
      }
      await kv.put('A-z_0=9.__proto__.constructor', enc('ok'));
      assert.equal(dec((await kv.get('A-z_0=9.__proto__.constructor'))?.value), 'ok');
    });

    test('values are bytes, kept exactly (empty, binary, large)', async () => {
      const kv = await b.fresh();
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
          await kv.put('tables.t', bytes);
          assert.deepEqual(new Uint8Array((await kv.get('tables.t'))!.value), bytes);
        }),
        { numRuns: 30 },
      );
      const big = new Uint8Array(256 * 1024).map((_, i) => i % 251);
      await kv.put('tables.big', big);
      assert.deepEqual(new Uint8Array((await kv.get('tables.big'))!.value), big);
    });

    test('a watcher sees later changes below its prefix, in order, deletes as undefined', async () => {
      const kv = await b.fresh();
      await kv.put('alerts.before', enc('old'));
      const seen: KvChange[] = [];
      const w = await kv.watch('alerts', (c) => seen.push(c));
      const r1 = await kv.put('alerts.a', enc('1'));
      await kv.put('views.x', enc('not below'));
      const r2 = await kv.put('alerts.a', enc('2'));
      await kv.delete('alerts.before');
      await until(seen, (s) => s.length >= 3);
      assert.deepEqual(seen.slice(0, 2).map((c) => [c.key, dec(c.value), c.revision]), [['alerts.a', '1', r1], ['alerts.a', '2', r2]]);
      assert.equal(seen[2].key, 'alerts.before');
      assert.equal(seen[2].value, undefined);
      assert.ok(seen[2].revision > r2);
      await w.stop();
      await kv.put('alerts.after', enc('x'));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, 3);
    });

    if (b.reopen !== undefined) {
      test('what was written is there when the store is opened again, revisions go on growing', async () => {
        const kv = await b.fresh();
        await kv.put('schemas.t.1', enc('one'));
        const r = await kv.put('schemas.t.2', enc('two'));
        const seen: KvChange[] = [];
        const w = await kv.watch('', (c) => seen.push(c));
        await kv.put('gone', enc('x'));
        await kv.delete('gone');
        await until(seen, (s) => s.length >= 2);
        await w.stop();
        const deletedAt = seen[1].revision;
        const again = await b.reopen!(kv);
        assert.deepEqual(await again.keys('schemas'), ['schemas.t.1', 'schemas.t.2']);
        assert.equal(dec((await again.get('schemas.t.2'))?.value), 'two');
        assert.equal((await again.get('schemas.t.2'))?.revision, r);
        assert.equal(await again.get('gone'), undefined);
        assert.ok((await again.put('schemas.t.3', enc('three'))) > deletedAt, 'a revision is never given twice');
        await assert.rejects(again.create('schemas.t.1', enc('dup')), { code: 'KV_CONFLICT' });
      });
    }
  });
}
