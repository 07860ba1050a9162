import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, inject, caughtUp, type TestServer } from './helpers/server.js';
import { hasNatsServer, startNatsCluster, type NatsCluster } from './helpers/nats.js';
import type { JetStreamLog } from '../src/log/index.js';

/**
 * The log on a 3-node JetStream cluster with three replicas: the stream's leader killed (SIGKILL) while several
 * clients send events loses no acknowledged event and counts none twice. (The cluster of halflife workers with
 * leases is not built yet: one halflife process here; see docs/scale-out.md.)
 */
const servers: TestServer[] = [];
// Registered before the NATS server is started: a file's `after` hooks run in the order they were registered, and
// starting it registers one that kills it (every stop below would then wait on requests to a server that is gone).
after(async () => {
  for (const s of servers) await s.cleanup().catch(() => {});
  await cluster?.stop();
});
const cluster: NatsCluster | undefined = hasNatsServer ? await startNatsCluster(3) : undefined;

describe('NATS JetStream cluster (3 nodes, R3)', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test("the stream leader killed while clients send: every acknowledged event is counted exactly once", async (ctx) => {
    const t = await startServer({
      log: { backend: 'nats', partitions: 4 },
      nats: { servers: cluster!.servers, stream: 'R3', subjectPrefix: 'r3', replicas: 3, bucketPrefix: 'r3' },
    });
    servers.push(t);
    assert.equal((await inject(t, 'PUT', '/v1/schemas/tick', { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] })).status, 201);
    assert.equal((await inject(t, 'PUT', '/v1/views/ticks', { sql: 'CREATE VIEW ticks AS SELECT COUNT(*) AS c, SUM(n) AS s, MIN(n) AS lo, MAX(n) AS hi FROM tick' })).status, 201);
    const leader = (await (t.server.log as unknown as JetStreamLog).streamInfo()).leader;
    const victim = cluster!.names.indexOf(leader ?? '');
    assert.ok(victim >= 0, `the stream has a leader among ${cluster!.names.join(', ')} (got ${leader})`);
    const senders = 4;
    const rounds = 10;
    const per = 50;
    const deadline = Date.now() + 120_000;
    let acknowledged = 0;
    let retried = 0;
    let killed: Promise<void> | undefined;
    const send = async (sender: number) => {
      for (let round = 0; round < rounds; round++) {
        const base = (sender * rounds + round) * per;
        const batch = Array.from({ length: per }, (_, i) => ({ type: 'tick', id: `t-${base + i}`, key: `k${i % 7}`, data: { n: base + i } }));
        // A request the cluster could not take (503, retryable) is sent again, the same ids: stored once.
        for (;;) {
          const res = await inject(t, 'POST', '/v1/events', batch);
          if (res.status === 200) {
            assert.equal(res.body.rejected, 0);
            break;
          }
          assert.equal(res.status, 503, JSON.stringify(res.body));
          assert.ok(['LOG_WRITE_FAILED', 'NATS_UNAVAILABLE'].includes(res.body.error.code), JSON.stringify(res.body));
          assert.ok(Date.now() < deadline, `the cluster did not take events again within 2 minutes: ${JSON.stringify(res.body)}`);
          retried++;
          await new Promise((r) => setTimeout(r, 100));
        }
        // The leader dies while the other senders' requests are in flight.
        if (++acknowledged === 8) killed = cluster!.nodes[victim].stop();
      }
    };
    await Promise.all(Array.from({ length: senders }, (_, i) => send(i)));
    await killed;
    ctx.diagnostic(`killed the stream leader ${leader}; requests sent again after a 503: ${retried}`);
    const total = senders * rounds * per;
    // The engine's reads of the log may fail for a while after the node's death (they are retried with backoff).
    const until = Date.now() + 120_000;
    let row: { c: number; s: number; lo: number; hi: number } | undefined;
    for (;;) {
      const res = await inject(t, 'GET', '/v1/views/ticks');
      [row] = res.status === 200 ? res.body.rows : [];
      if ((row?.c ?? 0) >= total || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(row !== undefined, 'the view answers');
    await caughtUp(t, 'ticks');
    [row] = (await inject(t, 'GET', '/v1/views/ticks')).body.rows;
    assert.deepEqual([row!.c, row!.s, row!.lo, row!.hi], [total, (total * (total - 1)) / 2, 0, total - 1]);
  });
});
