import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, inject, caughtUp, type TestServer } from './helpers/server.js';
import { hasNatsServer, startNatsCluster, type NatsCluster } from './helpers/nats.js';

/**
 * The log on a 3-node JetStream cluster with three replicas: one NATS node killed (SIGKILL) while events are sent
 * loses no acknowledged event and counts none twice. (The cluster of halflife workers with leases is not built yet:
 * one halflife process here; see docs/scale-out.md.)
 */
const cluster: NatsCluster | undefined = hasNatsServer ? await startNatsCluster(3) : undefined;
const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.cleanup().catch(() => {});
  await cluster?.stop();
});

describe('NATS JetStream cluster (3 nodes, R3)', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('a NATS node killed under load: every acknowledged event is counted exactly once', async (ctx) => {
    const t = await startServer({
      log: { backend: 'nats', partitions: 4 },
      nats: { servers: cluster!.servers, stream: 'R3', subjectPrefix: 'r3', replicas: 3, bucketPrefix: 'r3' },
    });
    servers.push(t);
    assert.equal((await inject(t, 'PUT', '/v1/schemas/tick', { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] })).status, 201);
    assert.equal((await inject(t, 'PUT', '/v1/views/ticks', { sql: 'CREATE VIEW ticks AS SELECT COUNT(*) AS c, SUM(n) AS s, MIN(n) AS lo, MAX(n) AS hi FROM tick' })).status, 201);
    const rounds = 20;
    const per = 100;
    const deadline = Date.now() + 120_000;
    let retried = 0;
    for (let round = 0; round < rounds; round++) {
      if (round === 5) await cluster!.nodes[1].stop();
      const batch = Array.from({ length: per }, (_, i) => ({ type: 'tick', id: `t-${round}-${i}`, key: `k${i % 7}`, data: { n: round * per + i } }));
      // A request the cluster could not take (503, retryable) is sent again, the same ids: stored once.
      for (;;) {
        const res = await inject(t, 'POST', '/v1/events', batch);
        if (res.status === 200) {
          assert.equal(res.body.rejected, 0);
          break;
        }
        assert.equal(res.status, 503, JSON.stringify(res.body));
        assert.ok(Date.now() < deadline, `round ${round}: the cluster did not take events again within 2 minutes: ${JSON.stringify(res.body)}`);
        retried++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    ctx.diagnostic(`requests sent again after a 503: ${retried}`);
    await caughtUp(t, 'ticks');
    const [row] = (await inject(t, 'GET', '/v1/views/ticks')).body.rows;
    const total = rounds * per;
    assert.deepEqual([row.c, row.s, row.lo, row.hi], [total, (total * (total - 1)) / 2, 0, total - 1], `retried requests: ${retried}`);
  });
});
