import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../config/index.js';
import type { EngineHost } from '../engine/index.js';
import { OverloadMonitor, REQUEST_OVERHEAD_BYTES } from './overload.js';

function monitor(infos: () => { name: string; lag: number }[], queued = () => 0, over: Partial<ReturnType<typeof defaultConfig>['overload']> = {}) {
  const config = { ...defaultConfig().overload, memoryBudgetBytes: 1e12, maxInflightBytes: 100 * REQUEST_OVERHEAD_BYTES, maxQueuedBytes: 1000, maxEngineLagEvents: 100, shedLowAt: 0.5, shedNormalAt: 0.8, ...over };
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
  const body = 60 * REQUEST_OVERHEAD_BYTES;
  assert.ok(m.admit(body));
  assert.deepEqual([m.status().shed, m.status().reason], [1, 'inflight']);
  assert.ok(!m.admit(40 * REQUEST_OVERHEAD_BYTES), 'past maxInflightBytes a request is refused');
  m.release(body);
  assert.ok(m.admit(1000 * REQUEST_OVERHEAD_BYTES), 'one request is always admitted, however large');
  m.release(1000 * REQUEST_OVERHEAD_BYTES);
  assert.deepEqual([m.status().inflightBytes, m.status().inflightRequests], [0, 0]);
});

test('a request holds its body and REQUEST_OVERHEAD_BYTES: a flood of tiny requests is pressure too', () => {
  const m = monitor(() => []);
  for (let i = 0; i < 70; i++) assert.ok(m.admit(10));
  assert.deepEqual([m.status().inflightBytes, m.status().inflightRequests], [70 * (10 + REQUEST_OVERHEAD_BYTES), 70]);
  assert.deepEqual([m.status().shed, m.status().reason], [1, 'inflight']);
  for (let i = 0; i < 70; i++) m.release(10);
  assert.deepEqual([m.status().inflightBytes, m.status().inflightRequests, m.status().shed], [0, 0, 0]);
});

test('a slow event loop with nothing queued sheds nothing (a busy machine is not overload)', async () => {
  // The default bounds, as a server gets them.
  const m = new OverloadMonitor({ config: { ...defaultConfig().overload, memoryBudgetBytes: 1e12 }, queuedBytes: () => 0, engine: { lags: async () => [] } as unknown as EngineHost, sampleMs: 5 });
  m.start();
  try {
    // Block the loop for 300 ms at a time, as other programs on the cores (or a long synchronous step) would, until
    // the monitor has seen it: a bounded number of rounds.
    for (let round = 0; round < 20 && m.status().eventLoopDelayMs < 250; round++) {
      const until = performance.now() + 300;
      while (performance.now() < until);
      await new Promise((r) => setTimeout(r, 30));
    }
    const s = m.status();
    assert.ok(s.eventLoopDelayMs >= 250, `the delay is measured and shown: ${JSON.stringify(s)}`);
    assert.equal(s.shed, 0, JSON.stringify(s));
    assert.ok(s.pressure < 0.1, JSON.stringify(s));
  } finally {
    m.close();
  }
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
  let polls = 0;
  const m = monitor(() => {
    polls++;
    return views;
  });
  // Until the monitor has polled the engine twice more (so the answer to the first of them is applied): no fixed
  // sleep, which a busy machine would outlast. The bound only guards against a monitor that never polls.
  const twoPolls = async () => {
    const target = polls + 2;
    for (let i = 0; i < 6000 && polls < target; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(polls >= target, 'the monitor polls the engine');
  };
  m.start();
  try {
    await twoPolls();
    assert.equal(m.status().engineLagEvents, 0, 'a view still backfilling does not shed ingest');
    views = [{ name: 'new', lag: 0 }];
    await twoPolls();
    views = [{ name: 'new', lag: 90 }];
    await twoPolls();
    assert.equal(m.status().engineLagEvents, 90);
    assert.deepEqual([m.status().shed, m.status().reason], [2, 'engineLag']);
  } finally {
    m.close();
  }
});
