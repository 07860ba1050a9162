import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, inject, caughtUp, type TestServer } from './helpers/server.js';
import { hasNatsServer, startNats, type NatsServer } from './helpers/nats.js';
import { capture } from './helpers/io.js';
import { main } from '../src/cli/main.js';

/** `GET /v1/cluster` and `halflife cluster status`: processes, the servers and stream behind the log, lag, warnings. */
const servers: TestServer[] = [];
// Registered before the NATS server is started: a file's `after` hooks run in the order they were registered, and
// starting it registers one that kills it (every stop below would then wait on requests to a server that is gone).
after(async () => {
  for (const s of servers) await s.cleanup().catch(() => {});
  await nats?.stop();
});
const nats: NatsServer | undefined = hasNatsServer ? await startNats() : undefined;

test('embedded: one process, its partitions with each view\'s lag, no warnings; the CLI prints it', async () => {
  const t = await startServer({ log: { partitions: 2 } });
  servers.push(t);
  await inject(t, 'PUT', '/v1/schemas/e', { type: 'object', properties: { a: { type: 'string' } } });
  await inject(t, 'PUT', '/v1/views/n', { sql: 'CREATE VIEW n AS SELECT COUNT(*) AS c FROM e' });
  await inject(t, 'POST', '/v1/events', [{ type: 'e', key: 'x', data: { a: '1' } }]);
  await caughtUp(t, 'n');
  const s = (await inject(t, 'GET', '/v1/cluster')).body;
  assert.equal(s.backend, 'files');
  assert.equal(s.nodes.length, 1);
  assert.equal(s.nodes[0].id, s.node);
  assert.equal(s.nodes[0].pid, process.pid);
  assert.equal(s.nats, undefined);
  assert.deepEqual(s.warnings, []);
  assert.equal(s.partitions.length, 2);
  assert.deepEqual(s.partitions.map((p: { lag: Record<string, number> }) => p.lag.n), [0, 0]);
  assert.equal(s.partitions.reduce((a: number, p: { records: number }) => a + p.records, 0), 1);
  const url = await t.server.listen();
  const io = capture();
  assert.equal(await main(['cluster', 'status', '--url', url], io), 0, io.stderr);
  assert.match(io.stdout, /backend: files/);
  assert.match(io.stdout, new RegExp(`${s.node} \\(this\\)`));
  assert.match(io.stdout, /n 0/);
  const bad = capture();
  assert.equal(await main(['cluster', 'nodes', '--url', url], bad), 2);
});

test('on NATS: both processes listed, the stream\'s replicas and the server version, and the warnings they call for', { skip: hasNatsServer ? false : 'nats-server not installed' }, async () => {
  const node = async () => {
    const t = await startServer({ log: { backend: 'nats', partitions: 2 }, nats: { servers: nats!.url, stream: 'STATUS', subjectPrefix: 'status', replicas: 1, bucketPrefix: 'status' } });
    servers.push(t);
    return t;
  };
  const a = await node();
  const b = await node();
  const s = (await inject(a, 'GET', '/v1/cluster')).body;
  assert.equal(s.backend, 'nats');
  assert.deepEqual(s.nodes.map((n: { id: string }) => n.id).sort(), [a.server.nodes.node.id, b.server.nodes.node.id].sort());
  assert.equal(s.nodes[0].id, a.server.nodes.node.id, 'this process first');
  assert.equal(s.nats.stream.name, 'STATUS');
  assert.equal(s.nats.stream.replicas, 1);
  assert.match(s.nats.serverVersion, /^\d+\.\d+\.\d+/);
  assert.ok(s.warnings.some((w: string) => /1 replica: .*3 across zones/.test(w)), JSON.stringify(s.warnings));
  const old = !s.nats.features.crashSafeStreams;
  assert.equal(s.warnings.some((w: string) => /older than 2\.10\.23/.test(w)), old, 'the version warning follows the server');
  // Each partition is run by one of them, under a lease (the two share them out within a few lease rounds).
  const ids = [a.server.nodes.node.id, b.server.nodes.node.id];
  const t0 = Date.now();
  let owners: (string | null)[] = [];
  for (;;) {
    const now = (await inject(a, 'GET', '/v1/cluster')).body;
    owners = now.partitions.map((p: { owner: string | null }) => p.owner);
    if (new Set(owners).size === 2 && owners.every((o) => o !== null && ids.includes(o))) {
      assert.ok(now.partitions.every((p: { leaseToken: number; leaseAgeMs: number }) => p.leaseToken > 0 && p.leaseAgeMs >= 0));
      break;
    }
    assert.ok(Date.now() - t0 < 30_000, `partitions shared out: ${JSON.stringify(owners)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const io = capture();
  assert.equal(await main(['cluster', 'status', '--url', await a.server.listen()], io), 0, io.stderr);
  assert.match(io.stdout, /LEASE/);
  assert.match(io.stdout, /token \d+, \d+\.\d s/);
  // A process that stops cleanly leaves the list.
  await b.cleanup();
  servers.splice(servers.indexOf(b), 1);
  assert.deepEqual((await inject(a, 'GET', '/v1/cluster')).body.nodes.map((n: { id: string }) => n.id), [a.server.nodes.node.id]);
});
