import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HalflifeServer } from '../src/server/index.js';
import { pino } from 'pino';
import { startServer, testConfig } from './helpers/server.js';

test('a second server on the same data folder is refused with DATA_DIR_LOCKED', async () => {
  const t = await startServer();
  try {
    const other = new HalflifeServer({ config: testConfig(t.dir), logger: pino({ level: 'silent' }) });
    await assert.rejects(other.start(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'DATA_DIR_LOCKED');
      assert.match(err.message, new RegExp(`pid ${process.pid}`));
      return true;
    });
  } finally {
    await t.cleanup();
  }
});

test('graceful close: in-flight requests finish, later ones get 503 SHUTTING_DOWN, readiness drops', async () => {
  const t = await startServer({ ingest: { unknownTypes: 'accept' } as never });
  const url = await t.server.listen();
  try {
    const inflight = Array.from({ length: 20 }, (_, i) =>
      fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'x', data: { i } }) }),
    );
    const closing = t.server.close();
    const results = await Promise.allSettled(inflight);
    await closing;
    const ok = results.filter((r) => r.status === 'fulfilled' && r.value.status === 200).length;
    // Every request answered 200 was made durable before the log closed.
    const { SegmentLog } = await import('../src/log/index.js');
    const log = new SegmentLog({ dir: `${t.dir}/log/events`, partitions: 8, fsync: 'never' });
    await log.start();
    assert.equal(log.stats().records, ok);
    await log.close();
    const refused = await t.server.app.inject({ method: 'GET', url: '/readyz' }).catch(() => undefined);
    if (refused !== undefined) assert.notEqual(refused.statusCode, 200);
  } finally {
    await t.cleanup();
  }
});
