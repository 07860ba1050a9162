import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../config/index.js';
import type { EngineHost } from './engine-host.js';
import { OverloadMonitor } from './overload.js';

function monitor(infos: () => { name: string; lag: number }[], queued = () => 0, over: Partial<ReturnType<typeof defaultConfig>['overload']> = {}) {
  const config = { ...defaultConfig().overload, memoryBudgetBytes: 1e12, maxInflightBytes: 1000, maxQueuedBytes: 1000, maxEngineLagEvents: 100, shedLowAt: 0.5, shedNormalAt: 0.8, ...over };
  const engine = { lags: async () => infos() } as unknown as EngineHost;
  return new OverloadMonitor({ config, queuedBytes: queued, engine, sampleMs: 5 });
}

test('pressure is the largest signal; low is shed from shedLowAt, normal from shedNormalAt', () => {
  let queued = 0;
  const m = monitor(() => [], () => queued);
  assert.equal(m.status().shed, 0);
  queued = 500;
  assert.deepEqual([m.status().shed, m.status().reason], [1, 'queue']);
  queued = 850;
  assert.equal(m.status().shed, 2);
  queued = 0;
  assert.ok(m.admit(600));
  assert.deepEqual([m.status().shed, m.status().reason], [1, 'inflight']);
  assert.ok(!m.admit(500), 'past maxInflightBytes a request is refused');
  m.release(600);
  assert.ok(m.admit(5000), 'one request is always admitted, however large');
  m.release(5000);
  assert.equal(m.status().inflightBytes, 0);
});

test('the memory budget is the hard bound: everything is refused', () => {
  const m = monitor(() => [], () => 0, { memoryBudgetBytes: 64 * 2 ** 20 });
  m.start();
  try {
    assert.ok(process.memoryUsage.rss() > 64 * 2 ** 20);
    assert.equal(m.status().hard, true);
    assert.equal(m.admit(1), false);
  } finally {
    m.close();
  }
});

test("engine lag counts for views once they have caught up, not while they backfill", async () => {
  let views = [{ name: 'new', lag: 90 }];
  const m = monitor(() => views);
  m.start();
  try {
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(m.status().engineLagEvents, 0, 'a view still backfilling does not shed ingest');
    views = [{ name: 'new', lag: 0 }];
    await new Promise((r) => setTimeout(r, 60));
    views = [{ name: 'new', lag: 90 }];
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(m.status().engineLagEvents, 90);
    assert.deepEqual([m.status().shed, m.status().reason], [2, 'engineLag']);
  } finally {
    m.close();
  }
});
