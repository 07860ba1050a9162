/**
 * Differential test of views held in several units (docs/sql.md, "Scale: engine workers and hot keys"), against
 * DuckDB as the independent oracle. Random views (the grammar of test/differential.test.ts: keys with NULLs and
 * missing fields, JOINs, WHERE, HAVING, COUNT(*), COUNT(x), COUNT(DISTINCT), SUM, AVG, MIN/MAX, APPROX_COUNT_DISTINCT,
 * APPROX_PERCENTILE, TOP_K; no window, TUMBLE, HOP, SESSION) over random events on 2-4 partitions, built by a random
 * history of engines:
 *
 *   - the events are cut into phases, appended in order; in each phase the partitions are split among engines
 *     (`ownedPartitions`: one per partition, all in one, or a random grouping), each step drains every engine;
 *   - into a phase either by a restart (the previous engines closed, abandoned without a checkpoint (a crash) or some
 *     of each; new engines restore the units from the shared store) or by `own()` handovers between running engines
 *     (losers release first, then gainers take over), or by partitions taken from running engines (a lease lost: the
 *     new owner goes on from the last checkpoint while the old one still applies the partition for half a phase,
 *     then learns it lost it and goes back to its checkpoints without writing);
 *   - optionally a checkpoint in the middle of a phase (so a crash replays only part of it);
 *   - the last phase is always one engine over all partitions, holding the view in as many units as the history
 *     left (checkpointed per anchor partition), and optionally closed and restored once more.
 *
 * After every drain the rows (merged over units and, while split, over engines with `partials`) must equal DuckDB's
 * answer over the events appended so far: exact aggregates equal (float sums within 1e-9 relative), HLL within six
 * standard errors, DDSketch within its accuracy, TOP_K within Space-Saving's bounds (helpers/diff-run.ts
 * compareRows). No event may be late: either max_lateness is 1 h (times spread over 2 minutes, in any order), or it is
 * 1, 2 or 5 s and event i's times are T0 + i·step + jitter with |jitter| < max_lateness / 2, so each event is behind
 * every event before it by less than max_lateness: by the documented watermark (the slowest partition's max time
 * minus max_lateness, in any unit) it is never late, while windows do close during the run (closed windows merged
 * once over units, sessions joined across units).
 *
 *   DIFF_SEED=123 DIFF_UNITS_RUNS=200 node --import tsx --test test/differential-units.test.ts
 *
 * (100 runs by default, about 5 s; DIFF_NO_SHRINK=1 reports the first failure unshrunk.) Checked to fail, each within a
 * few runs, with the engine changed to drop one part of a row merged over units, to skip one unit's state in a read,
 * to merge closed windows from one unit only, to keep touching sessions of two units apart, to restore all units but
 * one, and to checkpoint when partitions are taken (`own(…, false)`).
 *
 * On a mismatch the failure prints the seed, both SQL texts, the history of engines, the events, both answers at
 * the failing read, and whether one straight engine over one partition agrees with DuckDB (a disagreement there too
 * is not about units: test/differential.test.ts covers it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { DuckDBConnection } from '@duckdb/node-api';
import { encodeEventRecord, ManualClock } from '../src/core/index.js';
import { Engine, MemoryViewStore, Tables } from '../src/engine/index.js';
import { MemoryLog } from '../src/log/index.js';
import { schemaCatalog, type Catalog } from '../src/sql/index.js';
import { EV_SCHEMA, T0, TABLE_ROWS, eventArb, renderView, viewArb, type Rendered, type ViewGen } from './helpers/diff-grammar.js';
import { compareRows, duckPerFile, loadDuck, runDuck, runEngine, type Row } from './helpers/diff-run.js';
import type { PlacedEvent } from './helpers/diff-engine.js';

const SEED = process.env.DIFF_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.DIFF_SEED);
const RUNS = Number(process.env.DIFF_UNITS_RUNS ?? 100);

let db: DuckDBConnection;
duckPerFile((c) => (db = c));

const show = (x: unknown) => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v));

/** Partitions split among engines: each inner list is one engine's `ownedPartitions`. */
type Grouping = number[][];

interface Phase {
  grouping: Grouping;
  /**
   * How the engines of this phase come to be: new engines restored from the store, the running ones handing over
   * (`own(…, true)`), or partitions taken from running engines that go on applying them for a while (leases lost:
   * the new owner `own(…, true)`, the old one later `own(…, false)`).
   */
  enter: 'restart' | 'own' | 'taken';
  /** Engines that close (a checkpoint) at the end of the phase when the next one restarts; the others are abandoned (a crash). Bit i: engine i. */
  closeMask: number;
  /** Append half the phase's events, drain, checkpoint every engine, then the rest. */
  midCheckpoint: boolean;
  /** Events appended in this phase. */
  events: number;
}

export interface UnitsCase {
  view: ViewGen;
  partitions: number;
  /** undefined: max_lateness 1 h, times anywhere within 2 minutes (nothing closes). */
  latenessMs: number | undefined;
  batchRecords: number;
  events: PlacedEvent[];
  phases: Phase[];
  /** After the last phase: close the engine and read again from a new one restored from the units. */
  reload: boolean;
}

const all = (n: number) => Array.from({ length: n }, (_, p) => p);

/** Partitions grouped by engine id, engines in the order of their ids. */
function grouping(n: number, mode: number, ids: readonly number[]): Grouping {
  if (mode === 0) return all(n).map((p) => [p]);
  if (mode === 1) return [all(n)];
  const by = new Map<number, number[]>();
  for (let p = 0; p < n; p++) {
    const id = ids[p] % n;
    by.set(id, [...(by.get(id) ?? []), p]);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([, ps]) => ps);
}

const phaseRaw = fc.record({
  mode: fc.constantFrom(0, 1, 2, 2),
  ids: fc.array(fc.nat({ max: 3 }), { minLength: 4, maxLength: 4 }),
  enter: fc.constantFrom<Phase['enter']>('restart', 'own', 'taken'),
  closeMask: fc.oneof(fc.constant(15), fc.constant(0), fc.nat({ max: 15 })),
  midCheckpoint: fc.boolean(),
  share: fc.nat({ max: 10 }),
});

export const unitsCaseArb: fc.Arbitrary<UnitsCase> = fc
  .record({
    view: viewArb,
    // Half the views without WHERE and JOIN: random filters often leave few events, and few windows to close.
    plain: fc.boolean(),
    partitions: fc.integer({ min: 2, max: 4 }),
    lateness: fc.constantFrom<number | undefined>(undefined, 1000, 2000, 5000),
    stepMs: fc.constantFrom(250, 1000, 2000),
    gridMs: fc.constantFrom(1, 250, 500),
    batchRecords: fc.constantFrom(1, 3, 2000, 2000),
    raw: fc.array(fc.record({ e: eventArb, p: fc.nat({ max: 11 }), u: fc.double({ min: -1, max: 1, noNaN: true }), v: fc.double({ min: -1, max: 1, noNaN: true }) }), { maxLength: 60, size: 'max' }),
    middle: fc.array(phaseRaw, { minLength: 1, maxLength: 3 }),
    last: phaseRaw,
    reload: fc.boolean(),
  })
  .map(({ view: generated, plain, partitions, lateness, stepMs, gridMs, batchRecords, raw, middle, last, reload }): UnitsCase => {
    // (The join stays when an expression reads the table's columns.)
    const usesTable = JSON.stringify({ ...generated, join: undefined }).includes('"hl":"t.');
    const view = plain ? { ...generated, where: undefined, join: usesTable ? generated.join : undefined } : generated;
    const jitterMax = lateness === undefined ? 0 : lateness / 2 - 1;
    // Toward zero on the grid: |jitter| stays below max_lateness / 2 (and times often fall on window boundaries).
    const jitter = (u: number) => Math.trunc((u * jitterMax) / gridMs) * gridMs;
    const events = raw.map(({ e, p, u, v }, i): PlacedEvent => {
      const partition = p % partitions;
      if (lateness === undefined) return { ...e, partition };
      const base = T0 + i * stepMs;
      return { ...e, received_at: base + jitter(u), ts: e.ts === undefined ? undefined : base + jitter(v), partition };
    });
    const raws = [...middle, { ...last, mode: 1 }];
    const total = raws.reduce((a, r) => a + r.share, 0);
    let before = 0;
    let acc = 0;
    const phases = raws.map((r, i): Phase => {
      acc += r.share;
      const upTo = i === raws.length - 1 ? events.length : total === 0 ? 0 : Math.round((events.length * acc) / total);
      const count = upTo - before;
      before = upTo;
      return { grouping: grouping(partitions, r.mode, r.ids), enter: i === 0 ? 'restart' : r.enter, closeMask: r.closeMask, midCheckpoint: r.midCheckpoint, events: count };
    });
    return { view, partitions, latenessMs: lateness, batchRecords, events, phases, reload };
  });

/** The SQL of the view with the case's max_lateness. */
function sqlOf(r: Rendered, c: UnitsCase): string {
  if (c.latenessMs === undefined) return r.hl;
  const hl = r.hl.replace("max_lateness = '1h'", `max_lateness = '${c.latenessMs}ms'`);
  assert.notEqual(hl, r.hl, 'the grammar renders max_lateness = 1h');
  return hl;
}

/** A history of engines over one log and one store (the units' checkpoints), as in test/helpers/diff-engine.ts. */
class Cluster {
  readonly log: MemoryLog;
  readonly store = new MemoryViewStore();
  readonly tables = new Tables();
  // Held at T0: no window closes on the wall clock and no partition goes idle; only event times close windows.
  readonly clock = new ManualClock(T0);
  engines: Engine[] = [];
  /** Every engine made, closed at the very end (abandoned ones only then: their writes come after every read). */
  readonly #made: Engine[] = [];

  constructor(
    partitions: number,
    readonly batchRecords: number,
  ) {
    this.log = new MemoryLog(partitions);
  }

  #catalog = (): Catalog => schemaCatalog({ ev: EV_SCHEMA }, this.tables);

  make(owned: readonly number[]): Engine {
    const e = new Engine({ log: this.log, store: this.store, tables: this.tables, catalog: this.#catalog, clock: this.clock, batchRecords: this.batchRecords, ownedPartitions: owned });
    this.#made.push(e);
    return e;
  }

  async append(events: readonly PlacedEvent[]): Promise<void> {
    await this.log.append(
      events.map((e) => ({
        key: e.key,
        partition: e.partition,
        timestampMs: e.received_at,
        value: encodeEventRecord({ receivedAt: e.received_at, schemaVersion: 1, type: 'ev', eventTimeMs: e.ts, data: e.data as Record<string, unknown> }),
      })),
    );
  }

  async drain(): Promise<void> {
    for (const e of this.engines) while ((await e.step()) > 0);
  }

  /** The view's rows merged over the engines (the first merges the others' partial groups, as the engine host does). */
  rows(): Row[] {
    const [first, ...rest] = this.engines;
    return first.rows('v', { limit: 10_000_000, order: 'window_start' }, rest.map((e) => e.partials('v')));
  }

  late(): { count: number; recent: unknown[] } {
    const parts = this.engines.map((e) => e.late('v'));
    return { count: parts.reduce((a, p) => a + p.count, 0), recent: parts.flatMap((p) => p.recent) };
  }

  /** Anchors with a unit checkpoint in the store. */
  async anchors(): Promise<number[]> {
    const out: number[] = [];
    for (let p = 0; p < this.log.partitionCount; p++) if ((await this.store.loadCheckpoint('v', p)) !== undefined) out.push(p);
    return out;
  }

  async closeAll(): Promise<void> {
    for (const e of this.#made) await e.close().catch(() => undefined);
  }
}

interface Outcome {
  problems: string[];
  /** Unit checkpoints in the store (anchors) when the last engine over all partitions took them up: the units it holds. */
  unitsAtEnd: number;
}

async function expectedFor(r: Rendered, events: readonly PlacedEvent[], cache: Map<number, Row[]>): Promise<Row[]> {
  let rows = cache.get(events.length);
  if (rows === undefined) {
    await loadDuck(db, events);
    rows = await runDuck(db, r.db);
    cache.set(events.length, rows);
  }
  return rows;
}

/** Runs the case's history of engines; after every drain compares the rows with DuckDB's over the events so far. */
async function runCase(c: UnitsCase, r: Rendered, sql: string): Promise<Outcome> {
  const cl = new Cluster(c.partitions, c.batchRecords);
  const cache = new Map<number, Row[]>();
  let appended = 0;
  let unitsAtEnd = 0;
  const compare = async (stage: string): Promise<string[]> => {
    const so = c.events.slice(0, appended);
    const got = cl.rows();
    const expected = await expectedFor(r, so, cache);
    const problems = compareRows(r, got, expected).map((p) => `${stage}: ${p}`);
    const late = cl.late();
    if (late.count > 0) problems.push(`${stage}: ${late.count} events late (none is, by the times generated): ${show(late.recent)}`);
    if (problems.length > 0) problems.push(`${stage}: halflife rows ${show(got)}`, `${stage}: DuckDB rows ${show(expected)}`);
    return problems;
  };
  try {
    await cl.tables.put('tab', 'id', TABLE_ROWS, true);
    for (const [i, ph] of c.phases.entries()) {
      const label = `phase ${i} ${JSON.stringify(ph.grouping)} (${ph.enter})`;
      let chunk = c.events.slice(appended, appended + ph.events);
      if (i === 0) {
        cl.engines = ph.grouping.map((g) => cl.make(g));
        await cl.engines[0].start(false);
        await cl.engines[0].createView('v', sql);
        for (const e of cl.engines.slice(1)) await e.start(false);
      } else if (ph.enter === 'restart') {
        const prev = c.phases[i - 1];
        // The previous engines end: closed (a checkpoint) or abandoned (a crash: the next ones replay from the store).
        for (const [j, e] of cl.engines.entries()) if ((prev.closeMask >> j) & 1) await e.close();
        if (i === c.phases.length - 1) unitsAtEnd = (await cl.anchors()).length;
        cl.engines = ph.grouping.map((g) => cl.make(g));
        for (const e of cl.engines) await e.start(false);
      } else {
        // Engine j takes grouping[j] (or nothing).
        while (cl.engines.length < ph.grouping.length) {
          const e = cl.make([]);
          await e.start(false);
          cl.engines.push(e);
        }
        const next = cl.engines.map((_e, j) => ph.grouping[j] ?? []);
        const losing = (j: number) => cl.engines[j].owned().some((p) => !next[j].includes(p));
        const gaining = (j: number) => next[j].some((p) => !cl.engines[j].owned().includes(p));
        if (ph.enter === 'own') {
          // A handover: the old owners checkpoint and release, then the new ones go on from there.
          for (const [j, e] of cl.engines.entries()) if (losing(j)) await e.own(e.owned().filter((p) => next[j].includes(p)), true);
          for (const [j, e] of cl.engines.entries()) if (gaining(j)) await e.own(next[j], true);
        } else {
          // Leases lost: the new owners take their partitions from the last checkpoints while the old ones still
          // apply them (both apply the first half of the phase's events: no read then), then the old ones learn they
          // lost them and go back to their checkpoints without writing (what they applied since is dropped).
          for (const [j, e] of cl.engines.entries()) if (gaining(j) && !losing(j)) await e.own(next[j], true);
          const overlap = chunk.slice(0, Math.floor(chunk.length / 2));
          await cl.append(overlap);
          appended += overlap.length;
          chunk = chunk.slice(overlap.length);
          await cl.drain();
          for (const [j, e] of cl.engines.entries()) if (losing(j)) await e.own(e.owned().filter((p) => next[j].includes(p)), false);
          for (const [j, e] of cl.engines.entries()) if (gaining(j)) await e.own(next[j], true);
        }
        if (i === c.phases.length - 1) unitsAtEnd = (await cl.anchors()).length;
      }
      const half = ph.midCheckpoint ? Math.floor(chunk.length / 2) : 0;
      if (half > 0) {
        await cl.append(chunk.slice(0, half));
        appended += half;
        await cl.drain();
        const p = await compare(`${label}, middle`);
        if (p.length > 0) return { problems: p, unitsAtEnd };
        for (const e of cl.engines) await e.checkpoint();
      }
      await cl.append(chunk.slice(half));
      appended += chunk.length - half;
      await cl.drain();
      const p = await compare(`${label}, end`);
      if (p.length > 0) return { problems: p, unitsAtEnd };
    }
    if (c.reload) {
      for (const e of cl.engines) await e.close();
      unitsAtEnd = (await cl.anchors()).length;
      cl.engines = [cl.make(all(c.partitions))];
      await cl.engines[0].start(false);
      await cl.drain();
      const p = await compare('restored from the units after the last phase');
      if (p.length > 0) return { problems: p, unitsAtEnd };
    }
    return { problems: [], unitsAtEnd };
  } finally {
    await cl.closeAll();
  }
}

/** A readable history: phases, events per phase, ends. */
function describe(c: UnitsCase): string {
  return c.phases
    .map((ph, i) => {
      const next = c.phases[i + 1];
      const end = next === undefined ? (c.reload ? 'closed, restored' : '') : next.enter === 'own' ? 'handover' : next.enter === 'taken' ? 'partitions taken (half the next phase applied by old and new owners)' : `engines closed by mask ${ph.closeMask.toString(2)} (others crash)`;
      return `phase ${i}: ${ph.enter} ${JSON.stringify(ph.grouping)}, ${ph.events} events${ph.midCheckpoint ? ' (checkpoint half way)' : ''}${end === '' ? '' : `; then ${end}`}`;
    })
    .join('\n  ');
}

const eventText = (e: PlacedEvent) => ({ p: e.partition, ra: e.received_at - T0, ts: e.ts === undefined ? undefined : e.ts - T0, key: e.key, data: e.data });

export async function checkUnitsCase(c: UnitsCase): Promise<{ problems: string[]; unitsAtEnd: number }> {
  const r = renderView(c.view);
  const sql = sqlOf(r, c);
  const out = await runCase(c, r, sql);
  if (out.problems.length === 0) return out;
  // One engine over one partition, the same events in order: does the disagreement need units at all?
  let straight: string;
  try {
    const rows = await runEngine(sql, c.events, 1, false);
    const p = compareRows(r, rows, await expectedFor(r, c.events, new Map()));
    straight = p.length === 0 ? 'agrees with DuckDB (the difference is in the units)' : `disagrees too: ${p.slice(0, 3).join('; ')}`;
  } catch (err) {
    straight = `failed: ${(err as Error).message}`;
  }
  return {
    unitsAtEnd: out.unitsAtEnd,
    problems: [
      ...out.problems.slice(0, 14),
      `seed: DIFF_SEED=${SEED}; partitions ${c.partitions}; max_lateness ${c.latenessMs ?? 3_600_000} ms; batchRecords ${c.batchRecords}`,
      `history:\n  ${describe(c)}`,
      `halflife SQL: ${sql}`,
      `DuckDB SQL: ${r.db}`,
      `one straight engine over one partition: ${straight}`,
      `events (times - T0): ${show(c.events.map(eventText))}`,
    ],
  };
}

test(`property: a view built in several units (engines per partition, restarts, crashes, handovers) answers what DuckDB answers (DIFF_SEED=${SEED}, DIFF_UNITS_RUNS=${RUNS})`, async () => {
  let runs = 0;
  let multiUnit = 0;
  let tight = 0;
  let last: string[] = [];
  await fc
    .assert(
      fc.asyncProperty(unitsCaseArb, async (c) => {
        const { problems, unitsAtEnd } = await checkUnitsCase(c);
        if (problems.length > 0) {
          last = problems;
          throw new Error(problems.join('\n'));
        }
        runs++;
        if (unitsAtEnd > 1) multiUnit++;
        if (c.latenessMs !== undefined) tight++;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: process.env.DIFF_NO_SHRINK === '1' },
    )
    .catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n\nShrunk case:\n${last.join('\n')}`);
    });
  // Not blind: most histories leave the last engine with several units, and many close windows on the way.
  assert.ok(multiUnit >= runs / 3, `only ${multiUnit} of ${runs} cases ended with several units`);
  assert.ok(tight >= runs / 3, `only ${tight} of ${runs} cases had a short max_lateness`);
});
