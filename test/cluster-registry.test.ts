import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsKvStore } from '../src/log/nats-kv.js';
import { SchemaRegistry } from '../src/schema/index.js';
import { hasNatsServer, startNats } from './helpers/nats.js';

/**
 * Two nodes, each with its own connection to a JetStream KV bucket (issue #12): a schema registered on one
 * validates on the other within a second, and version N is allocated once however the two race.
 */
const nats = hasNatsServer ? await startNats() : undefined;
const connections: NatsConnection[] = [];
after(async () => {
  for (const nc of connections) await nc.close();
  await nats?.stop();
});

async function node(): Promise<SchemaRegistry> {
  const nc = await connect({ servers: nats!.url });
  connections.push(nc);
  const registry = new SchemaRegistry({ kv: await NatsKvStore.open(nc, { bucket: 'halflife_state' }), defaultCompatibility: 'none' });
  await registry.start();
  return registry;
}

async function until(pred: () => boolean, what: string): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 2000 && !pred(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(pred(), what);
  return performance.now() - t0;
}

test('a schema registered on one node is in force on another; concurrent registrations get distinct versions', { skip: hasNatsServer ? false : 'nats-server not installed' }, async () => {
  const a = await node();
  const b = await node();
  await a.register('page_view', { type: 'object', properties: { article_id: { type: 'string' } }, required: ['article_id'] });
  const ms = await until(() => b.latest('page_view')?.version === 1, 'node b never saw version 1');
  console.log(`version 1 in force on the other node after ${ms.toFixed(0)} ms`);
  assert.equal(b.latest('page_view')!.validate({}).ok, false);
  assert.deepEqual(b.latest('page_view')!.validate({ article_id: 'a1' }), { ok: true });
  const [ra, rb] = await Promise.all([a.register('page_view', { type: 'object', required: ['x'] }), b.register('page_view', { type: 'object', required: ['y'] })]);
  assert.deepEqual([ra.version, rb.version].sort(), [2, 3]);
  await until(() => a.latest('page_view')?.version === 3 && b.latest('page_view')?.version === 3, 'the nodes did not agree on version 3');
  assert.deepEqual(a.versions('page_view').map((v) => v.schema), b.versions('page_view').map((v) => v.schema));
  // A node started later reads everything.
  const c = await node();
  assert.equal(c.latest('page_view')?.version, 3);
  await a.close();
  await b.close();
  await c.close();
});
