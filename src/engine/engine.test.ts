import { test } from 'node:test';
import assert from 'node:assert/strict';
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

test('a checkpoint whose saved position is past the log end fails loudly and the view is rebuilt from the log, not skipping new offsets', async () => {
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
  assert.match(logged.msg ?? '', /position of view n in partition 0 is 100, past the end of the log \(40\).*rebuilt/);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [40]);
  // New records at offsets 40.. are counted, not skipped as "already seen".
  await feed(after, 10, 1000, 1);
  while ((await second.step()) > 0);
  assert.deepEqual(second.rows('n').map((r) => r.n), [50]);
  await second.close();
});

test('checkpoints are written in the versioned codec, and a checkpoint of the earlier v8 format is still restored', async () => {
  const { serialize } = await import('node:v8');
  const { decodeCheckpoint, isEncodedCheckpoint } = await import('./checkpoint-codec.js');
  const log = new MemoryLog(2);
  const store = new MemoryViewStore();
  const sql = "CREATE VIEW v WITH (max_lateness = '0s') AS SELECT k, COUNT(*) AS n, APPROX_COUNT_DISTINCT(u) AS users FROM e GROUP BY k, TUMBLE(received_at, INTERVAL '1' SECOND)";
  const engine = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  await engine.createView('v', sql);
  await feed(log, 2_000, 0, 5);
  while ((await engine.step()) > 0);
  const rows = engine.rows('v', { limit: 100_000, order: 'window_start' });
  await engine.close();
  const bytes = (await store.loadCheckpoint('v'))!;
  assert.ok(isEncodedCheckpoint(bytes));
  for (const written of [bytes, serialize(decodeCheckpoint(bytes))]) {
    await store.saveCheckpoint('v', written);
    const logger = new RecordingLogger();
    const again = new Engine({ log, store, tables: new Tables(), catalog, clock: new ManualClock(0), logger });
    await again.start(false);
    // Restored, not rebuilt (a checkpoint that cannot be read is logged, and the view rebuilt from the log).
    assert.deepEqual(logger.lines.filter((l) => l.level === 'error'), []);
    assert.deepEqual(again.rows('v', { limit: 100_000, order: 'window_start' }), rows);
    await again.close();
    assert.ok(isEncodedCheckpoint((await store.loadCheckpoint('v'))!), 'the final checkpoint is in the codec again');
  }
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
