import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileKvStore } from '../core/index.js';
import { FencedStore } from './fenced-store.js';
import { LeaseManager } from './leases.js';
import type { NodeEntry } from './nodes.js';
import { ClusterCheckpoints, PartitionOwnership } from './ownership.js';

const LEASE_MS = 3000;

/** Workers sharing one lease store; `live` is the node list they see, `clock` their monotonic time. */
function setup() {
  const kv = new FileKvStore();
  const live = new Set<string>();
  const clock = { now: 0 };
  const applied = new Map<string, { partitions: number[]; clean: boolean }[]>();
  const nodes = async (): Promise<NodeEntry[]> =>
    [...live].map((id) => ({ id, host: 'h', pid: 1, version: 'v', role: 'worker', startedAt: '', heartbeatMs: 0, heartbeatAgeMs: 0 }));
  const worker = (id: string) => {
    live.add(id);
    applied.set(id, []);
    return new PartitionOwnership({
      leases: new LeaseManager(kv, id),
      self: id,
      nodes,
      partitions: 4,
      worker: true,
      leaseMs: LEASE_MS,
      apply: async (partitions, clean) => void applied.get(id)!.push({ partitions, clean }),
      now: () => clock.now,
    });
  };
  return { kv, live, clock, applied, worker };
}

test('workers share the partitions by lease: one takes all, a second gets its share by handover, one leaving gives its share back', async () => {
  const s = setup();
  const a = s.worker('a');
  await a.round();
  assert.deepEqual(a.held(), [0, 1, 2, 3]);
  assert.deepEqual(s.applied.get('a'), [{ partitions: [0, 1, 2, 3], clean: true }]);
  assert.deepEqual(a.serving(), [0, 1, 2, 3]);

  const b = s.worker('b');
  await b.round(); // its share (1 and 3) is still leased to a
  assert.deepEqual(b.held(), []);
  await a.round(); // a checkpoints and gives 1 and 3 up
  assert.deepEqual(a.held(), [0, 2]);
  assert.deepEqual(s.applied.get('a')!.at(-1), { partitions: [0, 2], clean: true });
  await b.round();
  assert.deepEqual(b.held(), [1, 3]);
  assert.deepEqual(s.applied.get('b'), [{ partitions: [1, 3], clean: true }]);
  // Every partition has exactly one holder.
  const holders = await Promise.all([0, 1, 2, 3].map(async (p) => (await a.holder(p))?.owner));
  assert.deepEqual(holders, ['a', 'b', 'a', 'b']);

  // b stops cleanly: it checkpoints and releases, a takes everything again.
  s.live.delete('b');
  await b.close();
  assert.deepEqual(s.applied.get('b')!.at(-1), { partitions: [], clean: true });
  await a.round();
  assert.deepEqual(a.held(), [0, 1, 2, 3]);
  await a.close();
});

test('a lease taken while its holder paused is lost: the holder drops what it applied (not clean), and its fence refuses its writes', async () => {
  const s = setup();
  const a = s.worker('a');
  await a.round();
  const fenced = new FencedStore(s.kv);
  const checkpoints = new ClusterCheckpoints(fenced, a);
  await checkpoints.save('v', 2, Buffer.from('a1'), [2]);
  const aToken = a.token(2)!;
  // a pauses past its lease: without a renewal its tokens are not trusted, so it writes nothing and serves no query.
  s.clock.now += LEASE_MS;
  assert.equal(a.token(2), undefined);
  assert.equal(a.serving(), undefined);
  await assert.rejects(checkpoints.save('v', 2, Buffer.from('a2'), [2]), { code: 'LEASE_LOST' });
  // Meanwhile its lease of partition 2 expired (the bucket's max age) and b took it and wrote its checkpoint.
  s.live.delete('a');
  await s.kv.delete('lease.p2');
  const b = s.worker('b');
  await b.round();
  assert.ok(b.held().includes(2));
  await new ClusterCheckpoints(fenced, b).save('v', 2, Buffer.from('b1'), [2]);
  // a wakes: its renewal of 2 fails, it drops that partition without a checkpoint.
  s.live.add('a');
  await a.round();
  assert.ok(!a.held().includes(2));
  assert.deepEqual(s.applied.get('a')!.find((x) => !x.clean)?.partitions.includes(2), false);
  assert.equal(a.token(2), undefined);
  await assert.rejects(checkpoints.save('v', 2, Buffer.from('a3'), [2]), { code: 'LEASE_LOST' });
  // Even a write that slipped past the freshness check would be refused by the fence: its token is older.
  await assert.rejects(fenced.write('checkpoint.v.p2', aToken, Buffer.from('old')), { code: 'FENCED_WRITE' });
  assert.deepEqual((await checkpoints.load('v', 2))?.toString(), 'b1');
  await a.close(false);
  await b.close(false);
});

test('a unit is written only while every partition it applies is held fresh; removal empties only held partitions', async () => {
  const s = setup();
  const a = s.worker('a');
  await a.round();
  const b = s.worker('b');
  await a.round(); // gives 1 and 3 to b
  await b.round();
  const cp = new ClusterCheckpoints(new FencedStore(s.kv), a);
  await cp.save('v', 0, Buffer.from('x'), [0, 2]);
  await assert.rejects(cp.save('v', 0, Buffer.from('x'), [0, 1]), { code: 'LEASE_LOST' }, 'partition 1 is b\'s');
  await new ClusterCheckpoints(new FencedStore(s.kv), b).save('v', 1, Buffer.from('y'), [1]);
  await cp.remove('v', [0, 1]);
  assert.equal(await cp.load('v', 0), undefined);
  assert.equal((await cp.load('v', 1))?.toString(), 'y', 'not a\'s to remove');
  await a.close(false);
  await b.close(false);
});

test('a change of partitions that failed part way is tried again at the next round (from the checkpoints), and rounds never pile up', async () => {
  const s = setup();
  let fail = true;
  const calls: { partitions: number[]; clean: boolean }[] = [];
  let slow: Promise<void> | undefined;
  const a = new PartitionOwnership({
    leases: new LeaseManager(s.kv, 'a'),
    self: 'a',
    nodes: async () => [{ id: 'a', host: 'h', pid: 1, version: 'v', role: 'worker', startedAt: '', heartbeatMs: 0, heartbeatAgeMs: 0 }],
    partitions: 2,
    worker: true,
    leaseMs: LEASE_MS,
    apply: async (partitions, clean) => {
      calls.push({ partitions, clean });
      await slow;
      if (fail) throw new Error('a checkpoint was refused');
    },
    now: () => s.clock.now,
  });
  await a.round();
  assert.deepEqual(a.held(), [0, 1]);
  assert.equal(a.serving(), undefined, 'not serving what it could not take over');
  fail = false;
  let release = () => {};
  slow = new Promise<void>((r) => (release = r));
  const first = a.round();
  const second = a.round(); // while the first still runs: the same round, not another queued behind it
  assert.equal(first, second);
  release();
  await first;
  assert.deepEqual(calls.at(-1), { partitions: [0, 1], clean: false });
  assert.deepEqual(a.serving(), [0, 1]);
  await a.close(false);
});

test('a renewal whose answer was lost (the lease moved on under this process\'s own name) is taken back at once, after dropping what was applied', async () => {
  const s = setup();
  const a = s.worker('a');
  await a.round();
  const before = a.token(1)!;
  // The renewal was stored but its answer lost: the entry's revision moved on, still naming a.
  const e = (await s.kv.get('lease.p1'))!;
  await s.kv.put('lease.p1', e.value);
  await a.round();
  assert.deepEqual(a.held(), [0, 1, 2, 3], 'held again');
  assert.ok(a.token(1)! > before);
  assert.ok(s.applied.get('a')!.some((x) => !x.clean), 'what was applied of it since the last checkpoint was dropped');
  await a.close(false);
});

/**
 * A lease store whose compare-and-sets stop being answered while `frozen` (a NATS server gone: requests wait), and are
 * carried out when it answers again.
 */
class Unanswering extends FileKvStore {
  frozen = false;
  readonly waiting: (() => void)[] = [];
  override update(key: string, value: Uint8Array, revision: number): Promise<number> {
    if (!this.frozen) return super.update(key, value, revision);
    return new Promise<number>((resolve, reject) => this.waiting.push(() => super.update(key, value, revision).then(resolve, reject)));
  }
  /** The cluster answers again: the requests held are carried out. */
  answer(): void {
    this.frozen = false;
    for (const w of this.waiting.splice(0)) w();
  }
}

/** One worker, alone in the cluster, over 2 partitions on `kv`. */
function alone(kv: Unanswering, leaseMs: number, apply: (partitions: number[], clean: boolean) => Promise<void>): PartitionOwnership {
  return new PartitionOwnership({
    leases: new LeaseManager(kv, 'a'),
    self: 'a',
    nodes: async () => [{ id: 'a', host: 'h', pid: 1, version: 'v', role: 'worker', startedAt: '', heartbeatMs: 0, heartbeatAgeMs: 0 }],
    partitions: 2,
    worker: true,
    leaseMs,
    apply,
  });
}

test('a stop is bounded when the cluster stops answering: a lease round stuck on its requests does not hold it', { timeout: 60_000 }, async () => {
  const kv = new Unanswering();
  const applied: number[][] = [];
  const a = alone(kv, 1000, async (partitions) => void applied.push(partitions));
  await a.round();
  assert.deepEqual(a.held(), [0, 1]);
  kv.frozen = true;
  const stuck = a.round(); // its renewals are not answered until after the stop
  // The bound's timers do not hold a process open (a server's sockets do): this test's interval stands in for them.
  const alive = setInterval(() => {}, 1000);
  try {
    await a.close();
  } finally {
    clearInterval(alive);
  }
  // It still checkpointed before giving the partitions up (the release went unanswered: the leases expire).
  assert.deepEqual(applied.at(-1), []);
  // The cluster answers the stuck round late: the round changes nothing after the stop (no partitions run again, no
  // lease taken).
  const changes = applied.length;
  kv.answer();
  await stuck;
  await new Promise((r) => setImmediate(r));
  assert.equal(applied.length, changes, `partitions changed after the stop: ${JSON.stringify(applied.slice(changes))}`);
  assert.deepEqual(a.held(), []);
});

test('a stop while a renewal is under way releases the lease as renewed (the successor does not wait for it to expire)', async () => {
  const kv = new Unanswering();
  const a = alone(kv, 10_000, async () => {});
  await a.round();
  kv.frozen = true;
  const renewing = a.round();
  while (kv.waiting.length === 0) await new Promise((r) => setImmediate(r)); // the renewal is asked
  const closing = a.close();
  await new Promise((r) => setImmediate(r));
  kv.answer(); // the renewal is answered while the stop waits for the round
  await Promise.all([closing, renewing]);
  // Released: another worker takes both at once.
  const b = new LeaseManager(kv, 'b');
  for (const p of [0, 1]) assert.equal((await b.acquire(p)).owner, 'b');
});
