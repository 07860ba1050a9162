import { setMaxListeners } from 'node:events';
import { deserialize } from 'node:v8';
import { decodeCheckpoint, encodeCheckpoint, isEncodedCheckpoint } from './checkpoint-codec.js';
import {
  BucketHistogram,
  FRESHNESS_BUCKETS_S,
  decodeEventRecord,
  eventRecordIs,
  eventRecordType,
  readEventData,
  readEventHeader,
  HalflifeError,
  LifecycleState,
  silentLogger,
  SystemClock,
  type Clock,
  type Cursor,
  type EventHeader,
  type HistogramSnapshot,
  type Logger,
} from '../core/index.js';
import { batchKey, positionAfter, type Log, type RecordBatch } from '../log/index.js';
import { compareForOrder, planView, toText, type Catalog, type EventRow, type Value, type ViewPlan } from '../sql/index.js';
import './errors.js';
import { createAccumulator, restoreAccumulator, type Accumulator } from './accumulators.js';
import { groupId, type GroupTable } from './group-table.js';
import type { Tables } from './tables.js';
import type { ViewStore } from './view-store.js';
import { ViewState, type Group, type LateEvent, type SavedViewState, type VersionCounter } from './view-state.js';

const VIEW_NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;
/** The plan source of `FROM events`: every event type. */
const ALL_STREAMS = '*';
/** 1: one checkpoint per engine over the partitions it owned (read to carry over); 2: one per view and partition. */
const LEGACY_CHECKPOINT_FORMAT = 1;
const CHECKPOINT_FORMAT = 2;
const NO_JOINS: (Record<string, unknown> | undefined)[] = [];
/** Records applied between two chances for queries to run. */
const APPLY_SLICE = 400;
/** Floor rises remembered per view with several units (see `Runtime.floorMarks`): minutes of steps. */
const MAX_FLOOR_MARKS = 10_000;
/** Late events kept per view for /late (each unit's state keeps as many). */
const LATE_RECENT = 1000;

/**
 * A unit of a view's state as saved (format 2), under its anchor partition: the state of the partitions an engine
 * applied together; per partition it goes on applying, the position it goes on from (`live`) and where the view
 * started in it (`start`); per partition that moved to another unit, the position its records here end at (`moved`:
 * where the next unit goes on, even if that unit was never saved).
 */
interface UnitCheckpoint {
  format: number;
  sql: string;
  anchor: number;
  live: Record<string, number>;
  start: Record<string, number>;
  moved: Record<string, number>;
  state: SavedViewState;
}

/** A unit as found in the store (format 2, or a checkpoint of the format before units: `legacyFile`). */
interface FoundUnit {
  anchor: number;
  live: Map<number, number>;
  start: Map<number, number>;
  moved: Map<number, number>;
  state: SavedViewState;
  legacyFile?: string;
}

/**
 * Part of a view's state in an engine: one ViewState over the partitions it applies (`live`, owned by this engine),
 * which also holds what it counted of partitions that moved to other engines since (their records go on there, in a
 * unit of their own: a partition moves without its past, which stays where it was counted and is merged in reads).
 * An engine that owns all partitions has one unit: the state as fast and as small as one state can be.
 */
interface Unit {
  readonly anchor: number;
  readonly state: ViewState;
  readonly live: Set<number>;
  /** Partitions that moved on to other units, and the position their records here end at. */
  readonly moved: Map<number, number>;
  /** What its last checkpoint held (the state's fingerprint, positions): an unchanged unit is not written again. */
  saved: { fingerprint: string; positions: string } | undefined;
  /** The checkpoint file of the format before units it came from, deleted once it is saved as a unit. */
  legacyFile: string | undefined;
}

export interface EngineOptions {
  readonly log: Log;
  readonly store: ViewStore;
  readonly tables: Tables;
  /** The streams and their fields as of now (schemas change at run time). */
  readonly catalog: () => Catalog;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** State and offsets are saved together this often (default 5 s), and on close. */
  readonly checkpointIntervalMs?: number;
  /**
   * Once caught up, the engine waits for new records with the log's `tail` and wakes as they are appended; while
   * none arrive it still moves time forward (closing windows, marking partitions idle) this often (default 100 ms).
   */
  readonly idleTickMs?: number;
  /**
   * Unless it is behind (its last read stopped at its limits), the engine reads at most this often (default 20 ms): woken
   * by new records sooner after its last read of some, it waits out the rest, so a steady stream is read in batches
   * instead of a small read per append (each read and apply step has a fixed cost, which reading every few
   * milliseconds paid in throughput and query latency). After a quiet spell it reads at once.
   */
  readonly batchIntervalMs?: number;
  /** Records read per partition per step (default 2,000). */
  readonly batchRecords?: number;
  /**
   * The partitions this engine consumes (default: all). A view's state is kept in units (see `Unit`), so an engine
   * takes over any partition from the checkpoints, whatever owned it before. Several engines over disjoint partitions
   * each hold partial aggregates of every view; `partials` and the `foreign` argument of `rows`/`snapshot` merge them
   * at read time, so a key whose events are spread over partitions is aggregated in parallel.
   */
  readonly ownedPartitions?: readonly number[];
}

/** A group's partial aggregate as it travels between engines: [keys, windowStart, windowEnd, closed, version, states]. */
export type PartialGroup = [Value[], number | null, number | null, boolean, number, unknown[]];

/** What `GET /v1/views/:name` returns per row. */
export type ViewRow = Record<string, Value>;

export interface RowQuery {
  /** Equality filters on key columns (values compared as strings). */
  readonly keys?: Readonly<Record<string, string>>;
  /** Windows starting at or after `fromMs` and before `toMs`. */
  readonly fromMs?: number;
  readonly toMs?: number;
  /** Only the most recent window of each key. */
  readonly latest?: boolean;
  /** An output column, `-` prefixed for descending. */
  readonly order?: string;
  readonly limit?: number;
  /** Only rows changed after this version (live updates). */
  readonly sinceVersion?: number;
}

export interface ViewInfo {
  readonly name: string;
  readonly sql: string;
  readonly source: string;
  readonly window: ViewPlan['window'];
  readonly time: ViewPlan['time'];
  readonly columns: readonly string[];
  readonly rows: number;
  readonly memoryBytes: number;
  /** Records of the log not yet applied. */
  readonly lag: number;
  /** Share of the records from the view's start to the log end already applied (1 = caught up). */
  readonly progress: number;
  readonly watermark: number | null;
  readonly lateEvents: number;
  readonly lastCheckpointMs: number | null;
  /** How long the last checkpoint of the view took (ms). */
  readonly lastCheckpointDurationMs: number | null;
  /** Records applied since the view started (or was restored), for an events/s rate. */
  readonly appliedRecords: number;
  /** The view's memory budget (option memory_budget) and how many closed rows it evicted. */
  readonly memoryBudgetBytes: number;
  readonly evictedRows: number;
  /** Next offset to apply, per partition. */
  readonly offsets: readonly number[];
}

interface Runtime {
  plan: ViewPlan;
  units: Unit[];
  /** Per partition, the unit that applies it (undefined for partitions of other engines). */
  unitOf: (Unit | undefined)[];
  /** The change counter the units' states share. */
  versions: VersionCounter;
  /** Next offset to apply, per partition. */
  offsets: number[];
  /** Where the view started, per partition (for progress). */
  startOffsets: number[];
  /** Records applied since the view started or was restored. */
  applied: number;
  lastCheckpointMs: number | null;
  lastCheckpointDurationMs: number | null;
  /** The positions last recorded in the log (`commitOffsets`), so unchanged ones are not written again. */
  committed: string | undefined;
  /**
   * When the view's floor (see `#floor`) rose, and the version it took then, ascending (several units): the version
   * of a row that became final then.
   */
  floorMarks: [floor: number, version: number][];
  /** Closed windows' rows merged over the units, by window start (see `#closedMerged`). */
  closedCache: Map<number, { tables: GroupTable[]; changes: number[]; groups: Group[] }>;
  /** State size and row count as of the last checkpoint (computing them walks every row). */
  memoryBytes: number | undefined;
  rowCount: number | undefined;
  evictedRows: number;
  keyBuffer: Value[];
  /** Events the view could not evaluate (skipped). */
  evalErrors: number;
}

/**
 * Runs the streaming views over the log. Each view has its own offsets, saved atomically with the state that counted
 * them (a unit's checkpoint); after a crash the view restores its units and replays from their offsets, so every
 * event counts exactly once. Views at the same position share one read and one decode of each record.
 */
export class Engine {
  readonly #o: EngineOptions;
  readonly #clock: Clock;
  /** received_at -> visible in the views, for events that arrived while this engine ran (not history it replays). */
  readonly #freshness = new BucketHistogram(FRESHNESS_BUCKETS_S);
  #liveSinceMs = Infinity;
  readonly #logger: Logger;
  readonly #views = new Map<string, Runtime>();
  readonly #state = new LifecycleState('engine');
  #timer: NodeJS.Timeout | undefined;
  #checkpointTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;

  #owned: ReadonlySet<number> | undefined;
  /** Whether the last step stopped short of what the log held when it began (then the next one starts at once). */
  #behind = false;

  constructor(options: EngineOptions) {
    this.#o = options;
    this.#owned = options.ownedPartitions === undefined ? undefined : new Set(options.ownedPartitions);
    this.#clock = options.clock ?? new SystemClock();
    this.#logger = options.logger ?? silentLogger;
  }

  /** Loads the persisted views and their checkpoints; with `run`, starts consuming the log. */
  async start(run = true): Promise<void> {
    this.#state.assertOpen();
    this.#liveSinceMs = this.#clock.now();
    for (const { name, sql } of await this.#o.store.list()) {
      try {
        const plan = planView(sql, this.#o.catalog(), name);
        this.#views.set(name, await this.#restore(plan));
      } catch (err) {
        this.#logger.error({ err, view: name }, `view ${name} cannot be planned any more and is not running`);
      }
    }
    if (run) {
      this.#running = this.#loop();
      const every = this.#o.checkpointIntervalMs ?? 5000;
      this.#checkpointTimer = setInterval(() => void this.checkpoint().catch((err: unknown) => this.#logger.error({ err }, 'checkpoint failed')), every);
      this.#checkpointTimer.unref();
    }
  }

  /** The partitions this engine consumes, ascending. */
  #ownedList(): number[] {
    return Array.from({ length: this.#o.log.partitionCount }, (_, p) => p).filter((p) => this.#owns(p));
  }

  /**
   * A view restored from the units of its checkpoints: this engine takes the units anchored at partitions it owns
   * (with all they counted), goes on with each owned partition from the position recorded where it was last applied,
   * and starts a unit for owned partitions no unit of its own applies (one, over all of them).
   */
  async #restore(plan: ViewPlan): Promise<Runtime> {
    const n = this.#o.log.partitionCount;
    const found = await this.#found(plan);
    // Read after the (slow) load: the positions are checked against the log's end as of now.
    const stats = this.#o.log.stats().partitions;
    // Where each partition goes on: the highest position any unit recorded for it, live or moved on (a unit that
    // took a partition over went on from the position of the one before, so each record is in exactly one unit). It
    // is live in a unit that recorded it live there (its own anchor's first, then the lowest anchor); if none did
    // (the unit it moved to was never saved), a new one goes on from there.
    const position = new Map<number, number>();
    for (const u of found) for (const m of [u.live, u.moved]) for (const [p, at] of m) position.set(p, Math.max(position.get(p) ?? -Infinity, at));
    const winner = new Map<number, FoundUnit>();
    for (const u of found) {
      for (const [p, at] of u.live) {
        if (at !== position.get(p)) continue;
        const w = winner.get(p);
        if (w === undefined || (w.anchor !== p && (u.anchor === p || u.anchor < w.anchor))) winner.set(p, u);
      }
    }
    const r = this.#blank(plan);
    const now = this.#clock.now();
    for (const f of found) {
      if (!this.#owns(f.anchor)) continue;
      const unit: Unit = { anchor: f.anchor, state: ViewState.restore(plan, n, f.state, now, r.versions), live: new Set(), moved: new Map(f.moved), saved: undefined, legacyFile: f.legacyFile };
      let asSaved = f.legacyFile === undefined;
      for (const [p, at] of f.live) {
        if (this.#owns(p) && winner.get(p) === f) unit.live.add(p);
        else {
          // Applied elsewhere now: what this unit counted of it stays, its time no longer holds the watermark.
          unit.state.retire(p);
          unit.moved.set(p, at);
          asSaved = false;
        }
      }
      r.units.push(unit);
      if (asSaved) unit.saved = { fingerprint: unit.state.fingerprint, positions: JSON.stringify([[...f.live].sort((a, b) => a[0] - b[0]), [...unit.moved]]) };
    }
    const orphans: number[] = [];
    for (const p of this.#ownedList()) {
      const w = winner.get(p);
      let at = position.get(p) ?? ((plan.options.start === 'latest' ? stats[p].nextOffset : stats[p].firstOffset) as number);
      // On a log others append to (JetStream), an end this process has not caught up with is no lost tail: going on
      // from the saved position reads the records there once they are seen.
      if (at > stats[p].nextOffset && this.#o.log.endsSeenLocally !== true) {
        // Past the log's end: records the view counted are gone from the log (a tail lost to a power loss under fsync
        // interval/never, files removed). Going on from there would skip the records written next at those offsets:
        // the view goes on from the end (what it counted stays counted) and says so.
        const err = new HalflifeError('LOG_POSITION_PAST_END', { consumer: `view ${plan.name}`, partition: p, position: at, end: stats[p].nextOffset });
        this.#logger.error({ err, code: err.code, view: plan.name, partition: p }, `${err.message}; view ${plan.name} goes on from the end`);
        at = stats[p].nextOffset;
      }
      r.offsets[p] = at;
      r.startOffsets[p] = Math.min(at, w?.start.get(p) ?? found.find((u) => u.start.has(p))?.start.get(p) ?? at);
      const unit = r.units.find((u) => u.live.has(p)) ?? r.units.find((u) => u.anchor === p);
      if (unit === undefined) {
        orphans.push(p);
        continue;
      }
      if (!unit.live.has(p)) {
        unit.live.add(p);
        unit.moved.delete(p);
        unit.saved = undefined;
      }
      r.unitOf[p] = unit;
    }
    if (orphans.length > 0) this.#addUnit(r, orphans);
    return r;
  }

  /** A new, empty unit over `partitions` (anchored at the first). */
  #addUnit(r: Runtime, partitions: readonly number[]): void {
    const unit: Unit = { anchor: Math.min(...partitions), state: new ViewState(r.plan, this.#o.log.partitionCount, r.versions), live: new Set(partitions), moved: new Map(), saved: undefined, legacyFile: undefined };
    r.units.push(unit);
    for (const p of partitions) r.unitOf[p] = unit;
  }

  /**
   * The view's units in the store that match its SQL: one per anchor partition, and for anchors without one, the
   * checkpoints of the format before units (one per engine over the partitions it owned: a unit anchored at the
   * lowest, codec or v8.serialize).
   */
  async #found(plan: ViewPlan): Promise<FoundUnit[]> {
    const n = this.#o.log.partitionCount;
    const out: FoundUnit[] = [];
    const anchored = new Set<number>();
    for (let p = 0; p < n; p++) {
      const bytes = await this.#o.store.loadCheckpoint(plan.name, p);
      if (bytes === undefined) continue;
      anchored.add(p);
      try {
        const cp = decodeCheckpoint(bytes) as UnitCheckpoint;
        if (cp.format !== CHECKPOINT_FORMAT || cp.sql !== plan.sql || cp.anchor !== p) continue;
        const live = new Map(Object.entries(cp.live).map(([q, at]) => [Number(q), at] as const));
        const start = new Map(Object.entries(cp.start).map(([q, at]) => [Number(q), at] as const));
        const moved = new Map(Object.entries(cp.moved).map(([q, at]) => [Number(q), at] as const));
        if ([...live.keys(), ...moved.keys()].some((q) => !Number.isInteger(q) || q < 0 || q >= n)) continue;
        out.push({ anchor: p, live, start, moved, state: cp.state });
      } catch (err) {
        this.#logger.error({ err, view: plan.name, partition: p }, new HalflifeError('CHECKPOINT_CORRUPT', { name: plan.name, reason: `the unit of partition ${p}: ${(err as Error).message}` }).message);
      }
    }
    for (const { file, bytes } of (await this.#o.store.loadLegacyCheckpoints?.(plan.name)) ?? []) {
      try {
        const cp = (isEncodedCheckpoint(bytes) ? decodeCheckpoint(bytes) : deserialize(bytes)) as { format: number; sql: string; offsets: number[]; startOffsets: number[]; owned: number[] | null; state: SavedViewState };
        if (cp.format !== LEGACY_CHECKPOINT_FORMAT || cp.sql !== plan.sql || cp.offsets.length !== n) continue;
        const partitions = cp.owned === null ? Array.from({ length: n }, (_, p) => p) : [...cp.owned].sort((a, b) => a - b);
        if (partitions.length === 0 || anchored.has(partitions[0])) continue;
        out.push({ anchor: partitions[0], live: new Map(partitions.map((p) => [p, cp.offsets[p]])), start: new Map(partitions.map((p) => [p, cp.startOffsets[p]])), moved: new Map(), state: cp.state, legacyFile: file });
      } catch (err) {
        this.#logger.error({ err, view: plan.name }, new HalflifeError('CHECKPOINT_CORRUPT', { name: plan.name, reason: (err as Error).message }).message);
      }
    }
    return out;
  }

  #blank(plan: ViewPlan): Runtime {
    const n = this.#o.log.partitionCount;
    return {
      plan,
      units: [],
      unitOf: new Array<Unit | undefined>(n).fill(undefined),
      versions: { value: 0 },
      offsets: new Array<number>(n).fill(0),
      startOffsets: new Array<number>(n).fill(0),
      applied: 0,
      lastCheckpointMs: null,
      lastCheckpointDurationMs: null,
      committed: undefined,
      floorMarks: [],
      closedCache: new Map(),
      memoryBytes: undefined,
      rowCount: undefined,
      evictedRows: 0,
      keyBuffer: new Array<Value>(plan.keys.length),
      evalErrors: 0,
    };
  }

  #fresh(plan: ViewPlan): Runtime {
    const r = this.#blank(plan);
    const stats = this.#o.log.stats().partitions;
    const owned = this.#ownedList();
    for (const p of owned) r.offsets[p] = r.startOffsets[p] = (plan.options.start === 'latest' ? stats[p].nextOffset : stats[p].firstOffset) as number;
    if (owned.length > 0) this.#addUnit(r, owned);
    return r;
  }

  /** Plans a view without creating it: the errors `createView` would give for the name and the SQL. */
  check(name: string, sql: string): ViewPlan {
    this.#state.assertOpen();
    if (!VIEW_NAME_RE.test(name)) throw new HalflifeError('INVALID_VIEW_NAME', { name: JSON.stringify(name) });
    const plan = planView(sql, this.#o.catalog(), name);
    if (plan.name !== name) throw new HalflifeError('INVALID_REQUEST', { reason: `the SQL creates view ${plan.name} but the URL names ${name}` });
    return plan;
  }

  /** Plans and starts a view (backfilling from the log start unless `start = 'latest'`). */
  async createView(name: string, sql: string, replace = false): Promise<ViewInfo> {
    const plan = this.check(name, sql);
    if (this.#views.has(name) && !replace && !/^\s*create\s+or\s+replace/i.test(sql)) throw new HalflifeError('VIEW_EXISTS', { name });
    const r = this.#fresh(plan);
    // The fields decoded per type change with the views: forgotten in the same turn the view joins, so no step applies
    // it with the old list. A checkpoint of the view it replaces stops before its next write (see `#saveView`).
    this.#views.set(name, r);
    this.#wantedByType.clear();
    this.#keyNeeded = undefined;
    // After any checkpoint under way (its last write must not land after the remove): the old files go, and where each
    // partition starts is kept at once (a view that starts at the log's end must not, after a crash before its first
    // checkpoint, start again at a later end and miss what came in between).
    await this.#exclusive(async () => {
      await this.#o.store.remove(name, this.#ownedList());
      await this.#o.store.saveDefinition(name, sql);
      await this.#saveView(name, r);
    });
    this.#wake?.();
    this.#logger.info({ view: name, source: plan.source }, 'view created');
    return this.info(name);
  }

  async dropView(name: string): Promise<void> {
    this.#state.assertOpen();
    if (!this.#views.delete(name)) throw new HalflifeError('VIEW_NOT_FOUND', { name });
    this.#wantedByType.clear();
    this.#keyNeeded = undefined;
    // After any checkpoint under way, whose last write would otherwise land after the remove.
    await this.#exclusive(() => this.#o.store.remove(name, this.#ownedList()));
    this.#logger.info({ view: name }, 'view dropped');
  }

  #runtime(name: string): Runtime {
    const r = this.#views.get(name);
    if (r === undefined) throw new HalflifeError('VIEW_NOT_FOUND', { name });
    return r;
  }

  names(): string[] {
    return [...this.#views.keys()].sort();
  }

  plan(name: string): ViewPlan {
    return this.#runtime(name).plan;
  }

  /** Every view's lag (records not yet applied), without the rest of `info` (its memory walk): polled often. */
  lags(): { name: string; lag: number }[] {
    const log = this.#o.log;
    return [...this.#views].map(([name, r]) => {
      let lag = 0;
      for (let p = 0; p < r.offsets.length; p++) if (this.#owns(p)) lag += log.lag(p, r.offsets[p]);
      return { name, lag };
    });
  }

  info(name: string): ViewInfo {
    const r = this.#runtime(name);
    const log = this.#o.log;
    let lag = 0;
    let total = 0;
    for (let p = 0; p < r.offsets.length; p++) {
      if (!this.#owns(p)) continue;
      lag += log.lag(p, r.offsets[p]);
      total += log.lag(p, r.startOffsets[p]);
    }
    const states = this.#states(r);
    // Counting rows derives open HOP windows: once. Several units: above 100k rows, the count of the last checkpoint.
    const partial = states.reduce((n, s) => n + s.groupCount, 0);
    const rows = states.length === 1 ? partial : partial > 100_000 ? (r.rowCount ??= this.#rowCount(r)) : this.#rowCount(r);
    // The slowest active partition's watermark (idle ones follow it); all idle: the newest.
    const marks = states.filter((s) => Number.isFinite(s.watermark));
    const active = marks.filter((s) => !s.idle);
    const watermark = active.length > 0 ? Math.min(...active.map((s) => s.watermark)) : marks.length > 0 ? Math.max(...marks.map((s) => s.watermark)) : -Infinity;
    return {
      name,
      sql: r.plan.sql,
      source: r.plan.source,
      window: r.plan.window,
      time: r.plan.time,
      columns: ['window_start', 'window_end', ...r.plan.outputs.map((o) => o.name)],
      rows,
      memoryBytes: rows > 100_000 ? (r.memoryBytes ??= this.#memoryBytes(r)) : this.#memoryBytes(r),
      lag,
      progress: total === 0 ? 1 : (total - lag) / total,
      watermark: Number.isFinite(watermark) ? watermark : null,
      lateEvents: states.reduce((n, s) => n + s.lateCount, 0),
      lastCheckpointMs: r.lastCheckpointMs,
      lastCheckpointDurationMs: r.lastCheckpointDurationMs,
      appliedRecords: r.applied,
      memoryBudgetBytes: r.plan.options.memoryBudgetBytes,
      evictedRows: r.evictedRows,
      offsets: [...r.offsets],
    };
  }

  late(name: string): { count: number; recent: readonly LateEvent[] } {
    const states = this.#states(this.#runtime(name));
    if (states.length === 1) return { count: states[0].lateCount, recent: states[0].late };
    const recent = states.flatMap((s) => s.late).sort((a, b) => a.received_at - b.received_at).slice(-LATE_RECENT);
    return { count: states.reduce((n, s) => n + s.lateCount, 0), recent };
  }

  version(name: string): number {
    return this.#runtime(name).versions.value;
  }

  #memoryBytes(r: Runtime): number {
    let b = 0;
    for (const u of r.units) b += u.state.memoryBytes();
    return b;
  }

  /** Rows of the view (a group held by several partitions' states counts once). */
  #rowCount(r: Runtime): number {
    const states = this.#states(r);
    if (states.length === 1) return states[0].groupCount;
    if (r.plan.window.kind === 'session') return this.#gather(r, {}).length;
    const seen = new Map<number | null, Set<unknown>>();
    for (const s of states) {
      for (const g of s.groups()) {
        let ids = seen.get(g.windowStart);
        if (ids === undefined) seen.set(g.windowStart, (ids = new Set()));
        ids.add(groupId(g.keys));
      }
    }
    let n = 0;
    for (const ids of seen.values()) n += ids.size;
    return n;
  }

  /** Groups of a view matching a query's key filters, time range and version (not yet `latest`). */
  #select(plan: ViewPlan, state: ViewState, q: RowQuery, skip?: ReadonlySet<number>): Group[] {
    const keyIndex = new Map(plan.keys.map((k, i) => [k.name, i]));
    const filters = Object.entries(q.keys ?? {}).map(([col, v]) => {
      const i = keyIndex.get(col);
      if (i === undefined) throw new HalflifeError('INVALID_QUERY', { name: col, reason: `not a key column of ${plan.name} (keys: ${[...keyIndex.keys()].join(', ') || 'none'})` });
      return [i, v] as const;
    });
    // A filter on the only key column is a lookup; anything else scans.
    let source: Iterable<Group>;
    if (plan.keys.length === 1 && filters.length === 1) {
      const v = filters[0][1];
      const candidates: unknown[] = [v];
      if (v.trim() !== '' && !Number.isNaN(Number(v))) candidates.push(Number(v));
      if (v === 'true' || v === 'false') candidates.push(v === 'true');
      if (v === 'null') candidates.push(null);
      source = state.groupsOf(candidates);
    } else source = state.groups(skip);
    return [...source].filter((g) => {
      if (q.sinceVersion !== undefined && g.version <= q.sinceVersion) return false;
      if (q.fromMs !== undefined && (g.windowStart ?? 0) < q.fromMs) return false;
      if (q.toMs !== undefined && (g.windowStart ?? 0) >= q.toMs) return false;
      return filters.every(([i, v]) => toText(g.keys[i]) === v);
    });
  }

  /** The states of the view's units. */
  #states(r: Runtime): ViewState[] {
    return r.units.map((u) => u.state);
  }

  /** How far every unit has passed: a window ending at or before it is final here. */
  #floor(r: Runtime): number {
    let min = Infinity;
    for (const u of r.units) if (u.state.floor < min) min = u.state.floor;
    return min;
  }

  /**
   * The view's groups matching `q`, its partitions' states merged with each other and with partial groups from
   * other engines (`foreign`, see `partials`). A group held by one state only is returned as it is; one held by
   * several is merged into fresh accumulators (the live state is untouched). A row is final only when every state
   * that holds it closed it and every owned partition's state has passed its end (one that has not could still add
   * to it). With `sinceVersion`, the rows of which any part changed since.
   */
  #gather(r: Runtime, q: RowQuery, foreign: readonly (readonly PartialGroup[])[] = []): Group[] {
    const { plan } = r;
    const states = this.#states(r);
    if (states.length === 1 && foreign.every((f) => f.length === 0)) return this.#select(plan, states[0], q);
    const floor = this.#floor(r);
    // A scan's closed windows come merged from the cache; the rest is merged per read.
    const scan = Object.keys(q.keys ?? {}).length === 0 && foreign.every((f) => f.length === 0) && plan.window.kind !== 'session';
    const closed = scan ? this.#closedMerged(r, q, floor) : undefined;
    const lists: Group[][] = states.map((s) => this.#select(plan, s, { ...q, sinceVersion: undefined }, closed?.skip));
    for (const list of foreign) {
      lists.push(list.map(([keys, start, end, closed, version, saved]) => ({ keys, windowStart: start, windowEnd: end, closed, version, accs: plan.aggs.map((spec, i) => restoreAccumulator(spec, saved[i])) })));
    }
    let out = plan.window.kind === 'session' ? this.#mergeSessions(r, lists, floor) : this.#mergeWindows(r, lists, floor);
    if (closed !== undefined && closed.groups.length > 0) out = out.concat(closed.groups);
    return q.sinceVersion === undefined ? out : out.filter((g) => g.version > q.sinceVersion!);
  }

  /**
   * The rows of the windows closed in every partition's state that has them (and passed by all), merged once and
   * kept until a part of them changes (a correction) or goes (retention, the memory budget): reads of a view spread
   * over partitions then merge only its open windows. `skip` names the windows answered so (or outside `q`'s time range).
   */
  #closedMerged(r: Runtime, q: RowQuery, floor: number): { groups: Group[]; skip: Set<number> } {
    const byStart = new Map<number, GroupTable[]>();
    for (const s of this.#states(r)) {
      for (const t of s.closedWindows()) {
        const same = byStart.get(t.start!);
        if (same === undefined) byStart.set(t.start!, [t]);
        else same.push(t);
      }
    }
    for (const start of r.closedCache.keys()) if (!byStart.has(start)) r.closedCache.delete(start);
    const groups: Group[] = [];
    const skip = new Set<number>();
    for (const [start, tables] of byStart) {
      if (tables[0].end! > floor || r.units.some((u) => u.state.isOpen(start))) continue;
      skip.add(start);
      if ((q.fromMs !== undefined && start < q.fromMs) || (q.toMs !== undefined && start >= q.toMs)) continue;
      let hit = r.closedCache.get(start);
      if (hit === undefined || hit.tables.length !== tables.length || hit.tables.some((t, i) => t !== tables[i] || hit!.changes[i] !== t.changes)) {
        hit = { tables, changes: tables.map((t) => t.changes), groups: this.#mergeWindows(r, tables.map((t) => [...t.values()]), floor) };
        r.closedCache.set(start, hit);
      }
      for (const g of hit.groups) groups.push(g);
    }
    return { groups, skip };
  }

  #mergeWindows(r: Runtime, lists: readonly Group[][], floor: number): Group[] {
    const byWindow = new Map<number | null, Map<unknown, Group[]>>();
    for (const list of lists) {
      for (const g of list) {
        let m = byWindow.get(g.windowStart);
        if (m === undefined) byWindow.set(g.windowStart, (m = new Map()));
        const id = groupId(g.keys);
        const same = m.get(id);
        if (same === undefined) m.set(id, [g]);
        else same.push(g);
      }
    }
    const out: Group[] = [];
    for (const m of byWindow.values()) for (const same of m.values()) out.push(this.#fold(r, same, floor));
    return out;
  }

  /** One row from its parts (see `#gather`). */
  #fold(r: Runtime, parts: readonly Group[], floor: number): Group {
    if (parts.length === 1) {
      const g = parts[0];
      const closed = g.closed && g.windowEnd !== null && g.windowEnd <= floor;
      if (closed !== g.closed) return { ...g, closed };
      return closed ? { ...g, version: Math.max(g.version, this.#finalVersion(r, g.windowEnd!)) } : g;
    }
    const accs = r.plan.aggs.map(createAccumulator);
    let closed = true;
    let version = 0;
    let start = parts[0].windowStart;
    let end = parts[0].windowEnd;
    for (const g of parts) {
      for (let i = 0; i < accs.length; i++) accs[i].merge(g.accs[i]);
      closed &&= g.closed;
      if (g.version > version) version = g.version;
      if (g.windowStart !== null && start !== null && g.windowStart < start) start = g.windowStart;
      if (g.windowEnd !== null && end !== null && g.windowEnd > end) end = g.windowEnd;
    }
    closed &&= end !== null && end <= floor;
    return { keys: parts[0].keys, windowStart: start, windowEnd: end, closed, version: closed ? Math.max(version, this.#finalVersion(r, end!)) : version, accs };
  }

  /**
   * The version at which the view's floor passed `end` (a row ending there became final then, though none of its
   * parts changed): read with `sinceVersion`, the row is new once more, now final. Passed since the last step: the
   * current version.
   */
  #finalVersion(r: Runtime, end: number): number {
    const marks = r.floorMarks;
    let lo = 0;
    let hi = marks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (marks[mid][0] >= end) hi = mid;
      else lo = mid + 1;
    }
    return lo < marks.length ? marks[lo][1] : r.versions.value;
  }

  /** Sessions of one key held by different states or engines merge where they overlap, as they would in one state. */
  #mergeSessions(r: Runtime, lists: readonly Group[][], floor: number): Group[] {
    const byKey = new Map<unknown, Group[]>();
    for (const list of lists) {
      for (const g of list) {
        const id = groupId(g.keys);
        const same = byKey.get(id);
        if (same === undefined) byKey.set(id, [g]);
        else same.push(g);
      }
    }
    const out: Group[] = [];
    for (const list of byKey.values()) {
      list.sort((a, b) => a.windowStart! - b.windowStart!);
      let run: Group[] = [];
      let runEnd = -Infinity;
      for (const g of list) {
        if (run.length > 0 && g.windowStart! >= runEnd) {
          out.push(this.#fold(r, run, floor));
          run = [];
          runEnd = -Infinity;
        }
        run.push(g);
        runEnd = Math.max(runEnd, g.windowEnd!);
      }
      if (run.length > 0) out.push(this.#fold(r, run, floor));
    }
    return out;
  }

  /**
   * Rows of a view. `foreign` are partial groups of the same view from engines owning other partitions
   * (see `partials`); they are merged in before the outputs are computed.
   */
  rows(name: string, q: RowQuery = {}, foreign: readonly (readonly PartialGroup[])[] = []): ViewRow[] {
    const r = this.#runtime(name);
    const plan = r.plan;
    let groups = this.#gather(r, q, foreign);
    if (q.latest) {
      const newest = new Map<string, Group>();
      for (const g of groups) {
        const k = JSON.stringify(g.keys);
        const cur = newest.get(k);
        if (cur === undefined || (g.windowStart ?? 0) > (cur.windowStart ?? 0)) newest.set(k, g);
      }
      groups = [...newest.values()];
    }
    const out: ViewRow[] = [];
    for (const g of groups) {
      const aggs = g.accs.map((a) => a.result());
      if (plan.having !== undefined && plan.having(g.keys, aggs, g.windowStart, g.windowEnd) !== true) continue;
      const row: ViewRow = { window_start: g.windowStart, window_end: g.windowEnd };
      for (const o of plan.outputs) row[o.name] = o.eval(g.keys, aggs, g.windowStart, g.windowEnd);
      if (q.sinceVersion !== undefined) row._final = g.closed;
      out.push(row);
    }
    const order = q.order ?? '-window_start';
    const desc = order.startsWith('-');
    const col = desc ? order.slice(1) : order;
    if (!['window_start', 'window_end', ...plan.outputs.map((o) => o.name)].includes(col)) {
      throw new HalflifeError('INVALID_QUERY', { name: 'order', reason: `${col} is not a column of ${name}` });
    }
    out.sort((a, b) => {
      const c = compareForOrder(a[col] as Value, b[col] as Value);
      return desc ? -c : c;
    });
    return out.slice(0, q.limit ?? 1000);
  }

  /** The rows of a view that pass its HAVING, with the partial states behind each aggregate column. */
  snapshot(name: string, foreign: readonly (readonly PartialGroup[])[] = []): { values: ViewRow; states: Record<string, Accumulator> }[] {
    const r = this.#runtime(name);
    const plan = r.plan;
    const out: { values: ViewRow; states: Record<string, Accumulator> }[] = [];
    for (const g of this.#gather(r, {}, foreign)) {
      const aggs = g.accs.map((a) => a.result());
      if (plan.having !== undefined && plan.having(g.keys, aggs, g.windowStart, g.windowEnd) !== true) continue;
      const values: ViewRow = { window_start: g.windowStart, window_end: g.windowEnd };
      const states: Record<string, Accumulator> = {};
      for (const o of plan.outputs) {
        values[o.name] = o.eval(g.keys, aggs, g.windowStart, g.windowEnd);
        if (o.agg !== undefined) states[o.name] = g.accs[o.agg];
      }
      out.push({ values, states });
    }
    return out;
  }

  /** How long events took from arrival to being visible in the views (seconds), since this engine started. */
  freshness(): HistogramSnapshot {
    return this.#freshness.snapshot();
  }

  #observeFreshness(batch: RecordBatch, from: number, to: number): void {
    const visible = this.#clock.now();
    const since = this.#liveSinceMs;
    const ts = batch.timestamps;
    for (let r = from; r < to; r++) if (ts[r] >= since) this.#freshness.observe(Math.max(0, visible - ts[r]) / 1000);
  }

  /** Applies every record available now; returns how many records were read. */
  step(): Promise<number> {
    const run = this.#turn.then(() => this.#step());
    this.#turn = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** Steps run one at a time, and a change of the partitions owned waits for the one under way (see `own`). */
  #turn: Promise<void> = Promise.resolve();

  /**
   * Changes the partitions this engine consumes while it runs (undefined: all). `clean`: it still holds the ones it
   * gives up (a handover): every view is checkpointed first, so their next owner goes on where this one stopped. Not
   * clean (they were taken from it: a lease lost), nothing is written, since what it applied since its last checkpoint
   * may be applied by the new owner too. Either way each view is then restored from its checkpoints for the new
   * partitions (see `#restore`): its units of partitions it keeps carry on, those of partitions it gave up are left
   * to their next owner, and partitions it takes over go on from where their last owner's checkpoint left them.
   */
  own(partitions: readonly number[] | undefined, clean: boolean): Promise<void> {
    this.#state.assertOpen();
    return this.#exclusive(async () => {
      const turn = this.#turn.then(async () => {
        if (clean) for (const [name, v] of this.#views) await this.#saveView(name, v);
        this.#owned = partitions === undefined ? undefined : new Set(partitions);
        for (const [name, v] of [...this.#views]) {
          const r = await this.#restore(v.plan);
          if (this.#views.get(name) === v) this.#views.set(name, r);
        }
      });
      this.#turn = turn.catch(() => {});
      await turn;
      this.#wake?.();
      this.#logger.info({ partitions: partitions ?? 'all', clean }, 'engine partitions changed');
    });
  }

  /** The partitions this engine consumes, ascending. */
  owned(): number[] {
    return this.#ownedList();
  }

  async #step(): Promise<number> {
    const views = [...this.#views.values()];
    if (views.length === 0) return 0;
    const log = this.#o.log;
    const max = this.#o.batchRecords ?? 2000;
    const stats = log.stats().partitions;
    const now = this.#clock.now();
    let read = 0;
    for (const v of views) for (let p = 0; p < stats.length; p++) v.unitOf[p]?.state.setPending(p, v.offsets[p] < stats[p].nextOffset);
    // Read every partition's next batch at once (the reads overlap in the I/O threads), then apply them.
    const reads = stats.map((s, p) => {
      if (!this.#owns(p)) return undefined;
      let from = Infinity;
      for (const v of views) if (v.offsets[p] < from) from = v.offsets[p];
      return from >= s.nextOffset ? undefined : log.readBatch(p, from, { maxRecords: max, maxBytes: 8 * 1024 * 1024 });
    });
    // One failed read ends the step; the others, still under way, must not fail unhandled (that stops the thread).
    for (const r of reads) r?.catch(() => {});
    for (let p = 0; p < reads.length; p++) {
      const pending = reads[p];
      if (pending === undefined) continue;
      const batch = await pending;
      read += batch.count;
      // Nothing there (removed by retention, a repaired gap, a purged stream): the log says where records go on.
      if (batch.count === 0) for (const v of views) if (v.offsets[p] < batch.next) v.offsets[p] = batch.next;
      // Apply in slices of a few milliseconds and let queries in between: a deep backlog would hold them.
      for (let i = 0; i < batch.count; i += APPLY_SLICE) {
        const end = Math.min(batch.count, i + APPLY_SLICE);
        this.#apply(batch, p, views, now, i, end);
        this.#observeFreshness(batch, i, end);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const caughtUp = read === 0;
    let behind = false;
    for (const v of views) {
      const atEnd = this.#atEnd(v, stats);
      if (!atEnd) behind = true;
      if (v.units.length === 1) {
        v.units[0].state.advance(now, caughtUp || atEnd);
        continue;
      }
      // Several units: a window is dropped for the retention once every unit passed it (else a merged row would be
      // read with some of its parts gone).
      let cap = Infinity;
      for (const u of v.units) cap = Math.min(cap, u.state.watermark);
      for (const u of v.units) {
        u.state.retentionCap = cap;
        u.state.advance(now, caughtUp || atEnd);
      }
      // Units that apply nothing (all their partitions moved on) or hold nothing back (only idle partitions, or none
      // with records yet and none to come) follow the others (see `raiseWatermark`); when none is active, the most
      // advanced, as one state over all partitions would.
      let floor = Infinity;
      let newest = -Infinity;
      for (const u of v.units) {
        const f = u.state.floor;
        if (u.live.size > 0 && f !== Infinity) floor = Math.min(floor, f);
        else if (Number.isFinite(u.state.watermark)) newest = Math.max(newest, u.state.watermark);
      }
      const to = floor === Infinity ? newest : floor;
      for (const u of v.units) if (u.live.size === 0 || u.state.floor === Infinity) u.state.raiseWatermark(to);
      // A row becomes final when the last unit passes its end, which changes none of its parts: the view's version
      // moves on, and rows made final by it read as changed at that version (see `#finalVersion`).
      const passed = this.#floor(v);
      const marks = v.floorMarks;
      if (passed > (marks.length === 0 ? -Infinity : marks[marks.length - 1][0])) {
        marks.push([passed, ++v.versions.value]);
        if (marks.length > MAX_FLOOR_MARKS) marks.splice(0, marks.length - MAX_FLOOR_MARKS);
      }
    }
    // A read cut short by its limits (records or bytes) left records that were there when the step began.
    this.#behind = behind && read > 0;
    return read;
  }

  #atEnd(v: Runtime, stats: ReturnType<Log['stats']>['partitions']): boolean {
    return stats.every((s, p) => !this.#owns(p) || v.offsets[p] >= s.nextOffset);
  }

  #owns(partition: number): boolean {
    return this.#owned === undefined || this.#owned.has(partition);
  }

  /** This engine's partial groups of a view that match `q` (keys, time range, version), for merging elsewhere. */
  partials(name: string, q: RowQuery = {}): PartialGroup[] {
    return this.#gather(this.#runtime(name), q).map((g) => [g.keys, g.windowStart, g.windowEnd, g.closed, g.version, g.accs.map((a) => a.save())]);
  }

  #apply(batch: RecordBatch, p: number, views: Runtime[], now: number, from: number, to: number): void {
    const buf = batch.buffer;
    for (let r = from; r < to; r++) {
      const offset = batch.offsets[r];
      const after = positionAfter(batch, r);
      const at = batch.valueStarts[r];
      let row: EventRow | null | undefined;
      for (const v of views) {
        if (v.offsets[p] > offset) continue;
        const state = v.unitOf[p]!.state;
        v.offsets[p] = after;
        v.applied++;
        const plan = v.plan;
        if (plan.source !== ALL_STREAMS && !eventRecordIs(buf, plan.source, at)) continue;
        if (row === undefined) {
          try {
            row = this.#decode(batch, r, p);
          } catch (err) {
            row = null;
            this.#logger.error({ err, partition: p, offset }, 'a log record could not be decoded; views skip it');
          }
        }
        if (row === null) continue;
        try {
          this.#applyTo(v, state, row, now);
        } catch (err) {
          // One strange event must not stall the view for ever: count it, log the first, go on.
          if (v.evalErrors++ === 0) this.#logger.error({ err, view: plan.name, partition: p, offset }, `view ${plan.name} could not evaluate an event; skipping it`);
        }
      }
    }
  }

  /**
   * Joins, filters, computes the keys and applies one decoded event to one view. A join whose column matches
   * several table rows yields one row per match, as in SQL (the event counts once per match); an inner join with
   * no match drops the event, a left join keeps it with the table's columns NULL.
   */
  #applyTo(v: Runtime, state: ViewState, row: EventRow, now: number): void {
    const plan = v.plan;
    if (plan.joins.length === 0) {
      row.joined = NO_JOINS;
      this.#applyJoined(v, state, row, now);
      return;
    }
    row.joined = new Array(plan.joins.length);
    this.#join(v, state, row, 0, now);
  }

  #join(v: Runtime, state: ViewState, row: EventRow, i: number, now: number): void {
    const plan = v.plan;
    if (i === plan.joins.length) {
      this.#applyJoined(v, state, row, now);
      return;
    }
    const j = plan.joins[i];
    const matches = this.#o.tables.lookup(j.table, j.column, j.probe(row));
    if (matches.length === 0) {
      if (j.kind === 'inner') return;
      row.joined[i] = undefined;
      this.#join(v, state, row, i + 1, now);
      return;
    }
    for (const m of matches) {
      row.joined[i] = m;
      this.#join(v, state, row, i + 1, now);
    }
  }

  #applyJoined(v: Runtime, state: ViewState, row: EventRow, now: number): void {
    const plan = v.plan;
    if (plan.filter !== undefined && plan.filter(row) !== true) return;
    // One reused key array per view: the state copies it only when it creates a group.
    const keys = v.keyBuffer;
    for (let i = 0; i < keys.length; i++) keys[i] = plan.keys[i].eval(row);
    state.apply(row, keys, now);
  }

  /**
   * The data fields the views over `type` read; the engine extracts only these from an event's JSON (and stops
   * scanning once it has them all).
   */
  #wanted(type: string): string[] {
    let fields = this.#wantedByType.get(type);
    if (fields === undefined) {
      const set = new Set<string>();
      for (const v of this.#views.values()) {
        if (v.plan.source === type || v.plan.source === ALL_STREAMS) for (const f of v.plan.dataFields) set.add(f);
      }
      fields = [...set];
      this.#wantedByType.set(type, fields);
    }
    return fields;
  }

  #decode(batch: RecordBatch, r: number, p: number): EventRow {
    const buf = batch.buffer;
    const start = batch.valueStarts[r];
    const end = batch.valueEnds[r];
    const offset = batch.offsets[r];
    const h = readEventHeader(buf, start, this.#header);
    // Types are few: reuse the last type string when the header names it again.
    let type = this.#lastType;
    if (type === undefined || !eventRecordIs(buf, type, start)) type = this.#lastType = eventRecordType(buf, start);
    const data: Record<string, unknown> = {};
    const key = this.#usesKey() ? batchKey(batch, r) : undefined;
    if (!readEventData(buf, start, end, h.payloadOffset, this.#wanted(type), data, this.#cursor)) {
      // A version 2 record (JSON envelope), written before records carried MessagePack.
      const full = decodeEventRecord(buf.subarray(start, end));
      return { type: full.type, data: full.data, key, received_at: full.received_at, event_time: h.eventTime, partition: p, offset, replay: h.replay, joined: NO_JOINS };
    }
    return { type, data, key, received_at: h.receivedAt, event_time: h.eventTime, partition: p, offset, replay: h.replay, joined: NO_JOINS };
  }

  readonly #cursor: Cursor = { pos: 0 };
  readonly #header: EventHeader = { version: 0, receivedAt: 0, eventTime: 0, payloadOffset: 0, replay: false };
  #lastType: string | undefined;

  readonly #wantedByType = new Map<string, string[]>();
  #keyNeeded: boolean | undefined;

  /** Whether any view reads the `key` column (keys are decoded only then). */
  #usesKey(): boolean {
    this.#keyNeeded ??= [...this.#views.values()].some((v) => v.plan.usesKey);
    return this.#keyNeeded;
  }

  async #loop(): Promise<void> {
    const tick = this.#o.idleTickMs ?? 100;
    const interval = this.#o.batchIntervalMs ?? 20;
    let failures = 0;
    let readAt = -Infinity;
    let woken = false;
    while (!this.#stopping) {
      let read = 0;
      const at = performance.now();
      try {
        read = await this.step();
        failures = 0;
      } catch (err) {
        // A lasting failure (a damaged segment) is retried with backoff, not logged fifty times a second.
        if (failures++ === 0 || failures % 60 === 0) this.#logger.error({ err, failures }, 'engine step failed');
      }
      if (this.#stopping) break;
      // A wake by the log that found nothing to read (records it reports but cannot serve yet: a replica behind, a
      // purge) counts as a read: the next one waits the interval instead of spinning.
      if (read > 0 || woken) readAt = at;
      woken = false;
      if (this.#behind && failures === 0) {
        // Behind (a read stopped at its limits): go on at once, yielding so queries are served.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      if (read === 0 || failures > 0) {
        // Caught up: wait for records on any partition a view reads (or a new view, or the time to move windows on).
        const wait = failures > 0 ? Math.min(5000, 100 * 2 ** Math.min(failures, 6)) : tick;
        const stop = new AbortController();
        // One listener per partition waited on: more than ten is expected, not a leak.
        setMaxListeners(0, stop.signal);
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#timer = setTimeout(resolve, wait);
          if (failures === 0) {
            for (const [p, from] of this.#positions()) {
              void this.#o.log.tail(p, from, stop.signal).then(
                (ready) => {
                  if (!ready) return;
                  woken = true;
                  resolve();
                },
                () => {},
              );
            }
          }
        });
        stop.abort();
        clearTimeout(this.#timer);
        this.#wake = undefined;
      }
      // A steady stream is read in batches, at most every `interval`; after a quiet spell, at once.
      const rest = readAt + interval - performance.now();
      if (rest > 0 && !this.#stopping) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#timer = setTimeout(resolve, rest);
        });
        this.#wake = undefined;
      }
    }
  }

  /** The position each owned partition is next read from (the slowest view's). */
  #positions(): Map<number, number> {
    const out = new Map<number, number>();
    for (const v of this.#views.values()) {
      for (let p = 0; p < v.offsets.length; p++) {
        if (!this.#owns(p)) continue;
        const at = out.get(p);
        if (at === undefined || v.offsets[p] < at) out.set(p, v.offsets[p]);
      }
    }
    return out;
  }

  /**
   * Saves every view's state per owned partition with the partition's offset (one atomic write each; a partition
   * whose state and offset did not change since its last checkpoint is not written again) and records the offsets in
   * the log.
   */
  checkpoint(): Promise<void> {
    return this.#exclusive(async () => {
      for (const [name, v] of this.#views) await this.#saveView(name, v);
    });
  }

  /** Checkpoints run one at a time (the timer's, a new view's, the last one on close). */
  #exclusive(work: () => Promise<void>): Promise<void> {
    const next = this.#checkpointing.then(work);
    this.#checkpointing = next.catch(() => {});
    return next;
  }

  #checkpointing: Promise<void> = Promise.resolve();

  async #saveView(name: string, v: Runtime): Promise<void> {
    // Dropped or replaced since: its files are the new view's now.
    if (this.#views.get(name) !== v) return;
    const t0 = performance.now();
    const states = this.#states(v);
    // The budget is enforced here, where the whole state is walked anyway: closed windows go, oldest first. With
    // several units a window goes from all at once (a merged row is never read with some of its parts gone).
    let size = this.#memoryBytes(v);
    const budget = v.plan.options.memoryBudgetBytes;
    if (size > budget) {
      let removed = 0;
      if (states.length === 1) removed = states[0].evictClosed(size, budget * 0.9);
      else {
        const extents = states.flatMap((s) => s.closedExtents()).sort((a, b) => a.end - b.end);
        let bytes = size;
        let through = -Infinity;
        for (const c of extents) {
          if (bytes <= budget * 0.9) break;
          bytes -= c.bytes;
          through = c.end;
        }
        // Only windows every unit has passed (closed everywhere): one still open in a unit behind keeps all its parts.
        for (const s of states) removed += s.evictThrough(Math.min(through, this.#floor(v)));
      }
      v.evictedRows += removed;
      size = this.#memoryBytes(v);
      this.#logger.warn({ view: name, removed, bytes: size, budget }, size > budget ? `view ${name} is over its memory budget with open windows alone` : `view ${name} evicted ${removed} closed rows to stay within its memory budget`);
    }
    v.memoryBytes = size;
    v.rowCount = undefined;
    for (const u of v.units) {
      const live = [...u.live].sort((a, b) => a - b);
      const positions = JSON.stringify([live.map((p) => [p, v.offsets[p]]), [...u.moved]]);
      if (u.saved !== undefined && u.saved.fingerprint === u.state.fingerprint && u.saved.positions === positions) continue;
      const cp: UnitCheckpoint = {
        format: CHECKPOINT_FORMAT,
        sql: v.plan.sql,
        anchor: u.anchor,
        live: Object.fromEntries(live.map((p) => [p, v.offsets[p]])),
        start: Object.fromEntries(live.map((p) => [p, v.startOffsets[p]])),
        moved: Object.fromEntries(u.moved),
        state: u.state.save(),
      };
      const fingerprint = u.state.fingerprint;
      if (this.#views.get(name) !== v) return;
      await this.#o.store.saveCheckpoint(name, u.anchor, encodeCheckpoint(cp), live);
      u.saved = { fingerprint, positions };
      if (u.legacyFile !== undefined) {
        await this.#o.store.dropLegacyCheckpoint?.(name, u.legacyFile);
        u.legacyFile = undefined;
      }
    }
    v.lastCheckpointMs = this.#clock.now();
    v.lastCheckpointDurationMs = performance.now() - t0;
    // Only when they moved: on a cluster that does not answer, each write waits for its timeout, and checkpoints of
    // views that did not change would queue up behind them.
    const offsets = Object.fromEntries(this.#ownedList().map((p) => [p, v.offsets[p]]));
    const committed = JSON.stringify(offsets);
    if (committed === v.committed) return;
    await this.#o.log.commitOffsets(`view.${name}`, offsets);
    v.committed = committed;
  }

  /** Stops consuming and writes a final checkpoint. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#stopping = true;
      clearInterval(this.#checkpointTimer);
      clearTimeout(this.#timer);
      this.#wake?.();
      await this.#running;
      await this.checkpoint();
    });
  }
}
