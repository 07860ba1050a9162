import type { EventRow, Value, ViewPlan } from '../sql/index.js';
import { createAccumulator, restoreAccumulator, type Accumulator } from './accumulators.js';

/** One aggregated row: a group key in one window. */
export interface Group {
  readonly keys: Value[];
  windowStart: number | null;
  windowEnd: number | null;
  readonly accs: Accumulator[];
  /** Set when the watermark passed the window's end: the row is final. */
  closed: boolean;
  /** Bumped on every change; the live stream sends rows changed since a version. */
  version: number;
}

export interface LateEvent {
  readonly partition: number;
  readonly offset: number;
  readonly time: number;
  readonly received_at: number;
  readonly keys: Value[];
  /** The watermark the event fell behind. */
  readonly watermark: number;
}

/** The groups of one window (for views without a window: one bucket that never closes). */
interface Bucket {
  readonly start: number | null;
  readonly end: number | null;
  readonly groups: Map<unknown, Group>;
  closed: boolean;
}

const LATE_KEEP = 1000;
const NO_WINDOW = Number.NEGATIVE_INFINITY;

/**
 * Map key of a group: the value itself for one key (a Map tells 5 from "5"), JSON for several. Avoids building
 * a string per event and window, which dominated the engine's allocation.
 */
function mapKey(keys: readonly Value[]): unknown {
  if (keys.length === 1) return keys[0] ?? null;
  return JSON.stringify(keys);
}

/**
 * The state of one view: groups per window, watermarks per partition, late events. Time comes only from the
 * events and from the `nowMs` the engine passes in, so tests drive it deterministically.
 */
export class ViewState {
  readonly plan: ViewPlan;
  /** Window start -> its groups (tumble, hop, none). */
  readonly #buckets = new Map<number, Bucket>();
  /** Group key -> its sessions, open and closed (session windows). */
  readonly #sessions = new Map<unknown, Group[]>();
  /** Max event time seen per partition, and when (wall clock) each was last active. */
  readonly #maxTime: number[];
  readonly #lastActiveMs: number[];
  /** Partitions found idle at the last `advance` (they do not hold the watermark back). */
  readonly #idle: boolean[];
  /** Partitions with records the view has not read yet: unseen, they still hold the watermark back. */
  readonly #pending: boolean[];
  #watermark = -Infinity;
  #version = 0;
  lateCount = 0;
  readonly late: LateEvent[] = [];

  constructor(plan: ViewPlan, partitions: number) {
    this.plan = plan;
    this.#maxTime = new Array<number>(partitions).fill(-Infinity);
    this.#lastActiveMs = new Array<number>(partitions).fill(-Infinity);
    this.#idle = new Array<boolean>(partitions).fill(false);
    this.#pending = new Array<boolean>(partitions).fill(false);
  }

  get watermark(): number {
    return this.#watermark;
  }

  get version(): number {
    return this.#version;
  }

  /** Every group (row) of the view. */
  *groups(): IterableIterator<Group> {
    for (const b of this.#buckets.values()) yield* b.groups.values();
    for (const list of this.#sessions.values()) yield* list;
  }

  get groupCount(): number {
    let n = 0;
    for (const b of this.#buckets.values()) n += b.groups.size;
    for (const list of this.#sessions.values()) n += list.length;
    return n;
  }

  /** Tells the state which partitions still have unread records (the engine calls this before each step). */
  setPending(partition: number, pending: boolean): void {
    this.#pending[partition] = pending;
  }

  /** The slowest partition that counts, or -Infinity while an unseen partition has records to come. */
  #slowest(): number {
    let min = Infinity;
    for (let i = 0; i < this.#maxTime.length; i++) {
      const m = this.#maxTime[i];
      if (m === -Infinity) {
        if (this.#pending[i]) return -Infinity;
        continue;
      }
      if (!this.#idle[i] && m < min) min = m;
    }
    return min;
  }

  /** Applies one event (already filtered and joined). Returns false if it was late and only recorded. */
  apply(row: EventRow, keys: Value[], nowMs: number): boolean {
    const plan = this.plan;
    const t = row[plan.time];
    const p = row.partition;
    this.#lastActiveMs[p] = nowMs;
    this.#idle[p] = false;
    if (t > this.#maxTime[p]) {
      this.#maxTime[p] = t;
      // The watermark follows every event, so which events are late does not depend on how records were
      // batched (and a replay after a crash decides exactly as the first run did).
      const min = this.#slowest();
      if (min !== Infinity) {
        const candidate = min - plan.options.maxLatenessMs;
        if (candidate > this.#watermark) this.#watermark = candidate;
      }
    }
    const w = plan.window;
    const version = ++this.#version;
    const key = mapKey(keys);
    switch (w.kind) {
      case 'none':
        this.#add(NO_WINDOW, null, null, key, keys, row, version);
        return true;
      case 'tumble': {
        const start = Math.floor(t / w.sizeMs) * w.sizeMs;
        if (start + w.sizeMs <= this.#watermark) return this.#late(row, t, keys);
        this.#add(start, start, start + w.sizeMs, key, keys, row, version);
        return true;
      }
      case 'hop': {
        const last = Math.floor(t / w.slideMs) * w.slideMs;
        if (last + w.sizeMs <= this.#watermark) return this.#late(row, t, keys);
        for (let s = last; s > t - w.sizeMs; s -= w.slideMs) {
          if (s + w.sizeMs > this.#watermark) this.#add(s, s, s + w.sizeMs, key, keys, row, version);
        }
        return true;
      }
      case 'session':
        // Behind the watermark a session event could touch a session already closed (final): late.
        if (t < this.#watermark) return this.#late(row, t, keys);
        this.#session(key, keys, t, w.gapMs, row, version);
        return true;
    }
  }

  #add(id: number, start: number | null, end: number | null, key: unknown, keys: Value[], row: EventRow, version: number): void {
    let b = this.#buckets.get(id);
    if (b === undefined) {
      b = { start, end, groups: new Map(), closed: false };
      this.#buckets.set(id, b);
    }
    let g = b.groups.get(key);
    if (g === undefined) {
      g = { keys, windowStart: start, windowEnd: end, accs: this.plan.aggs.map(createAccumulator), closed: false, version };
      b.groups.set(key, g);
    }
    g.version = version;
    const aggs = this.plan.aggs;
    for (let i = 0; i < aggs.length; i++) {
      const a = aggs[i];
      g.accs[i].add(a.arg === undefined ? null : a.arg(row));
    }
  }

  /**
   * Session windows: an event joins every open session of its key that [t, t + gap) overlaps; sessions it
   * bridges merge (their partial aggregates merge, which is why every accumulator is mergeable).
   */
  #session(key: unknown, keys: Value[], t: number, gap: number, row: EventRow, version: number): void {
    let list = this.#sessions.get(key);
    if (list === undefined) {
      list = [];
      this.#sessions.set(key, list);
    }
    let target: Group | undefined;
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (s.closed || !(t < s.windowEnd! && t + gap > s.windowStart!)) continue;
      if (target === undefined) {
        target = s;
        continue;
      }
      for (let j = 0; j < target.accs.length; j++) target.accs[j].merge(s.accs[j]);
      target.windowStart = Math.min(target.windowStart!, s.windowStart!);
      target.windowEnd = Math.max(target.windowEnd!, s.windowEnd!);
      list.splice(i--, 1);
    }
    if (target === undefined) {
      target = { keys, windowStart: t, windowEnd: t + gap, accs: this.plan.aggs.map(createAccumulator), closed: false, version };
      list.push(target);
    } else {
      target.windowStart = Math.min(target.windowStart!, t);
      target.windowEnd = Math.max(target.windowEnd!, t + gap);
    }
    target.version = version;
    const aggs = this.plan.aggs;
    for (let i = 0; i < aggs.length; i++) target.accs[i].add(aggs[i].arg === undefined ? null : aggs[i].arg!(row));
  }

  #late(row: EventRow, t: number, keys: Value[]): false {
    this.lateCount++;
    if (this.late.length >= LATE_KEEP) this.late.shift();
    this.late.push({ partition: row.partition, offset: row.offset, time: t, received_at: row.received_at, keys, watermark: this.#watermark });
    return false;
  }

  /**
   * Moves the watermark for quiet partitions: one quiet for `idleTimeoutMs` (wall clock) stops holding it back;
   * for received_at views an all-quiet stream follows the wall clock, so the last windows close. Then closes
   * windows behind the watermark and drops closed windows older than the retention.
   */
  advance(nowMs: number, caughtUp: boolean): void {
    const { maxLatenessMs, idleTimeoutMs, retentionMs } = this.plan.options;
    let max = -Infinity;
    for (let p = 0; p < this.#maxTime.length; p++) {
      const m = this.#maxTime[p];
      if (m === -Infinity) continue;
      if (m > max) max = m;
      this.#idle[p] = caughtUp && nowMs - this.#lastActiveMs[p] >= idleTimeoutMs;
    }
    const min = this.#slowest();
    if (min === -Infinity || max === -Infinity) return;
    const candidate = min !== Infinity ? min - maxLatenessMs : this.plan.time === 'received_at' && caughtUp ? nowMs - maxLatenessMs : max - maxLatenessMs;
    if (candidate > this.#watermark) this.#watermark = candidate;
    const watermark = this.#watermark;
    const horizon = watermark - retentionMs;
    for (const [id, b] of this.#buckets) {
      if (b.end === null) continue;
      if (!b.closed && b.end <= watermark) {
        b.closed = true;
        const version = ++this.#version;
        for (const g of b.groups.values()) {
          g.closed = true;
          g.version = version;
        }
      }
      if (b.closed && b.end <= horizon) this.#buckets.delete(id);
    }
    for (const [key, list] of this.#sessions) {
      for (let i = 0; i < list.length; i++) {
        const g = list[i];
        if (!g.closed && g.windowEnd! <= watermark) {
          g.closed = true;
          g.version = ++this.#version;
        }
        if (g.closed && g.windowEnd! <= horizon) list.splice(i--, 1);
      }
      if (list.length === 0) this.#sessions.delete(key);
    }
  }

  /**
   * Drops closed windows, oldest first, until the state is estimated at `targetBytes` or less. Open windows are
   * never dropped (that would lose counts). Returns how many rows went.
   */
  evictClosed(currentBytes: number, targetBytes: number): number {
    const closed = [...this.#buckets.entries()].filter(([, b]) => b.closed).sort((a, b) => (a[1].end ?? 0) - (b[1].end ?? 0));
    let bytes = currentBytes;
    let removed = 0;
    for (const [id, b] of closed) {
      if (bytes <= targetBytes) break;
      for (const g of b.groups.values()) {
        bytes -= 120 + g.keys.length * 32;
        for (const a of g.accs) bytes -= a.bytes();
      }
      removed += b.groups.size;
      this.#buckets.delete(id);
    }
    for (const [key, list] of this.#sessions) {
      if (bytes <= targetBytes) break;
      for (let i = 0; i < list.length && bytes > targetBytes; i++) {
        const g = list[i];
        if (!g.closed) continue;
        for (const a of g.accs) bytes -= a.bytes();
        list.splice(i--, 1);
        removed++;
      }
      if (list.length === 0) this.#sessions.delete(key);
    }
    return removed;
  }

  memoryBytes(): number {
    let b = 0;
    for (const g of this.groups()) {
      b += 120 + g.keys.length * 32;
      for (const a of g.accs) b += a.bytes();
    }
    return b;
  }

  /** Plain data for a checkpoint. */
  save(): SavedViewState {
    return {
      groups: [...this.groups()].map((g) => [g.keys, g.windowStart, g.windowEnd, g.closed, g.accs.map((a) => a.save())]),
      maxTime: [...this.#maxTime],
      watermark: this.#watermark,
      lateCount: this.lateCount,
      late: [...this.late],
    };
  }

  static restore(plan: ViewPlan, partitions: number, saved: SavedViewState, nowMs: number): ViewState {
    const s = new ViewState(plan, partitions);
    for (const [keys, start, end, closed, accs] of saved.groups) {
      const g: Group = { keys, windowStart: start, windowEnd: end, closed, version: 0, accs: plan.aggs.map((spec, i) => restoreAccumulator(spec, accs[i])) };
      const key = mapKey(keys);
      if (plan.window.kind === 'session') {
        const list = s.#sessions.get(key) ?? [];
        list.push(g);
        s.#sessions.set(key, list);
        continue;
      }
      const id = start ?? NO_WINDOW;
      let b = s.#buckets.get(id);
      if (b === undefined) {
        b = { start, end, groups: new Map(), closed };
        s.#buckets.set(id, b);
      }
      b.groups.set(key, g);
    }
    saved.maxTime.forEach((m, p) => {
      if (p < partitions) s.#maxTime[p] = m;
    });
    s.#lastActiveMs.fill(nowMs);
    s.#watermark = saved.watermark;
    s.lateCount = saved.lateCount;
    s.late.push(...saved.late);
    return s;
  }
}

export interface SavedViewState {
  groups: [Value[], number | null, number | null, boolean, unknown[]][];
  maxTime: number[];
  watermark: number;
  lateCount: number;
  late: LateEvent[];
}
