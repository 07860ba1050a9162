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

const LATE_KEEP = 1000;
const NO_WINDOW = -1;

/** Canonical string of a group's key values (fast paths for one string or number key). */
function keyString(keys: readonly Value[]): string {
  if (keys.length === 1) {
    const k = keys[0];
    if (typeof k === 'string') return `s${k}`;
    if (typeof k === 'number') return `n${k}`;
    if (k === null || k === undefined) return 'z';
  }
  return JSON.stringify(keys);
}

/**
 * The state of one view: groups per window, watermarks per partition, late events. Time comes only from the
 * events and from the `nowMs` the engine passes in, so tests drive it deterministically.
 */
export class ViewState {
  readonly plan: ViewPlan;
  /** windowStart|key -> group (sessions: the session's current start). */
  readonly groups = new Map<string, Group>();
  /** Open sessions per key (session windows only). */
  readonly #sessions = new Map<string, Group[]>();
  /** Max event time seen per partition, and when (wall clock) it last moved. */
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
  #starts: number[] = [];

  constructor(plan: ViewPlan, partitions: number) {
    this.plan = plan;
    this.#maxTime = new Array<number>(partitions).fill(-Infinity);
    this.#lastActiveMs = new Array<number>(partitions).fill(-Infinity);
    this.#idle = new Array<boolean>(partitions).fill(false);
    this.#pending = new Array<boolean>(partitions).fill(false);
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

  get watermark(): number {
    return this.#watermark;
  }

  get version(): number {
    return this.#version;
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
    const ks = keyString(keys);
    const version = ++this.#version;
    switch (w.kind) {
      case 'none':
        this.#add(`${NO_WINDOW}|${ks}`, keys, null, null, row, version);
        return true;
      case 'tumble': {
        const start = Math.floor(t / w.sizeMs) * w.sizeMs;
        if (start + w.sizeMs <= this.#watermark) return this.#late(row, t, keys);
        this.#add(`${start}|${ks}`, keys, start, start + w.sizeMs, row, version);
        return true;
      }
      case 'hop': {
        const last = Math.floor(t / w.slideMs) * w.slideMs;
        if (last + w.sizeMs <= this.#watermark) return this.#late(row, t, keys);
        const starts = this.#starts;
        starts.length = 0;
        for (let s = last; s > t - w.sizeMs; s -= w.slideMs) starts.push(s);
        for (const s of starts) {
          if (s + w.sizeMs > this.#watermark) this.#add(`${s}|${ks}`, keys, s, s + w.sizeMs, row, version);
        }
        return true;
      }
      case 'session':
        // Behind the watermark a session event could touch a session already closed (final): late.
        if (t < this.#watermark) return this.#late(row, t, keys);
        this.#session(ks, keys, t, w.gapMs, row, version);
        return true;
    }
  }

  #add(id: string, keys: Value[], start: number | null, end: number | null, row: EventRow, version: number): void {
    let g = this.groups.get(id);
    if (g === undefined) {
      g = { keys, windowStart: start, windowEnd: end, accs: this.plan.aggs.map(createAccumulator), closed: false, version };
      this.groups.set(id, g);
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
   * A session's id in `groups` is `start|key`, so it is re-filed whenever its start moves.
   */
  #session(ks: string, keys: Value[], t: number, gap: number, row: EventRow, version: number): void {
    let open = this.#sessions.get(ks);
    if (open === undefined) {
      open = [];
      this.#sessions.set(ks, open);
    }
    let target: Group | undefined;
    for (let i = 0; i < open.length; i++) {
      const s = open[i];
      if (!(t < s.windowEnd! && t + gap > s.windowStart!)) continue;
      this.groups.delete(`${s.windowStart}|${ks}`);
      if (target === undefined) {
        target = s;
        continue;
      }
      for (let j = 0; j < target.accs.length; j++) target.accs[j].merge(s.accs[j]);
      target.windowStart = Math.min(target.windowStart!, s.windowStart!);
      target.windowEnd = Math.max(target.windowEnd!, s.windowEnd!);
      open.splice(i--, 1);
    }
    if (target === undefined) {
      target = { keys, windowStart: t, windowEnd: t + gap, accs: this.plan.aggs.map(createAccumulator), closed: false, version };
      open.push(target);
    } else {
      target.windowStart = Math.min(target.windowStart!, t);
      target.windowEnd = Math.max(target.windowEnd!, t + gap);
    }
    target.version = version;
    const aggs = this.plan.aggs;
    for (let i = 0; i < aggs.length; i++) target.accs[i].add(aggs[i].arg === undefined ? null : aggs[i].arg!(row));
    this.groups.set(`${target.windowStart}|${ks}`, target);
  }

  #late(row: EventRow, t: number, keys: Value[]): false {
    this.lateCount++;
    if (this.late.length >= LATE_KEEP) this.late.shift();
    this.late.push({ partition: row.partition, offset: row.offset, time: t, received_at: row.received_at, keys, watermark: this.#watermark });
    return false;
  }

  /**
   * Moves the watermark: the slowest partition that is still active, minus the lateness bound. A partition quiet
   * for `idleTimeoutMs` (wall clock) stops holding it back; for received_at views an all-quiet stream follows the
   * wall clock, so the last windows close. Then closes windows behind the watermark and drops closed windows
   * older than the retention.
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
    let candidate: number;
    if (min === -Infinity || max === -Infinity) return;
    if (min !== Infinity) candidate = min - maxLatenessMs;
    else candidate = this.plan.time === 'received_at' && caughtUp ? nowMs - maxLatenessMs : max - maxLatenessMs;
    if (candidate > this.#watermark) this.#watermark = candidate;
    const watermark = this.#watermark;
    const horizon = watermark - retentionMs;
    for (const [id, g] of this.groups) {
      if (g.windowEnd === null) continue;
      if (!g.closed && g.windowEnd <= watermark) {
        g.closed = true;
        g.version = ++this.#version;
        if (this.plan.window.kind === 'session') {
          const ks = id.slice(id.indexOf('|') + 1);
          const open = this.#sessions.get(ks);
          if (open !== undefined) {
            open.splice(open.indexOf(g), 1);
            if (open.length === 0) this.#sessions.delete(ks);
          }
        }
      }
      if (g.closed && g.windowEnd <= horizon) this.groups.delete(id);
    }
  }

  memoryBytes(): number {
    let b = 0;
    for (const g of this.groups.values()) {
      b += 120 + g.keys.length * 32;
      for (const a of g.accs) b += a.bytes();
    }
    return b;
  }

  /** Plain data for a checkpoint. */
  save(): SavedViewState {
    return {
      groups: [...this.groups].map(([id, g]) => [id, g.keys, g.windowStart, g.windowEnd, g.closed, g.accs.map((a) => a.save())]),
      maxTime: [...this.#maxTime],
      watermark: this.#watermark,
      lateCount: this.lateCount,
      late: [...this.late],
    };
  }

  static restore(plan: ViewPlan, partitions: number, saved: SavedViewState, nowMs: number): ViewState {
    const s = new ViewState(plan, partitions);
    for (const [id, keys, start, end, closed, accs] of saved.groups) {
      const g: Group = { keys, windowStart: start, windowEnd: end, closed, version: 0, accs: plan.aggs.map((spec, i) => restoreAccumulator(spec, accs[i])) };
      s.groups.set(id, g);
      if (plan.window.kind === 'session' && !closed) {
        const ks = id.slice(id.indexOf('|') + 1);
        s.#sessions.set(ks, [...(s.#sessions.get(ks) ?? []), g]);
      }
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
  groups: [string, Value[], number | null, number | null, boolean, unknown[]][];
  maxTime: number[];
  watermark: number;
  lateCount: number;
  late: LateEvent[];
}
