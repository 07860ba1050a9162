import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeEventRecord, ManualClock } from '../core/index.js';
import { MemoryLog } from '../log/index.js';
import { schemaCatalog, type Catalog } from '../sql/index.js';
import { Engine } from './engine.js';
import { Tables } from './tables.js';
import { mkdtemp, mkdir, writeFile, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeEventRecord } from '../core/index.js';
import { planView } from '../sql/index.js';
import { FileViewStore } from './view-store.js';
import { ViewState } from './view-state.js';
import { encodeCheckpoint } from './checkpoint-codec.js';

const LEGACY_SQL = 'CREATE VIEW v AS SELECT COUNT(*) AS n FROM e';

const catalog = (): Catalog => schemaCatalog({ e: { type: 'object', properties: { k: { type: 'string' }, u: { type: 'string' } } } });

async function feedAlternating(log: MemoryLog, n: number, t0: number) {
  await log.append(Array.from({ length: n }, (_, i) => ({ timestampMs: t0 + i, partition: i % 2, value: encodeEventRecord({ receivedAt: t0 + i, schemaVersion: 1, type: 'e', data: { k: 'k', u: `u${i}` } }) })));
}

/** What the engine before units saved: one state over `owned` (null: all). */
async function legacyCheckpoint(log: MemoryLog, owned: number[] | null, upTo: number[]) {
  const plan = planView(LEGACY_SQL, catalog(), 'v');
  const s = new ViewState(plan, 2);
  const offsets = [0, 0];
  for (const p of owned ?? [0, 1]) {
    for (const rec of await log.read(p, 0, { maxRecords: upTo[p] })) {
      const ev = decodeEventRecord(rec.value);
      const row = { type: ev.type, data: ev.data, key: undefined, received_at: ev.received_at, event_time: ev.received_at, partition: p, offset: rec.offset, joined: [] };
      s.apply(row as never, plan.keys.map((k) => k.eval(row as never)), 0);
      offsets[p] = rec.next;
    }
  }
  return encodeCheckpoint({ format: 1, sql: plan.sql, offsets, startOffsets: [0, 0], owned, state: s.save() });
}

test('checkpoints an earlier version left behind for an older worker count are not taken: only the set last written counts', async () => {
  const log = new MemoryLog(2);
  await feedAlternating(log, 200, 0);
  const dir = await mkdtemp(join(tmpdir(), 'rev-'));
  await mkdir(join(dir, 'v'), { recursive: true });
  // workers=1 long ago (stale: 30 records per partition), then workers=2 (rebuilt from the log, now at the end).
  await writeFile(join(dir, 'v', 'checkpoint.bin'), await legacyCheckpoint(log, null, [30, 30]));
  await utimes(join(dir, 'v', 'checkpoint.bin'), new Date(1_000_000), new Date(1_000_000));
  await writeFile(join(dir, 'v', 'checkpoint-0-of-2.bin'), await legacyCheckpoint(log, [0], [100, 100]));
  await writeFile(join(dir, 'v', 'checkpoint-1-of-2.bin'), await legacyCheckpoint(log, [1], [100, 100]));
  const engines = [[0], [1]].map((owned) => new Engine({ log, store: new FileViewStore(dir, { definitions: [{ name: 'v', sql: LEGACY_SQL }] }), tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned }));
  for (const e of engines) await e.start(false);
  for (const e of engines) while ((await e.step()) > 0);
  const rows = engines[0].rows('v', {}, [engines[1].partials('v')]);
  assert.deepEqual(rows.map((r) => r.n), [200], 'the stale state is not added');
  for (const e of engines) await e.close();
  assert.deepEqual((await readdir(join(dir, 'v'))).sort(), ['p0.bin', 'p1.bin'], 'every legacy file is gone once carried over');
  const again = [[0], [1]].map((owned) => new Engine({ log, store: new FileViewStore(dir, { definitions: [{ name: 'v', sql: LEGACY_SQL }] }), tables: new Tables(), catalog, clock: new ManualClock(0), ownedPartitions: owned }));
  for (const e of again) await e.start(false);
  for (const e of again) while ((await e.step()) > 0);
  assert.deepEqual(again[0].rows('v', {}, [again[1].partials('v')]).map((r) => r.n), [200]);
  for (const e of again) await e.close();
  await rm(dir, { recursive: true, force: true });
});
