import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeEventRecord, ManualClock } from '../core/index.js';
import { MemoryLog } from '../log/index.js';
import { schemaCatalog, type Catalog } from '../sql/index.js';
import { Engine } from './engine.js';
import { Tables } from './tables.js';
import { MemoryViewStore } from './view-store.js';
import { RecordingLogger } from '../../test/helpers/tmp.js';

const catalog = (): Catalog => schemaCatalog({ e: { type: 'object', properties: { k: { type: 'string' }, u: { type: 'string' } } } });

async function feed(log: MemoryLog, n: number, t0: number, stepMs: number) {
  await log.append(
    Array.from({ length: n }, (_, i) => {
      const t = t0 + i * stepMs;
      return { timestampMs: t, partition: 0, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: 'e', data: { k: `k${i % 50}`, u: `u${i}` } }) };
    }),
  );
}

test('a view over its memory budget evicts closed windows, oldest first, and reports it', async () => {
  const log = new MemoryLog(1);
  const clock = new ManualClock(0);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock });
  await engine.start(false);
  await engine.createView('v', "CREATE VIEW v WITH (memory_budget = '1MB', max_lateness = '0s') AS SELECT k, COUNT(DISTINCT u) AS users FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)");
  await feed(log, 20_000, 0, 5); // 100 one-second windows × 50 keys × 20 users
  while ((await engine.step()) > 0);
  const before = engine.info('v');
  assert.ok(before.memoryBytes > 1024 * 1024, `state ${before.memoryBytes} should exceed the budget`);
  await engine.checkpoint();
  const after = engine.info('v');
  assert.ok(after.evictedRows > 0);
  assert.ok(after.memoryBytes <= 1024 * 1024, `state ${after.memoryBytes} within budget`);
  const rows = engine.rows('v', { limit: 100_000, order: 'window_start' });
  assert.ok(rows.length < before.rows);
  // The newest windows (open or recent) are the ones kept.
  assert.equal(rows.at(-1)!.window_start, 99_000);
  assert.ok((rows[0].window_start as number) > 0);
  await engine.close();
});

test('start = latest skips the backfill; progress and lag describe the backfill', async () => {
  const log = new MemoryLog(2);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await feed(log, 100, 0, 1);
  await engine.createView('all', 'CREATE VIEW all_events AS SELECT COUNT(*) AS n FROM e'.replace('all_events', 'all'));
  await engine.createView('fresh', "CREATE VIEW fresh WITH (start = 'latest') AS SELECT COUNT(*) AS n FROM e");
  assert.equal(engine.info('all').lag, 100);
  assert.equal(engine.info('all').progress, 0);
  assert.equal(engine.info('fresh').lag, 0);
  while ((await engine.step()) > 0);
  await feed(log, 10, 1000, 1);
  while ((await engine.step()) > 0);
  assert.deepEqual(engine.rows('all').map((r) => r.n), [110]);
  assert.deepEqual(engine.rows('fresh').map((r) => r.n), [10]);
  assert.equal(engine.info('all').progress, 1);
  await engine.close();
});

test('the key metadata column reads the partition key of each event', async () => {
  const log = new MemoryLog(2);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('by_key', 'CREATE VIEW by_key AS SELECT key, COUNT(*) AS n FROM e GROUP BY key');
  await log.append(
    ['x', 'y', 'x', undefined].map((key, i) => ({
      key,
      timestampMs: i,
      value: encodeEventRecord({ receivedAt: i, schemaVersion: 1, type: 'e', data: { k: 'k' } }),
    })),
  );
  while ((await engine.step()) > 0);
  assert.deepEqual(engine.rows('by_key', { order: 'key' }).map((r) => [r.key, r.n]), [['x', 2], ['y', 1], [null, 1]]);
  await engine.close();
});

test('GROUP BY a metadata column groups by that column even when a SELECT alias has its name (as in PostgreSQL)', async () => {
  const log = new MemoryLog(2);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('shadow', 'CREATE VIEW shadow AS SELECT UPPER(k) AS key, COUNT(*) AS n FROM e GROUP BY key, k');
  await log.append(
    ['x', 'y', 'x'].map((key, i) => ({
      key,
      timestampMs: i,
      value: encodeEventRecord({ receivedAt: i, schemaVersion: 1, type: 'e', data: { k: 'k' } }),
    })),
  );
  while ((await engine.step()) > 0);
  // Two groups (partition keys x and y), each output with the alias's value; grouping by the alias would give one.
  assert.deepEqual(engine.rows('shadow', { order: 'n' }).map((r) => [r.key, r.n]), [['K', 1], ['K', 2]]);
  await engine.close();
});

test('an event whose values defeat String() and Number() is evaluated safely, and the view goes on', async () => {
  const log = new MemoryLog(1);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('v', "CREATE VIEW v AS SELECT k, COUNT(*) AS n, MAX(LOWER(u) || 'x') AS m, APPROX_COUNT_DISTINCT(u) AS d FROM e GROUP BY k");
  const events = [{ k: 'a', u: { toString: '', valueOf: 1 } }, { k: 'a', u: [1, { toString: null }] }, { k: 'a', u: 'z' }];
  await log.append(
    events.map((data, i) => ({
      timestampMs: i,
      value: encodeEventRecord({ receivedAt: i, schemaVersion: 1, type: 'e', data: data as Record<string, unknown> }),
    })),
  );
  while ((await engine.step()) > 0);
  const [row] = engine.rows('v');
  assert.equal(row.n, 3);
  assert.equal(row.d, 3);
  assert.equal(row.m, '{"tostring":"","valueof":1}x', 'objects are text as JSON, never String()');
  await engine.close();
});

test('a checkpoint whose saved position is past the log end is logged loudly and the view goes on from the end: what it counted stays, new offsets are not skipped', async () => {
  const store = new MemoryViewStore();
  const before = new MemoryLog(1);
  const first = new Engine({ log: before, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
  await first.start(false);
  await first.createView('n', 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e');
  await feed(before, 100, 0, 1);
  while ((await first.step()) > 0);
  await first.checkpoint();
  await first.close();

  // The log came back shorter than the checkpoint's position (a tail lost with fsync interval, files removed).
  const after = new MemoryLog(1);
  await feed(after, 40, 0, 1);
  const logger = new RecordingLogger();
  const second = new Engine({ log: after, store, tables: new Tables(), catalog, clock: new ManualClock(0), logger });
  await second.start(false);
  const logged = logger.lines.find((l) => l.level === 'error' && l.obj.code === 'LOG_POSITION_PAST_END');
  assert.ok(logged !== undefined, 'the position past the end is logged as an error');
  assert.match(logged.msg ?? '', /position of view n in partition 0 is 100, past the end of the log \(40\).*goes on from the end/);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [100], 'the 100 it had counted stay; nothing is applied twice');
  // New records at offsets 40.. are counted, not skipped as "already seen".
  await feed(after, 10, 1000, 1);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [110]);
  // The position saved from now on is the log's: a restart finds nothing past the end.
  await second.close();
  const logger3 = new RecordingLogger();
  const third = new Engine({ log: after, store, tables: new Tables(), catalog, clock: new ManualClock(0), logger: logger3 });
  await third.start(false);
  assert.equal(logger3.lines.find((l) => l.obj.code === 'LOG_POSITION_PAST_END'), undefined);
  assert.deepEqual(third.rows('n').map((r) => r.n), [110]);
  await third.close();
});

/** Events on both partitions: keys k0..k49 alternate between them, so every group is in both. */
async function feedBoth(log: MemoryLog, n: number, t0: number, stepMs: number) {
  await log.append(
    Array.from({ length: n }, (_, i) => {
      const t = t0 + i * stepMs;
      return { timestampMs: t, partition: i % 2, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: 'e', data: { k: `k${i % 50}`, u: `u${i}` } }) };
    }),
  );
}

const sorted = (rows: Record<string, unknown>[]) => rows.map((r) => JSON.stringify(r)).sort();

const SPLIT_SQL = "CREATE VIEW v WITH (max_lateness = '0s') AS SELECT k, COUNT(*) AS n, APPROX_COUNT_DISTINCT(u) AS users FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";

test('a view is checkpointed in units in the versioned codec, and its partitions move between engines: no rebuild when the number of engines changes, one state while one engine owns all', async () => {
  const { decodeCheckpoint, isEncodedCheckpoint } = await import('./checkpoint-codec.js');
  const log = new MemoryLog(3);
  const store = new MemoryViewStore();
  const straight = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  const one = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
  for (const e of [straight, one]) {
    await e.start(false);
    await e.createView('v', SPLIT_SQL);
  }
  const read = async (engines: Engine[]) => {
    for (const e of engines) while ((await e.step()) > 0);
    const [first, ...rest] = engines;
    return first.rows('v', { limit: 100_000, order: 'window_start' }, rest.map((e) => e.partials('v')));
  };
  await feedBoth(log, 3_000, 0, 5);
  await read([one]);
  await one.close();
  // One engine over all partitions: one unit, anchored at partition 0, applying all three.
  const bytes = (await store.loadCheckpoint('v', 0))!;
  assert.ok(isEncodedCheckpoint(bytes), 'a checkpoint in the codec');
  assert.deepEqual(Object.keys((decodeCheckpoint(bytes) as { live: Record<string, number> }).live), ['0', '1', '2']);
  assert.equal(await store.loadCheckpoint('v', 1), undefined);
  // One engine, then two (partitions {0, 2} and {1}), then three, then one again, then partitions moved back and
  // forth: each restores only the partitions it owns, applies no record twice, and together they answer what one
  // engine that never stopped answers.
  let t = 20_000;
  for (const split of [[[0, 2], [1]], [[0], [1], [2]], [[0, 1, 2]], [[1], [0, 2]], [[2, 1], [0]], [[0, 1, 2]]]) {
    const engines = split.map((owned) => new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned }));
    for (const e of engines) await e.start(false);
    for (const e of engines) assert.equal(e.info('v').lag, 0, `${JSON.stringify(split)}: restored at the end of the log, not rebuilt`);
    await feedBoth(log, 1_000, t, 5);
    t += 10_000;
    const rows = await read(engines);
    assert.deepEqual(sorted(rows), sorted(await read([straight])), `${JSON.stringify(split)}: the same rows as one engine`);
    assert.equal(engines.reduce((n, e) => n + e.info('v').appliedRecords, 0), 1_000, 'only the new records were applied');
    for (const e of engines) await e.close();
  }
  await straight.close();
});

const SPLITS = [[[0, 1, 2]], [[0], [1, 2]], [[1], [0, 2]], [[2], [0, 1]], [[0], [1], [2]], [[2, 0], [1]]];

test('property: any sequence of engine splits, each ending in a close, a crash, or a crash after some engines checkpointed, answers what one engine that never stopped answers', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ split: fc.constantFrom(...SPLITS), events: fc.integer({ min: 0, max: 200 }), end: fc.constantFrom('close', 'crash', 'some-checkpointed') }), { minLength: 1, maxLength: 6 }),
      async (steps) => {
        const log = new MemoryLog(3);
        const store = new MemoryViewStore();
        const straight = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
        const first = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
        for (const e of [straight, first]) {
          await e.start(false);
          await e.createView('v', SPLIT_SQL);
        }
        await first.close();
        let t = 0;
        for (const [i, step] of steps.entries()) {
          const engines = step.split.map((owned) => new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned }));
          for (const e of engines) await e.start(false);
          await feedBoth(log, step.events, t, 7);
          t += step.events * 7 + 1;
          for (const e of [straight, ...engines]) while ((await e.step()) > 0);
          const [head, ...rest] = engines;
          const got = head.rows('v', { limit: 100_000 }, rest.map((e) => e.partials('v')));
          assert.deepEqual(sorted(got), sorted(straight.rows('v', { limit: 100_000 })), `step ${i} ${JSON.stringify(step.split)}`);
          if (step.end === 'close') for (const e of engines) await e.close();
          // A crash: engines abandoned without their last checkpoint (the next ones replay from the checkpoints).
          else if (step.end === 'some-checkpointed') await engines[engines.length - 1].checkpoint();
        }
        await straight.close();
      },
    ),
    { numRuns: 200 },
  );
});

test('reads of a view held in several units merge closed windows once and see every later change to them: a correction, a new row, retention', async () => {
  const sql = "CREATE VIEW v WITH (max_lateness = '0s', retention = '3s') AS SELECT k, COUNT(*) AS n, APPROX_COUNT_DISTINCT(u) AS users FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";
  // The same events on 3 partitions and on 1: the rows must agree after every step.
  const wide = new MemoryLog(3);
  const narrow = new MemoryLog(1);
  // The view began on three engines, one partition each: the engine that now owns all three holds three units.
  const wideStore = new MemoryViewStore();
  for (const owned of [[0], [1], [2]]) {
    const e = new Engine({ log: wide, store: wideStore, tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned });
    await e.start(false);
    if (owned[0] === 0) await e.createView('v', sql);
    await e.close();
  }
  const engines = [new Engine({ log: wide, store: wideStore, tables: new Tables(), catalog, clock: new ManualClock(0) }), new Engine({ log: narrow, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) })];
  await engines[0].start(false);
  await engines[1].start(false);
  await engines[1].createView('v', sql);
  const append = async (events: { t: number; k: string; u: string; p: number; replayOf?: number }[]) => {
    const rec = (x: (typeof events)[number]) => encodeEventRecord({ receivedAt: x.t, schemaVersion: 1, type: 'e', data: { k: x.k, u: x.u }, replayOf: x.replayOf });
    await wide.append(events.map((x) => ({ timestampMs: x.t, partition: x.p, value: rec(x) })));
    await narrow.append(events.map((x) => ({ timestampMs: x.t, partition: 0, value: rec(x) })));
  };
  const check = async (what: string) => {
    for (const e of engines) while ((await e.step()) > 0);
    const [a, b] = engines.map((e) => sorted(e.rows('v', { limit: 100_000 })));
    assert.deepEqual(a, b, what);
    // Twice: the second read comes from the cache.
    assert.deepEqual(sorted(engines[0].rows('v', { limit: 100_000 })), b, `${what} (cached)`);
    return b.length;
  };
  // Every partition gets events of every window (so every partition passes each window's end).
  const burst = (t0: number, n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ t: t0 + i, k: `k${i % 4}`, u: `${tag}${i}`, p: i % 3 }));
  await append(burst(0, 30, 'a'));
  await append(burst(1000, 30, 'b'));
  await append(burst(2000, 30, 'c'));
  assert.ok((await check('windows 0 and 1 closed in all partitions')) > 0);
  // A dead-letter replay corrects closed window 0, on one partition only.
  await append([{ t: 10, k: 'k1', u: 'late-fix', p: 2, replayOf: 1 }]);
  await check('after a correction of a closed window');
  // A new key in a closed window, by a correction: a row the cache did not have.
  await append([{ t: 20, k: 'k9', u: 'new', p: 1, replayOf: 2 }]);
  await check('after a correction adding a row to a closed window');
  // Time moves on: windows past the retention go from every partition, and from the reads.
  await append(burst(6000, 30, 'd'));
  await append(burst(7000, 30, 'e'));
  await check('after windows passed the retention');
  assert.ok(engines[0].rows('v', { limit: 100_000 }).every((r) => (r.window_start as number) >= 3000), 'expired windows are gone');
  for (const e of engines) await e.close();
});

test('a checkpoint of the format before units (one per engine, in the codec or v8) carries its state over instead of rebuilding', async () => {
  const { serialize } = await import('node:v8');
  const { encodeCheckpoint } = await import('./checkpoint-codec.js');
  const { planView } = await import('../sql/index.js');
  const { ViewState } = await import('./view-state.js');
  const { decodeEventRecord } = await import('../core/index.js');
  const log = new MemoryLog(2);
  await feedBoth(log, 2_000, 0, 5);
  // What halflife before units saved: one state over both partitions, with both offsets.
  const plan = planView(SPLIT_SQL, catalog(), 'v');
  const combined = new ViewState(plan, 2);
  const offsets = [0, 0];
  // As the engine did: both partitions had records to read, so neither ran the watermark ahead of the other.
  combined.setPending(0, true);
  combined.setPending(1, true);
  for (const p of [0, 1]) {
    for (const rec of await log.read(p, 0, { maxRecords: 10_000 })) {
      const ev = decodeEventRecord(rec.value);
      const row = { type: ev.type, data: ev.data, key: undefined, received_at: ev.received_at, event_time: ev.received_at, partition: p, offset: rec.offset, joined: [] };
      combined.apply(row, plan.keys.map((k) => k.eval(row)), 0);
      offsets[p] = rec.next;
    }
  }
  const legacy = { format: 1, sql: plan.sql, offsets, startOffsets: [0, 0], owned: null, state: combined.save() };
  const straight = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await straight.start(false);
  await straight.createView('v', SPLIT_SQL);
  for (const bytes of [encodeCheckpoint(legacy), serialize(legacy)]) {
    const store = new MemoryViewStore();
    let dropped = false;
    Object.assign(store, {
      loadLegacyCheckpoints: async () => (dropped ? [] : [{ file: 'checkpoint.bin', bytes }]),
      dropLegacyCheckpoint: async (_name: string, file: string) => void (dropped = file === 'checkpoint.bin'),
    });
    await store.saveDefinition('v', SPLIT_SQL);
    const logger = new RecordingLogger();
    // Now split over two engines: partition 0's engine takes the combined state, partition 1's goes on from its offset.
    const engines = [[0], [1]].map((owned) => new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), logger, ownedPartitions: owned }));
    for (const e of engines) await e.start(false);
    assert.deepEqual(logger.lines.filter((l) => l.level === 'error'), []);
    for (const e of engines) assert.equal(e.info('v').lag, 0, 'carried over, not rebuilt');
    while ((await straight.step()) > 0);
    const rows = engines[0].rows('v', { limit: 100_000, order: 'window_start' }, [engines[1].partials('v')]);
    assert.deepEqual(sorted(rows), sorted(straight.rows('v', { limit: 100_000, order: 'window_start' })));
    for (const e of engines) await e.close();
    assert.ok(dropped, 'the old checkpoint is dropped once saved as a unit');
    assert.ok((await store.loadCheckpoint('v', 0)) !== undefined && (await store.loadCheckpoint('v', 1)) !== undefined);
  }
  await straight.close();
});

test('a running engine applies records as they are appended: it waits on the log (tail), not on a timer', async () => {
  const log = new MemoryLog(2);
  // No timer would wake it within the test: only the log's tail can.
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0), idleTickMs: 600_000 });
  await engine.start();
  await engine.createView('n', 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e');
  for (let round = 1; round <= 3; round++) {
    // Let the engine go idle (waiting) before each append.
    await new Promise((r) => setTimeout(r, 20));
    await feed(log, 5, round * 1000, 1);
    const t0 = Date.now();
    while (engine.info('n').appliedRecords < round * 5) {
      assert.ok(Date.now() - t0 < 30_000, `round ${round}: the appended records were not applied`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  assert.equal(engine.info('n').lag, 0);
  await engine.close();
});

test('a step whose reads of several partitions fail rejects once: no read is left failing unhandled (that stopped the engine thread)', async () => {
  class FailingLog extends MemoryLog {
    failing = false;
    override readBatch(...args: Parameters<MemoryLog['readBatch']>): ReturnType<MemoryLog['readBatch']> {
      if (!this.failing) return super.readBatch(...args);
      return new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 5));
    }
  }
  const log = new FailingLog(3);
  await feedBoth(log, 30, 0, 1);
  await log.append([{ timestampMs: 0, partition: 2, value: encodeEventRecord({ receivedAt: 0, schemaVersion: 1, type: 'e', data: { k: 'k', u: 'u' } }) }]);
  log.failing = true;
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('n', 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e');
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  try {
    await assert.rejects(engine.step(), /timeout/);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

/** An engine over all of `log`'s partitions holding the view in one unit per partition (it began on one engine each). */
async function unitsEngine(log: MemoryLog, sql: string, clock = new ManualClock(0)): Promise<Engine> {
  const store = new MemoryViewStore();
  for (let p = 0; p < log.partitionCount; p++) {
    const e = new Engine({ log, store, tables: new Tables(), catalog, clock, ownedPartitions: [p] });
    await e.start(false);
    if (p === 0) await e.createView('v', sql);
    await e.close();
  }
  const engine = new Engine({ log, store, tables: new Tables(), catalog, clock });
  await engine.start(false);
  return engine;
}

async function append(log: MemoryLog, events: { t: number; k: string; u?: string; p: number }[]) {
  await log.append(events.map((x, i) => ({ timestampMs: x.t, partition: x.p, value: encodeEventRecord({ receivedAt: x.t, schemaVersion: 1, type: 'e', data: { k: x.k, u: x.u ?? `u${i}` } }) })));
}

test('several units: a window goes for the retention only once every unit passed it (a row is never read with some of its parts gone)', async () => {
  const sql = "CREATE VIEW v WITH (max_lateness = '0s', retention = '2s') AS SELECT k, COUNT(*) AS n FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";
  const log = new MemoryLog(3);
  const wide = await unitsEngine(log, sql);
  const straight = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await straight.start(false);
  await straight.createView('v', sql);
  // Every partition has window 0; then partitions 0 and 1 run 10 s ahead while partition 2 stays in window 0.
  await append(log, Array.from({ length: 300 }, (_, i) => ({ t: i * 3, k: 'a', p: i % 3 })));
  await append(log, Array.from({ length: 200 }, (_, i) => ({ t: 1000 + i * 50, k: 'a', p: i % 2 })));
  for (const e of [wide, straight]) while ((await e.step()) > 0);
  const rows = sorted(straight.rows('v', { limit: 1000 }));
  assert.ok(rows.some((r) => r.includes('"window_start":0,')), 'window 0 is kept while partition 2 is in it');
  assert.deepEqual(sorted(wide.rows('v', { limit: 1000 })), rows);
  await wide.checkpoint();
  assert.deepEqual(sorted(wide.rows('v', { limit: 1000 })), rows);
  for (const e of [wide, straight]) await e.close();
});

test('several units: the memory budget evicts a window from every unit at once (no partial rows remain)', async () => {
  const sql = (budget: string) => `CREATE VIEW v WITH (${budget}max_lateness = '0s') AS SELECT k, COUNT(DISTINCT u) AS users, COUNT(*) AS n FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)`;
  const log = new MemoryLog(3);
  const wide = await unitsEngine(log, sql("memory_budget = '1MB', "));
  const oracle = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await oracle.start(false);
  await oracle.createView('v', sql(''));
  // Unevenly spread: partition 1 holds most of the first 50 s, partition 0 all 100 s (each unit alone would give
  // up different windows for the same budget).
  await append(log, [
    ...Array.from({ length: 10_000 }, (_, i) => ({ t: i * 10, k: `k${i % 50}`, p: 0 })),
    ...Array.from({ length: 15_000 }, (_, i) => ({ t: Math.floor(i * 3.3), k: `k${i % 50}`, p: 1 })),
    ...Array.from({ length: 100 }, (_, i) => ({ t: i * 1000, k: 'k0', p: 2 })),
  ]);
  for (const e of [wide, oracle]) while ((await e.step()) > 0);
  await wide.checkpoint();
  const info = wide.info('v');
  assert.ok(info.evictedRows > 0, 'rows were evicted');
  const all = new Set(sorted(oracle.rows('v', { limit: 100_000 })));
  const kept = sorted(wide.rows('v', { limit: 100_000 }));
  assert.ok(kept.length > 0 && kept.length < all.size);
  for (const r of kept) assert.ok(all.has(r), `a kept row is whole: ${r}`);
  for (const e of [wide, oracle]) await e.close();
});

test('several units: a row made final by another unit passing its end reads as changed (live streams get it final)', async () => {
  const sql = "CREATE VIEW v WITH (max_lateness = '0s') AS SELECT k, COUNT(*) AS n FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";
  const log = new MemoryLog(2);
  const engine = await unitsEngine(log, sql);
  // Key a only on partition 0, which passes window 0; partition 1 holds the view back inside window 0.
  await append(log, [...Array.from({ length: 30 }, (_, i) => ({ t: i * 100, k: 'a', p: 0 })), { t: 500, k: 'b', p: 1 }]);
  while ((await engine.step()) > 0);
  const seen = engine.version('v');
  const before = engine.rows('v', { sinceVersion: 0 }).find((r) => r.k === 'a' && r.window_start === 0);
  assert.equal(before?._final, false, 'not final while partition 1 is inside window 0');
  await append(log, [{ t: 1500, k: 'b', p: 1 }]);
  while ((await engine.step()) > 0);
  const after = engine.rows('v', { sinceVersion: seen }).find((r) => r.k === 'a' && r.window_start === 0);
  assert.deepEqual(after && { n: after.n, final: after._final }, { n: 10, final: true }, 'the row is new since the last read, now final');
  // Read again from there: unchanged rows are not sent again.
  const again = engine.version('v');
  assert.equal(engine.rows('v', { sinceVersion: again }).find((r) => r.k === 'a' && r.window_start === 0), undefined);
  await engine.close();
});

test('a checkpoint is written when only the watermark moved and rows went for the retention (no new record)', async () => {
  const sql = "CREATE VIEW v WITH (max_lateness = '0s', retention = '5s', idle_timeout = '1s') AS SELECT k, COUNT(*) AS n FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";
  const log = new MemoryLog(1);
  const store = new MemoryViewStore();
  const clock = new ManualClock(0);
  const engine = new Engine({ log, store, tables: new Tables(), catalog, clock });
  await engine.start(false);
  await engine.createView('v', sql);
  await append(log, Array.from({ length: 20 }, (_, i) => ({ t: i * 100, k: 'a', p: 0 })));
  while ((await engine.step()) > 0);
  clock.set(2500);
  await engine.step(); // idle: the watermark follows the clock and closes window 1
  await engine.checkpoint();
  assert.equal(engine.rows('v').length, 2);
  // Only time passes: both windows go for the retention, nothing else changes.
  clock.set(60_000);
  await engine.step();
  assert.equal(engine.rows('v').length, 0);
  await engine.checkpoint();
  const restarted = new Engine({ log, store, tables: new Tables(), catalog, clock });
  await restarted.start(false);
  assert.equal(restarted.rows('v').length, 0, 'the rows that went stay gone after a restart');
  await restarted.close();
});

test('replacing or dropping a view while a slow checkpoint of it is under way: its late writes never come back at the next start', async () => {
  for (const how of ['replace', 'drop'] as const) {
    const sql = "CREATE VIEW v WITH (max_lateness = '0s') AS SELECT k, COUNT(*) AS n FROM e GROUP BY k";
    const log = new MemoryLog(2);
    let gate: Promise<void> | undefined;
    let open = () => {};
    let entered = () => {};
    const waiting = new Promise<void>((resolve) => (entered = resolve));
    class SlowStore extends MemoryViewStore {
      override async saveCheckpoint(name: string, partition: number, bytes: Uint8Array) {
        // The second unit's write waits: the first is written, the view changes, then this one would land.
        if (gate !== undefined && partition === 1) {
          entered();
          await gate;
        }
        return super.saveCheckpoint(name, partition, bytes);
      }
    }
    const store = new SlowStore();
    for (const owned of [[0], [1]]) {
      const e = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned });
      await e.start(false);
      if (owned[0] === 0) await e.createView('v', sql);
      await e.close();
    }
    const engine = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
    await engine.start(false);
    await append(log, Array.from({ length: 100 }, (_, i) => ({ t: i, k: 'a', p: i % 2 })));
    while ((await engine.step()) > 0);
    gate = new Promise<void>((resolve) => (open = resolve));
    const checkpoint = engine.checkpoint();
    await waiting; // the checkpoint is writing its first unit
    const change = how === 'replace' ? engine.createView('v', sql, true) : engine.dropView('v');
    gate = undefined;
    open();
    await checkpoint;
    await change;
    if (how === 'replace') while ((await engine.step()) > 0);
    await engine.close();
    const again = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
    await again.start(false);
    if (how === 'drop') await again.createView('v', sql);
    while ((await again.step()) > 0);
    assert.deepEqual(again.rows('v').map((r) => r.n), [100], how);
    await again.close();
  }
});

test('property: partitions handed between two running engines (own), cleanly or taken from one that kept applying, answer what one engine that never stopped answers', async () => {
  /** The store as one engine sees it: a unit is written only while that engine holds every partition it applies (leases). */
  class LeasedStore extends MemoryViewStore {
    constructor(
      readonly inner: MemoryViewStore,
      readonly leases: number[],
      readonly me: number,
    ) {
      super();
    }
    override list() {
      return this.inner.list();
    }
    override saveDefinition(name: string, sql: string) {
      return this.inner.saveDefinition(name, sql);
    }
    override remove(name: string, partitions: readonly number[]) {
      return this.inner.remove(name, partitions);
    }
    override loadCheckpoint(name: string, partition: number) {
      return this.inner.loadCheckpoint(name, partition);
    }
    override async saveCheckpoint(name: string, partition: number, bytes: Uint8Array, live: readonly number[] = [partition]) {
      for (const p of [partition, ...live]) assert.equal(this.leases[p], this.me, `engine ${this.me} wrote the unit of partition ${partition} (live ${live}) without the lease of ${p}`);
      return this.inner.saveCheckpoint(name, partition, bytes);
    }
  }
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ owners: fc.array(fc.constantFrom(0, 1), { minLength: 3, maxLength: 3 }), events: fc.integer({ min: 0, max: 150 }), taken: fc.boolean(), checkpoint: fc.boolean() }), { minLength: 1, maxLength: 6 }),
      async (steps) => {
        const log = new MemoryLog(3);
        const inner = new MemoryViewStore();
        const leases = [0, 0, 0];
        const straight = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
        const engines = [0, 1].map((i) => new Engine({ log, store: new LeasedStore(inner, leases, i), tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: i === 0 ? [0, 1, 2] : [] }));
        await straight.start(false);
        await straight.createView('v', SPLIT_SQL);
        for (const e of engines) await e.start(false);
        await engines[0].createView('v', SPLIT_SQL);
        await engines[1].createView('v', SPLIT_SQL, true);
        let t = 0;
        for (const [i, step] of steps.entries()) {
          const next = [0, 1].map((e) => [0, 1, 2].filter((p) => step.owners[p] === e));
          const losing = (e: number) => engines[e].owned().some((p) => !next[e].includes(p));
          const gaining = (e: number) => next[e].some((p) => !engines[e].owned().includes(p));
          if (step.taken) {
            // The leases moved: the new owners take their partitions from the last checkpoints while the old ones
            // still apply them; then the old ones learn they lost them and drop what they applied since.
            for (let p = 0; p < 3; p++) leases[p] = step.owners[p];
            for (const e of [0, 1]) if (gaining(e) && !losing(e)) await engines[e].own(next[e], true);
            for (const e of [0, 1]) if (losing(e)) await engines[e].own(engines[e].owned().filter((p) => next[e].includes(p)), false);
            for (const e of [0, 1]) if (gaining(e)) await engines[e].own(next[e], true);
          } else {
            // A handover: the old owners checkpoint and release, then the new ones take over.
            for (const e of [0, 1]) if (losing(e)) await engines[e].own(engines[e].owned().filter((p) => next[e].includes(p)), true);
            for (let p = 0; p < 3; p++) leases[p] = step.owners[p];
            for (const e of [0, 1]) if (gaining(e)) await engines[e].own(next[e], true);
          }
          await feedBoth(log, step.events, t, 7);
          t += step.events * 7 + 1;
          for (const e of [straight, ...engines]) while ((await e.step()) > 0);
          const got = engines[0].rows('v', { limit: 100_000 }, [engines[1].partials('v')]);
          assert.deepEqual(sorted(got), sorted(straight.rows('v', { limit: 100_000 })), `step ${i} ${JSON.stringify(step)}`);
          if (step.checkpoint) for (const e of engines) await e.checkpoint();
        }
        for (const e of [straight, ...engines]) await e.close();
      },
    ),
    { numRuns: 100 },
  );
});

test('on a log others append to (JetStream), a saved position past the end seen so far is kept: the records there are read once seen, none twice', async () => {
  class SeenLocally extends MemoryLog {
    readonly endsSeenLocally = true;
  }
  const store = new MemoryViewStore();
  const log = new SeenLocally(1);
  const first = new Engine({ log: new MemoryLog(1), store, tables: new Tables(), catalog, clock: new ManualClock(0) });
  await first.start(false);
  await first.createView('n', 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e');
  await first.close();
  // Another process's checkpoint: 100 records counted; this process has seen only 40 of them so far.
  const other = new MemoryLog(1);
  const writer = new Engine({ log: other, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
  await writer.start(false);
  await feed(other, 100, 0, 1);
  while ((await writer.step()) > 0);
  await writer.close();
  await feed(log, 40, 0, 1);
  const logger = new RecordingLogger();
  const second = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), logger });
  await second.start(false);
  assert.equal(logger.lines.find((l) => l.obj.code === 'LOG_POSITION_PAST_END'), undefined);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [100]);
  // The rest arrives (as this process sees it): only records from position 100 on are new to the view.
  await feed(log, 70, 40, 1);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [110]);
  await second.close();
});

test('a change of partitions asked while a step applies loses nothing and applies nothing twice', async () => {
  const sql = 'CREATE VIEW n AS SELECT k, COUNT(*) AS n FROM e GROUP BY k';
  const log = new MemoryLog(1);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('n', sql);
  // Enough records that the step yields between slices of its batch (queries and own() come in there).
  await feed(log, 3000, 0, 1);
  const stepping = engine.step();
  // Let the step begin applying, then hand the partition over to the same engine (a checkpoint and a restore).
  await new Promise((resolve) => setImmediate(resolve));
  const owning = engine.own([0], true);
  await Promise.all([stepping, owning]);
  while ((await engine.step()) > 0);
  const total = engine.rows('n', { limit: 100 }).reduce((s, r) => s + Number(r.n), 0);
  assert.equal(total, 3000);
  await engine.close();
});

test('a checkpoint records the view\'s positions in the log only when they moved (on a cluster that does not answer, each write waits)', async () => {
  class Counting extends MemoryLog {
    commits = 0;
    override commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>) {
      this.commits++;
      return super.commitOffsets(consumer, offsets);
    }
  }
  const log = new Counting(1);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('n', 'CREATE VIEW n AS SELECT COUNT(*) AS n FROM e');
  await feed(log, 10, 0, 1);
  while ((await engine.step()) > 0);
  await engine.checkpoint();
  const after = log.commits;
  assert.ok(after >= 1);
  await engine.checkpoint();
  await engine.checkpoint();
  assert.equal(log.commits, after, 'nothing moved: nothing written');
  await feed(log, 5, 10, 1);
  while ((await engine.step()) > 0);
  await engine.checkpoint();
  assert.equal(log.commits, after + 1);
  assert.deepEqual(Object.values(await log.committedOffsets('view.n')), [log.stats().partitions[0].nextOffset]);
  await engine.close();
});
