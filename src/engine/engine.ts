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
import type { Tables } from './tables.js';
import type { ViewStore } from './view-store.js';
import { ViewState, type Group, type LateEvent, type SavedViewState } from './view-state.js';

const VIEW_NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;
/** The plan source of `FROM events`: every event type. */
const ALL_STREAMS = '*';
const CHECKPOINT_FORMAT = 1;
const NO_JOINS: (Record<string, unknown> | undefined)[] = [];
/** Records applied between two chances for queries to run. */
const APPLY_SLICE = 400;

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
   * The partitions this engine consumes (default: all). Several engines over disjoint partitions each keep
   * partial aggregates of every view; `partials` and the `foreign` argument of `rows`/`snapshot` merge them at read
   * time, so a key whose events are spread over partitions is aggregated in parallel.
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
  state: ViewState;
  /** Next offset to apply, per partition. */
  offsets: number[];
  /** Where the view started, per partition (for progress). */
  startOffsets: number[];
  /** Records applied since the view started or was restored. */
  applied: number;
  lastCheckpointMs: number | null;
  lastCheckpointDurationMs: number | null;
  /** State size as of the last checkpoint (computing it walks every row). */
  memoryBytes: number | undefined;
  evictedRows: number;
  keyBuffer: Value[];
  /** Events the view could not evaluate (skipped). */
  evalErrors: number;
}

/**
 * Runs the streaming views over the log. Each view has its own offsets, saved atomically with its state in one
 * checkpoint; after a crash the view restores the checkpoint and replays from its offsets, so every event counts
 * exactly once. Views at the same position share one read and one decode of each record.
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

  readonly #owned: ReadonlySet<number> | undefined;
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

  async #restore(plan: ViewPlan): Promise<Runtime> {
    const saved = await this.#o.store.loadCheckpoint(plan.name);
    const n = this.#o.log.partitionCount;
    if (saved !== undefined) {
      try {
        // Checkpoints of halflife before the codec were v8.serialize output: read once, written anew in the codec.
        const cp = (isEncodedCheckpoint(saved) ? decodeCheckpoint(saved) : deserialize(saved)) as { format: number; sql: string; offsets: number[]; startOffsets: number[]; owned: number[] | null; state: SavedViewState };
        // A checkpoint made for other partitions (the worker count changed) cannot be restored: rebuild.
        const owned = this.#owned === undefined ? null : [...this.#owned].sort((a, b) => a - b);
        if (cp.format === CHECKPOINT_FORMAT && cp.sql === plan.sql && cp.offsets.length === n && JSON.stringify(cp.owned ?? null) === JSON.stringify(owned)) {
          // A position past the log's end means records this state counted are gone from the log (a tail lost to a
          // power loss under fsync interval/never, files removed): resuming would skip the offsets written next.
          // Fail loudly and rebuild the view from what the log holds.
          const stats = this.#o.log.stats().partitions;
          const past = cp.offsets.findIndex((o, p) => this.#owns(p) && o > stats[p].nextOffset);
          if (past >= 0) {
            const err = new HalflifeError('LOG_POSITION_PAST_END', { consumer: `view ${plan.name}`, partition: past, position: cp.offsets[past], end: stats[past].nextOffset });
            this.#logger.error({ err, code: err.code, view: plan.name, partition: past }, `${err.message}; view ${plan.name} is rebuilt from the log`);
            return this.#fresh(plan);
          }
          return {
            plan,
            state: ViewState.restore(plan, n, cp.state, this.#clock.now()),
            offsets: cp.offsets,
            startOffsets: cp.startOffsets,
            applied: 0,
            lastCheckpointMs: null,
            lastCheckpointDurationMs: null,
            memoryBytes: undefined,
            evictedRows: 0,
            keyBuffer: new Array<Value>(plan.keys.length),
            evalErrors: 0,
          };
        }
      } catch (err) {
        this.#logger.error({ err, view: plan.name }, new HalflifeError('CHECKPOINT_CORRUPT', { name: plan.name, reason: (err as Error).message }).message);
      }
    }
    return this.#fresh(plan);
  }

  #fresh(plan: ViewPlan): Runtime {
    const stats = this.#o.log.stats().partitions;
    const offsets = stats.map((p) => (plan.options.start === 'latest' ? p.nextOffset : p.firstOffset) as number);
    return { plan, state: new ViewState(plan, stats.length), offsets, startOffsets: [...offsets], applied: 0, lastCheckpointMs: null, lastCheckpointDurationMs: null, memoryBytes: undefined, evictedRows: 0, keyBuffer: new Array<Value>(plan.keys.length), evalErrors: 0 };
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
    await this.#o.store.remove(name);
    await this.#o.store.saveDefinition(name, sql);
    this.#views.set(name, this.#fresh(plan));
    this.#wantedByType.clear();
    this.#keyNeeded = undefined;
    this.#wake?.();
    this.#logger.info({ view: name, source: plan.source }, 'view created');
    return this.info(name);
  }

  async dropView(name: string): Promise<void> {
    this.#state.assertOpen();
    if (!this.#views.delete(name)) throw new HalflifeError('VIEW_NOT_FOUND', { name });
    this.#wantedByType.clear();
    this.#keyNeeded = undefined;
    await this.#o.store.remove(name);
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
    return {
      name,
      sql: r.plan.sql,
      source: r.plan.source,
      window: r.plan.window,
      time: r.plan.time,
      columns: ['window_start', 'window_end', ...r.plan.outputs.map((o) => o.name)],
      rows: r.state.groupCount,
      // Walking a big state per request would be costly: above 100k rows, the figure of the last checkpoint.
      memoryBytes: r.state.groupCount > 100_000 ? (r.memoryBytes ??= r.state.memoryBytes()) : r.state.memoryBytes(),
      lag,
      progress: total === 0 ? 1 : (total - lag) / total,
      watermark: Number.isFinite(r.state.watermark) ? r.state.watermark : null,
      lateEvents: r.state.lateCount,
      lastCheckpointMs: r.lastCheckpointMs,
      lastCheckpointDurationMs: r.lastCheckpointDurationMs,
      appliedRecords: r.applied,
      memoryBudgetBytes: r.plan.options.memoryBudgetBytes,
      evictedRows: r.evictedRows,
      offsets: [...r.offsets],
    };
  }

  late(name: string): { count: number; recent: readonly LateEvent[] } {
    const s = this.#runtime(name).state;
    return { count: s.lateCount, recent: s.late };
  }

  version(name: string): number {
    return this.#runtime(name).state.version;
  }

  /** Groups of a view matching a query's key filters, time range and version (not yet `latest`). */
  #select(plan: ViewPlan, state: ViewState, q: RowQuery): Group[] {
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
    } else source = state.groups();
    return [...source].filter((g) => {
      if (q.sinceVersion !== undefined && g.version <= q.sinceVersion) return false;
      if (q.fromMs !== undefined && (g.windowStart ?? 0) < q.fromMs) return false;
      if (q.toMs !== undefined && (g.windowStart ?? 0) >= q.toMs) return false;
      return filters.every(([i, v]) => toText(g.keys[i]) === v);
    });
  }

  /** Local groups merged with partial groups from other engines (fresh accumulators: live state is untouched). */
  #merged(plan: ViewPlan, local: Group[], foreign: readonly (readonly PartialGroup[])[]): Group[] {
    if (foreign.every((f) => f.length === 0)) return local;
    const byId = new Map<string, Group>();
    const add = (keys: Value[], start: number | null, end: number | null, closed: boolean, version: number, accs: Accumulator[]) => {
      const id = `${start}|${JSON.stringify(keys)}`;
      let g = byId.get(id);
      if (g === undefined) {
        g = { keys, windowStart: start, windowEnd: end, closed, version, accs: plan.aggs.map(createAccumulator) };
        byId.set(id, g);
      }
      for (let i = 0; i < accs.length; i++) g.accs[i].merge(accs[i]);
      g.closed &&= closed;
      if (version > g.version) g.version = version;
      if (end !== null && (g.windowEnd === null || end > g.windowEnd)) g.windowEnd = end;
    };
    if (plan.window.kind === 'session') return this.#mergedSessions(plan, local, foreign);
    for (const g of local) add(g.keys, g.windowStart, g.windowEnd, g.closed, g.version, g.accs);
    for (const list of foreign) {
      for (const [keys, start, end, closed, version, states] of list) {
        add(keys, start, end, closed, version, plan.aggs.map((spec, i) => restoreAccumulator(spec, states[i])));
      }
    }
    return [...byId.values()];
  }

  /** Sessions of one key seen by different engines merge where they overlap, as they would in one engine. */
  #mergedSessions(plan: ViewPlan, local: Group[], foreign: readonly (readonly PartialGroup[])[]): Group[] {
    const all: Group[] = [...local];
    for (const list of foreign) {
      for (const [keys, start, end, closed, version, states] of list) {
        all.push({ keys, windowStart: start, windowEnd: end, closed, version, accs: plan.aggs.map((spec, i) => restoreAccumulator(spec, states[i])) });
      }
    }
    const byKey = new Map<string, Group[]>();
    for (const g of all) {
      const k = JSON.stringify(g.keys);
      byKey.set(k, [...(byKey.get(k) ?? []), g]);
    }
    const out: Group[] = [];
    for (const list of byKey.values()) {
      list.sort((a, b) => a.windowStart! - b.windowStart!);
      let cur: Group | undefined;
      for (const g of list) {
        if (cur !== undefined && g.windowStart! < cur.windowEnd!) {
          for (let i = 0; i < cur.accs.length; i++) cur.accs[i].merge(g.accs[i]);
          cur.windowEnd = Math.max(cur.windowEnd!, g.windowEnd!);
          cur.closed &&= g.closed;
          cur.version = Math.max(cur.version, g.version);
          continue;
        }
        cur = { keys: g.keys, windowStart: g.windowStart, windowEnd: g.windowEnd, closed: g.closed, version: g.version, accs: plan.aggs.map(createAccumulator) };
        for (let i = 0; i < cur.accs.length; i++) cur.accs[i].merge(g.accs[i]);
        out.push(cur);
      }
    }
    return out;
  }

  /**
   * Rows of a view. `foreign` are partial groups of the same view from engines owning other partitions
   * (see `partials`); they are merged in before the outputs are computed.
   */
  rows(name: string, q: RowQuery = {}, foreign: readonly (readonly PartialGroup[])[] = []): ViewRow[] {
    const { plan, state } = this.#runtime(name);
    let groups = this.#merged(plan, this.#select(plan, state, q), foreign);
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
    const { plan, state } = this.#runtime(name);
    const out: { values: ViewRow; states: Record<string, Accumulator> }[] = [];
    for (const g of this.#merged(plan, [...state.groups()], foreign)) {
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
  async step(): Promise<number> {
    const views = [...this.#views.values()];
    if (views.length === 0) return 0;
    const log = this.#o.log;
    const max = this.#o.batchRecords ?? 2000;
    const stats = log.stats().partitions;
    const now = this.#clock.now();
    let read = 0;
    for (const v of views) for (let p = 0; p < stats.length; p++) v.state.setPending(p, this.#owns(p) && v.offsets[p] < stats[p].nextOffset);
    // Read every partition's next batch at once (the reads overlap in the I/O threads), then apply them.
    const reads = stats.map((s, p) => {
      if (!this.#owns(p)) return undefined;
      let from = Infinity;
      for (const v of views) if (v.offsets[p] < from) from = v.offsets[p];
      return from >= s.nextOffset ? undefined : log.readBatch(p, from, { maxRecords: max, maxBytes: 8 * 1024 * 1024 });
    });
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
      v.state.advance(now, caughtUp || atEnd);
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
    const { plan, state } = this.#runtime(name);
    return this.#select(plan, state, q).map((g) => [g.keys, g.windowStart, g.windowEnd, g.closed, g.version, g.accs.map((a) => a.save())]);
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
          this.#applyTo(v, row, now);
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
  #applyTo(v: Runtime, row: EventRow, now: number): void {
    const plan = v.plan;
    if (plan.joins.length === 0) {
      row.joined = NO_JOINS;
      this.#applyJoined(v, row, now);
      return;
    }
    row.joined = new Array(plan.joins.length);
    this.#join(v, row, 0, now);
  }

  #join(v: Runtime, row: EventRow, i: number, now: number): void {
    const plan = v.plan;
    if (i === plan.joins.length) {
      this.#applyJoined(v, row, now);
      return;
    }
    const j = plan.joins[i];
    const matches = this.#o.tables.lookup(j.table, j.column, j.probe(row));
    if (matches.length === 0) {
      if (j.kind === 'inner') return;
      row.joined[i] = undefined;
      this.#join(v, row, i + 1, now);
      return;
    }
    for (const m of matches) {
      row.joined[i] = m;
      this.#join(v, row, i + 1, now);
    }
  }

  #applyJoined(v: Runtime, row: EventRow, now: number): void {
    const plan = v.plan;
    if (plan.filter !== undefined && plan.filter(row) !== true) return;
    // One reused key array per view: the state copies it only when it creates a group.
    const keys = v.keyBuffer;
    for (let i = 0; i < keys.length; i++) keys[i] = plan.keys[i].eval(row);
    v.state.apply(row, keys, now);
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

  /** Saves every view's state with its offsets (atomically per view) and records the offsets in the log. */
  async checkpoint(): Promise<void> {
    for (const [name, v] of this.#views) {
      const t0 = performance.now();
      // The budget is enforced here, where the whole state is walked anyway.
      let size = v.state.memoryBytes();
      const budget = v.plan.options.memoryBudgetBytes;
      if (size > budget) {
        const removed = v.state.evictClosed(size, budget * 0.9);
        v.evictedRows += removed;
        size = v.state.memoryBytes();
        this.#logger.warn({ view: name, removed, bytes: size, budget }, size > budget ? `view ${name} is over its memory budget with open windows alone` : `view ${name} evicted ${removed} closed rows to stay within its memory budget`);
      }
      v.memoryBytes = size;
      const owned = this.#owned === undefined ? null : [...this.#owned].sort((a, b) => a - b);
      const bytes = encodeCheckpoint({ format: CHECKPOINT_FORMAT, sql: v.plan.sql, offsets: [...v.offsets], startOffsets: v.startOffsets, owned, state: v.state.save() });
      await this.#o.store.saveCheckpoint(name, bytes);
      v.lastCheckpointMs = this.#clock.now();
      v.lastCheckpointDurationMs = performance.now() - t0;
      await this.#o.log.commitOffsets(`view.${name}`, Object.fromEntries(v.offsets.map((o, p) => [p, o])));
    }
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
