// The floor under the backfill scenario: the same logged events, read and aggregated by hand-written loops that do
// only the work the three benchmark views need (no planner, no expression closures, no row objects beyond the
// decoded fields), in stages. What the engine could reach at best in JavaScript on this machine.
//   node --expose-gc --import tsx bench/backfill-floor.ts [events]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEventRecord, eventRecordIs, readEventHeader, readEventData, type EventHeader } from '../src/core/index.js';
import { SegmentLog } from '../src/log/index.js';
import { DDSketch, hash64, HllArena, sketchKey } from '../src/sketch/index.js';
import { makeEvents } from './workload.js';

const N = Number(process.argv[2] ?? 1_000_000);
const dir = await mkdtemp(join(tmpdir(), 'floor-'));
const log = new SegmentLog({ dir, partitions: 8, fsync: 'never' });
await log.start();
const start = 1_790_000_000_000;
for (let i = 0; i < N; i += 1000) {
  const evs = makeEvents(1 + i, 1000);
  await log.append(evs.map((e, j) => { const t = Math.floor(start + (i + j) * 0.05); return { key: e.key, timestampMs: t, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: e.type, data: e.data }) }; }));
}
async function run(label: string, perRecord: (buf: Buffer, s: number, e: number) => void) {
  global.gc?.();
  const t0 = performance.now();
  let n = 0;
  for (let p = 0; p < 8; p++) {
    let from = 0;
    for (;;) {
      const b = await log.readBatch(p, from, { maxRecords: 5000, maxBytes: 8 << 20 });
      if (b.count === 0) break;
      for (let i = 0; i < b.count; i++) perRecord(b.buffer, b.valueStarts[i], b.valueEnds[i]);
      n += b.count;
      from = b.offsets[b.count - 1] + 1;
    }
  }
  console.log(label.padEnd(50), Math.round(n / ((performance.now() - t0) / 1000)).toLocaleString('en-US'), 'events/s');
}
const h: EventHeader = { version: 0, receivedAt: 0, eventTime: 0, payloadOffset: 0, replay: false };
const c = { pos: 0 };
const pvWanted = ['article_id', 'user_id'];
const trWanted = ['pair', 'price'];
const hashOut = new Uint32Array(2);
for (let rep = 0; rep < 2; rep++) {
  await run('read + scan only', () => {});
  await run('+ header + type test', (buf, s) => { readEventHeader(buf, s, h); eventRecordIs(buf, 'page_view', s); });
  await run('+ decode wanted fields', (buf, s, e) => {
    readEventHeader(buf, s, h);
    const out: Record<string, unknown> = {};
    if (eventRecordIs(buf, 'page_view', s)) readEventData(buf, s, e, h.payloadOffset, pvWanted, out, c);
    else if (eventRecordIs(buf, 'trade', s)) readEventData(buf, s, e, h.payloadOffset, trWanted, out, c);
  });
  // The three views by hand: count per type per minute; per article per 1-min pane: count + HLL(user); per pair per minute DDSketch(price).
  const perType = new Map<string, number>();
  const panes = new Map<number, { rows: Map<string, number>; counts: number[]; hll: HllArena }>();
  const pairs = new Map<string, DDSketch>();
  await run('+ the three views by hand (Map groups, arena HLL)', (buf, s, e) => {
    readEventHeader(buf, s, h);
    const minute = Math.floor(h.receivedAt / 60000);
    const out: Record<string, unknown> = {};
    if (eventRecordIs(buf, 'page_view', s)) {
      perType.set('page_view' + minute, (perType.get('page_view' + minute) ?? 0) + 1);
      readEventData(buf, s, e, h.payloadOffset, pvWanted, out, c);
      let pane = panes.get(minute);
      if (pane === undefined) panes.set(minute, (pane = { rows: new Map(), counts: [], hll: new HllArena(14) }));
      const a = out.article_id as string;
      let r = pane.rows.get(a);
      if (r === undefined) { r = pane.counts.length; pane.rows.set(a, r); pane.counts.push(0); pane.hll.grow(r + 1); }
      pane.counts[r]++;
      hash64(sketchKey(out.user_id), hashOut);
      pane.hll.add(r, hashOut[0], hashOut[1]);
    } else if (eventRecordIs(buf, 'trade', s)) {
      perType.set('trade' + minute, (perType.get('trade' + minute) ?? 0) + 1);
      readEventData(buf, s, e, h.payloadOffset, trWanted, out, c);
      const k = (out.pair as string) + minute;
      let d = pairs.get(k);
      if (d === undefined) pairs.set(k, (d = new DDSketch()));
      d.add(out.price as number);
    } else perType.set('app_error' + minute, (perType.get('app_error' + minute) ?? 0) + 1);
  });
}
await log.close();
await rm(dir, { recursive: true, force: true });
