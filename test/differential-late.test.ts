/**
 * Differential test of late events: views with a small max_lateness over events whose times arrive out of order,
 * spread over 1-4 partitions, fed in chunks (one event at a time up to all at once), read in batches of 1 to 2,000
 * records per partition, sometimes across a checkpoint + crash + restore.
 *
 * The oracle is the watermark as docs/sql.md ("Time, watermarks and late events") states it, replayed over the
 * records in the order the engine reads them (each step: partition 0's next batch, then partition 1's, …):
 *   - each partition's max time so far, where an event's time counts no further than its arrival (received_at);
 *     the watermark is the slowest partition's max minus max_lateness, never moving back, and it follows every event;
 *   - a partition that has records not read yet, and none read, holds it back (it does not move);
 *   - an event is late when every window holding it has closed, a window closing when the watermark reaches its
 *     end (end <= watermark); for sessions when its time is behind the watermark (time < watermark).
 * Then:
 *   1. the engine's late table is exactly the events the model calls late (by partition and offset), and its count;
 *   2. DuckDB over exactly the other events (each counted in the windows that were still open when it came)
 *      gives the view's rows: COUNT, SUM, MIN and MAX of a unique id per event, so nothing is lost or counted twice;
 *   3. for TUMBLE and SESSION views, counted + late = every event (ids add up).
 *
 *   DIFF_SEED=1 DIFF_LATE_RUNS=1000 node --import tsx --test test/differential-late.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { DuckDBConnection } from '@duckdb/node-api';
import { T0 } from './helpers/diff-grammar.js';
import { runDuck, duckPerFile } from './helpers/diff-run.js';
import { Harness, type PlacedEvent } from './helpers/diff-engine.js';

const SEED = process.env.DIFF_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.DIFF_SEED);
const RUNS = Number(process.env.DIFF_LATE_RUNS ?? 200);

let db: DuckDBConnection;
duckPerFile((c) => (db = c));

type Win = { kind: 'tumble'; sizeMs: number } | { kind: 'hop'; slideMs: number; sizeMs: number } | { kind: 'session'; gapMs: number };
type TimeCol = 'received_at' | 'event_time';

export interface LateCase {
  window: Win;
  time: TimeCol;
  latenessMs: number;
  keyed: boolean;
  partitions: number;
  batchRecords: number;
  /** Events, each with its partition; `data.n` is its index (a unique id). */
  events: PlacedEvent[];
  /** Sizes of the chunks appended before each drain (the rest in one last chunk). */
  chunks: number[];
  /** Checkpoint after this chunk, apply the next one, crash, restore (undefined: no crash). */
  crashAfter: number | undefined;
}

const timeOf = (e: PlacedEvent, time: TimeCol) => (time === 'received_at' ? e.received_at : (e.ts ?? e.received_at));

/** The windows (start, end) holding time t. */
function windowsOf(w: Win, t: number): [number, number][] {
  if (w.kind === 'tumble') {
    const s = Math.floor(t / w.sizeMs) * w.sizeMs;
    return [[s, s + w.sizeMs]];
  }
  if (w.kind === 'hop') {
    const out: [number, number][] = [];
    for (let s = Math.floor(t / w.slideMs) * w.slideMs; s > t - w.sizeMs; s -= w.slideMs) out.push([s, s + w.sizeMs]);
    return out;
  }
  return [];
}

interface ModelState {
  offsets: number[];
  maxTime: number[];
  watermark: number;
  late: Set<number>;
  /** Event id -> the watermark right after it was applied (its windows ending at or before it were closed). */
  applied: Map<number, number>;
}

/** The documented watermark, replayed over the engine's read order. */
class Model {
  readonly log: PlacedEvent[][];
  s: ModelState;
  #saved: ModelState | undefined;

  constructor(readonly c: LateCase) {
    this.log = Array.from({ length: c.partitions }, () => []);
    this.s = { offsets: new Array<number>(c.partitions).fill(0), maxTime: new Array<number>(c.partitions).fill(-Infinity), watermark: -Infinity, late: new Set(), applied: new Map() };
  }

  append(events: readonly PlacedEvent[]): void {
    for (const e of events) this.log[e.partition!].push(e);
  }

  drain(): void {
    const s = this.s;
    for (;;) {
      const unread = this.log.map((l, p) => s.offsets[p] < l.length);
      if (!unread.some(Boolean)) return;
      for (let p = 0; p < this.log.length; p++) {
        const batch = this.log[p].slice(s.offsets[p], s.offsets[p] + this.c.batchRecords);
        s.offsets[p] += batch.length;
        for (const e of batch) this.#apply(e, p, unread);
      }
    }
  }

  #apply(e: PlacedEvent, p: number, unread: boolean[]): void {
    const s = this.s;
    const t = timeOf(e, this.c.time);
    const clock = Math.min(t, e.received_at);
    if (clock > s.maxTime[p]) {
      s.maxTime[p] = clock;
      const heldBack = s.maxTime.some((m, q) => m === -Infinity && unread[q]);
      if (!heldBack) {
        const slowest = Math.min(...s.maxTime.filter((m) => m !== -Infinity));
        const next = slowest - this.c.latenessMs;
        s.watermark = Math.max(s.watermark, next);
      }
    }
    const wm = s.watermark;
    const w = this.c.window;
    const late = w.kind === 'session' ? t < wm : windowsOf(w, t).every(([, end]) => end <= wm);
    const id = e.data.n!;
    if (late) s.late.add(id);
    else s.applied.set(id, wm);
  }

  checkpoint(): void {
    this.#saved = structuredClone(this.s);
  }

  restore(): void {
    this.s = structuredClone(this.#saved!);
  }

  /** Partition and offset of each event. */
  position(id: number): string {
    for (let p = 0; p < this.log.length; p++) {
      const o = this.log[p].findIndex((e) => e.data.n === id);
      if (o >= 0) return `${p}:${o}`;
    }
    return '?';
  }
}

function viewSql(c: LateCase): string {
  const w = c.window;
  const s = (ms: number) => `INTERVAL '${ms}' MILLISECOND`;
  const win = w.kind === 'tumble' ? `TUMBLE(${c.time}, ${s(w.sizeMs)})` : w.kind === 'hop' ? `HOP(${c.time}, ${s(w.slideMs)}, ${s(w.sizeMs)})` : `SESSION(${c.time}, ${s(w.gapMs)})`;
  return `CREATE VIEW v WITH (max_lateness = '${c.latenessMs}ms') AS SELECT ${c.keyed ? 's, ' : ''}COUNT(*) AS c, SUM(n) AS sn, MIN(n) AS lo, MAX(n) AS hi FROM ev GROUP BY ${c.keyed ? 's, ' : ''}${win}`;
}

/** DuckDB's rows over the counted events, each in the windows still open when it was applied. */
async function expectedRows(c: LateCase, model: Model, byId: Map<number, PlacedEvent>): Promise<Record<string, unknown>[]> {
  await db.run('CREATE OR REPLACE TABLE le (n BIGINT, s VARCHAR, t BIGINT, wm DOUBLE)');
  const a = await db.createAppender('le');
  for (const [id, wm] of model.s.applied) {
    const e = byId.get(id)!;
    a.appendBigInt(BigInt(id));
    if (e.data.s === undefined || e.data.s === null) a.appendNull();
    else a.appendVarchar(e.data.s);
    a.appendBigInt(BigInt(timeOf(e, c.time)));
    a.appendDouble(wm === -Infinity ? -1e300 : wm);
    a.endRow();
  }
  a.closeSync();
  const w = c.window;
  const key = c.keyed ? 's' : 'NULL';
  let win: string;
  if (w.kind === 'tumble') win = `SELECT *, (t // ${w.sizeMs}) * ${w.sizeMs} AS ws, (t // ${w.sizeMs}) * ${w.sizeMs} + ${w.sizeMs} AS we FROM le`;
  else if (w.kind === 'hop') {
    const back = Math.ceil(w.sizeMs / w.slideMs) * w.slideMs;
    win = `SELECT *, ws + ${w.sizeMs} AS we FROM (SELECT *, unnest(generate_series((t // ${w.slideMs}) * ${w.slideMs} - ${back}, (t // ${w.slideMs}) * ${w.slideMs}, ${w.slideMs})) AS ws FROM le) WHERE ws > t - ${w.sizeMs}`;
  } else {
    const part = c.keyed ? 'PARTITION BY s' : '';
    const s0 = `SELECT *, CASE WHEN t - lag(t) OVER (${part} ORDER BY t) < ${w.gapMs} THEN 0 ELSE 1 END AS nw FROM le`;
    // Ties in t: the row flagged as a session's first must come first in the running sum too (gap > 0, so of tied
    // rows at most the first in lag's order is flagged).
    const s1 = `SELECT *, sum(nw) OVER (${part} ORDER BY t, nw DESC ROWS UNBOUNDED PRECEDING) AS sid FROM (${s0})`;
    const p2 = `PARTITION BY ${c.keyed ? 's, ' : ''}sid`;
    win = `SELECT *, min(t) OVER (${p2}) AS ws, max(t) OVER (${p2}) + ${w.gapMs} AS we FROM (${s1})`;
  }
  // A window that had closed when the event came does not get it (sessions: a counted event is never behind).
  const open = w.kind === 'session' ? '' : 'WHERE we > wm';
  return runDuck(db, `SELECT ${key} AS s, ws AS window_start, we AS window_end, COUNT(*) AS c, SUM(n) AS sn, MIN(n) AS lo, MAX(n) AS hi FROM (${win}) ${open} GROUP BY ALL`);
}

const rowText = (r: Record<string, unknown>, keyed: boolean) =>
  JSON.stringify([keyed ? (r.s ?? null) : null, Number(r.window_start), Number(r.window_end), Number(r.c), Number(r.sn), Number(r.lo), Number(r.hi)]);

async function check(c: LateCase): Promise<string[]> {
  const sql = viewSql(c);
  const h = new Harness({ partitions: c.partitions, batchRecords: c.batchRecords });
  const model = new Model(c);
  const byId = new Map(c.events.map((e) => [e.data.n!, e]));
  const problems: string[] = [];
  try {
    await h.start(sql);
    const chunks: PlacedEvent[][] = [];
    let at = 0;
    for (const size of c.chunks) {
      if (at >= c.events.length) break;
      chunks.push(c.events.slice(at, at + size));
      at += size;
    }
    if (at < c.events.length) chunks.push(c.events.slice(at));
    for (let i = 0; i < chunks.length; i++) {
      await h.append(chunks[i]);
      model.append(chunks[i]);
      if (c.crashAfter === i && i + 1 < chunks.length) {
        await h.drain();
        model.drain();
        // The next chunk is applied, then lost with the engine: the restored one reads it again.
        await h.crash(async () => {
          await h.append(chunks[i + 1]);
          await h.drain();
        });
        model.checkpoint();
        model.append(chunks[i + 1]);
        model.drain();
        model.restore();
        i++;
      }
      await h.drain();
      model.drain();
    }
    const late = h.late();
    const engineLate = new Set(late.recent.map((l) => `${l.partition}:${l.offset}`));
    const modelLate = new Set([...model.s.late].map((id) => model.position(id)));
    const missing = [...modelLate].filter((x) => !engineLate.has(x));
    const extra = [...engineLate].filter((x) => !modelLate.has(x));
    if (missing.length > 0) problems.push(`late by the model, not in the engine's late table (partition:offset): ${missing.join(', ')}`);
    if (extra.length > 0) problems.push(`in the engine's late table, not late by the model: ${extra.join(', ')}`);
    if (late.count !== model.s.late.size) problems.push(`late count ${late.count}, model ${model.s.late.size}`);
    if (late.recent.length !== late.count) problems.push(`late table holds ${late.recent.length} of ${late.count}`);
    const rows = h.rows();
    const got = rows.map((r) => rowText(r, c.keyed)).sort();
    const want = (await expectedRows(c, model, byId)).map((r) => rowText(r, c.keyed)).sort();
    const gotSet = new Set(got);
    const wantSet = new Set(want);
    for (const r of got) if (!wantSet.has(r)) problems.push(`engine row ${r} is not DuckDB's ([s, start, end, count, sum, min, max])`);
    for (const r of want) if (!gotSet.has(r)) problems.push(`DuckDB row ${r} is missing from the engine's rows`);
    if (c.window.kind !== 'hop') {
      const counted = rows.reduce((a, r) => a + Number(r.c), 0);
      const ids = rows.reduce((a, r) => a + Number(r.sn), 0) + late.recent.reduce((a, l) => a + (model.log[l.partition]?.[l.offset]?.data.n ?? NaN), 0);
      const all = c.events.reduce((a, e) => a + e.data.n!, 0);
      if (counted + late.count !== c.events.length) problems.push(`counted ${counted} + late ${late.count} != ${c.events.length} events`);
      if (ids !== all) problems.push(`ids counted + ids late = ${ids}, every id = ${all}`);
    }
  } finally {
    await h.close();
  }
  if (problems.length === 0) return [];
  const show = c.events.map((e) => `#${e.data.n} p${e.partition} t=${timeOf(e, c.time) - T0}${c.keyed ? ` s=${e.data.s}` : ''}`).join(' ');
  return [...problems.slice(0, 10), `view: ${sql}`, `partitions ${c.partitions}, batchRecords ${c.batchRecords}, chunks ${JSON.stringify(c.chunks)}, crashAfter ${c.crashAfter}`, `events (in order, time - T0): ${show}`];
}

const winArb: fc.Arbitrary<Win> = fc.oneof(
  fc.constantFrom(500, 1000, 2000, 5000).map((sizeMs): Win => ({ kind: 'tumble', sizeMs })),
  fc.constantFrom([500, 1000], [1000, 2000], [1000, 3000], [2000, 3000], [1000, 1000]).map(([slideMs, sizeMs]): Win => ({ kind: 'hop', slideMs, sizeMs })),
  fc.constantFrom(300, 1000, 2500).map((gapMs): Win => ({ kind: 'session', gapMs })),
);

/** Times advance about 100 ms per event with jitter of ±jitter ms, and now and then one far behind. */
export const lateCaseArb: fc.Arbitrary<LateCase> = fc
  .record({
    window: winArb,
    time: fc.constantFrom<TimeCol>('received_at', 'event_time'),
    latenessMs: fc.constantFrom(0, 1, 250, 1000, 2000),
    keyed: fc.boolean(),
    partitions: fc.integer({ min: 1, max: 4 }),
    batchRecords: fc.constantFrom(1, 2, 3, 7, 2000),
    jitter: fc.constantFrom(0, 300, 1500, 4000),
    // On a coarse grid, times often fall on window ends and on the watermark itself (the boundaries).
    grid: fc.constantFrom(1, 100, 500),
    raw: fc.array(fc.record({ u: fc.double({ min: -1, max: 1, noNaN: true }), far: fc.integer({ min: 0, max: 19 }), p: fc.nat(), s: fc.constantFrom('a', 'b', 'c') }), { minLength: 1, maxLength: 120, size: 'max' }),
    chunks: fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 })), { maxLength: 12 }),
    crash: fc.option(fc.nat({ max: 11 }), { nil: undefined, freq: 2 }),
  })
  .map(({ raw, jitter, grid, chunks, crash, ...rest }) => {
    const events = raw.map(({ u, far, p, s }, i): PlacedEvent => {
      let t = T0 + i * 100 + Math.round((u * jitter) / grid) * grid;
      if (far === 0) t -= 10_000;
      // The other time column keeps arrival order: only the view's time column is out of order.
      const other = T0 + i * 100;
      return rest.time === 'received_at'
        ? { received_at: t, ts: other, key: undefined, partition: p % rest.partitions, data: { n: i, s } }
        : { received_at: other, ts: t, key: undefined, partition: p % rest.partitions, data: { n: i, s } };
    });
    return { ...rest, events, chunks, crashAfter: crash };
  });

test(`property: late events and counted events partition the input, as the documented watermark says (DIFF_SEED=${SEED}, DIFF_LATE_RUNS=${RUNS})`, async () => {
  let last: string[] = [];
  let withLate = 0;
  await fc
    .assert(
      fc.asyncProperty(lateCaseArb, async (c) => {
        const problems = await check(c);
        if (problems.length > 0) {
          last = problems;
          throw new Error(problems.join('\n'));
        }
        const m = new Model(c);
        m.append(c.events);
        m.drain();
        if (m.s.late.size > 0) withLate++;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: process.env.DIFF_NO_SHRINK === "1", interruptAfterTimeLimit: 120_000 },
    )
    .catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n\nShrunk case:\n${last.join('\n')}`);
    });
  // Not blind: a good share of the cases have late events.
  assert.ok(withLate >= RUNS / 5, `only ${withLate} of ${RUNS} cases had a late event`);
});
