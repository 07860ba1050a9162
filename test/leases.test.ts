import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { FileKvStore, type KvStore } from '../src/core/index.js';
import { FencedStore, LeaseManager } from '../src/cluster/index.js';
import { NatsKvStore } from '../src/log/index.js';
import { hasNatsServer, startNats, type NatsServer } from './helpers/nats.js';

/**
 * Partition leases and fenced writes: one owner at a time; an owner that paused past its lease can neither renew nor
 * write over its successor. On JetStream the lease bucket's max age expires a lease nobody renews.
 */
const connections: NatsConnection[] = [];
// Registered before the NATS server is started: a file's `after` hooks run in the order they were registered, and
// starting it registers one that kills it (every stop below would then wait on requests to a server that is gone).
after(async () => {
  for (const nc of connections) await nc.close().catch(() => {});
  await nats?.stop();
});
const nats: NatsServer | undefined = hasNatsServer ? await startNats() : undefined;

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    assert.ok(Date.now() - t0 < 30_000, `${what} did not happen`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('fenced store: a write with an older token is refused; big values in chunks; racing writers never mix', async () => {
  const store = new FencedStore(new FileKvStore());
  await store.write('checkpoint.v.p0', 5, Buffer.from('five'));
  assert.deepEqual(await store.read('checkpoint.v.p0'), { token: 5, bytes: Buffer.from('five') });
  await assert.rejects(store.write('checkpoint.v.p0', 4, Buffer.from('four')), { code: 'FENCED_WRITE' });
  await store.write('checkpoint.v.p0', 5, Buffer.from('five again'));
  const big = Buffer.alloc(1_300_000, 7);
  await store.write('checkpoint.v.p0', 9, big);
  assert.deepEqual((await store.read('checkpoint.v.p0'))!.bytes.equals(big), true);
  // Two writers at once: the value read is one of theirs, whole, and the older token never wins after the newer.
  const values = [Buffer.alloc(700_000, 1), Buffer.alloc(700_000, 2)];
  const results = await Promise.allSettled([store.write('race', 10, values[0]), store.write('race', 11, values[1])]);
  const got = (await store.read('race'))!;
  assert.ok(got.bytes.equals(values[got.token - 10]), 'a value whole, as its writer wrote it');
  if (results[1].status === 'fulfilled') assert.equal(got.token, 11);
});

describe('leases on NATS JetStream', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('one owner at a time; a lease not renewed expires; the paused owner cannot renew or write over its successor', async () => {
    const kvOf = async (): Promise<KvStore> => {
      const nc = await connect({ servers: nats!.url });
      connections.push(nc);
      return NatsKvStore.open(nc, { bucket: 'leases_test', ttlMs: 1500 });
    };
    const stateOf = async (): Promise<FencedStore> => {
      const nc = await connect({ servers: nats!.url });
      connections.push(nc);
      return new FencedStore(await NatsKvStore.open(nc, { bucket: 'fenced_test' }));
    };
    const a = new LeaseManager(await kvOf(), 'worker-a');
    const b = new LeaseManager(await kvOf(), 'worker-b');
    const [storeA, storeB] = [await stateOf(), await stateOf()];

    let leaseA = await a.acquire(0);
    await assert.rejects(b.acquire(0), (err: { code: string; message: string }) => err.code === 'LEASE_HELD' && /worker-a/.test(err.message));
    leaseA = await a.renew(leaseA);
    await storeA.write('checkpoint.v.p0', leaseA.token, Buffer.from('a1'));
    assert.equal((await b.get(0))?.owner, 'worker-a');

    // a "pauses": it stops renewing. Its lease expires with the bucket's max age, and b takes the partition.
    let leaseB: Awaited<ReturnType<LeaseManager['acquire']>> | undefined;
    await until('the unrenewed lease expiring', async () => {
      try {
        leaseB = await b.acquire(0);
        return true;
      } catch (err) {
        if ((err as { code?: string }).code !== 'LEASE_HELD') throw err;
        return false;
      }
    });
    assert.ok(leaseB!.token > leaseA.token, 'the new owner\'s token is higher');
    await storeB.write('checkpoint.v.p0', leaseB!.token, Buffer.from('b1'));
    // a "resumes": it can neither renew nor write.
    await assert.rejects(a.renew(leaseA), { code: 'LEASE_LOST' });
    await assert.rejects(storeA.write('checkpoint.v.p0', leaseA.token, Buffer.from('a2')), { code: 'FENCED_WRITE' });
    assert.deepEqual(await storeA.read('checkpoint.v.p0'), { token: leaseB!.token, bytes: Buffer.from('b1') });
    // Release: only the holder's own lease is given up (a stale one changes nothing), and a released one is taken at
    // once, with a higher token again.
    await a.release(leaseA);
    assert.equal((await a.get(0))?.owner, 'worker-b');
    await b.release(leaseB!);
    assert.equal(await a.get(0), undefined);
    const again = await a.acquire(0);
    assert.ok(again.token > leaseB!.token);
    await assert.rejects(b.acquire(0), { code: 'LEASE_HELD' });
    await b.release(leaseB!);
    assert.equal((await b.get(0))?.owner, 'worker-a', 'a release with an old token does not free the new owner\'s lease');
  });
});
