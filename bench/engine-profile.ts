// Profiling harness for the engine alone: logs 300,000 events once (kept in $TMPDIR/halflife-engine-profile), then
// applies them to the three benchmark views and prints events/s.
//   node --import tsx bench/engine-profile.ts [letters of the views to run: p, r, p99 → 'pr']
//   node --cpu-prof --import tsx bench/engine-profile.ts
import { encodeEventRecord, ManualClock } from '../src/core/index.js';
import { Engine, MemoryViewStore, Tables } from '../src/engine/index.js';
import { SegmentLog } from '../src/log/index.js';
import { schemaCatalog } from '../src/sql/index.js';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';
import { ENGINE_VIEWS } from './engine-bench.js';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = join(tmpdir(), 'halflife-engine-profile');
const fresh = !existsSync(dir);
const log = new SegmentLog({ dir, partitions: 8, fsync: 'never' });
await log.start();
const N = 300_000; const t0 = 1_790_000_000_000;
for (let i = 0; fresh && i < N; i += 1000) {
  const evs = makeEvents(1 + i, 1000);
  await log.append(evs.map((e, j) => { const t = Math.floor(t0 + (i + j) * 0.05); return { key: e.key, timestampMs: t, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: e.type, data: e.data }) }; }));
}
const catalog = () => schemaCatalog(WORKLOAD_SCHEMAS);
const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(t0) });
await engine.start(false);
const only = process.argv[2];
for (const [name, sql] of Object.entries(ENGINE_VIEWS)) if (!only || only.includes(name[0])) await engine.createView(name, sql);
const s = performance.now(); let n = 0;
for (;;) { const r = await engine.step(); if (r === 0) break; n += r; }
console.log('events/s', Math.round(n / ((performance.now() - s) / 1000)));
await log.close();
