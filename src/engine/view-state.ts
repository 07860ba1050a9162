import type { EventRow, Value, ViewPlan } from '../sql/index.js';
import { createAccumulator, restoreAccumulator, type Accumulator } from './accumulators.js';
import { GroupTable, groupId } from './group-table.js';

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
  /**
   * Why it was not counted: `window_closed` (an event behind the watermark), or, for a replayed dead letter (which
   * corrects closed windows the view still holds), `window_evicted` (dropped for the view's memory budget) or
   * `window_expired` (older than the view's retention).
   */
  readonly reason: LateReason;
}

export type LateReason = 'window_closed' | 'window_evicted' | 'window_expired';

/** The groups of one window (for views without a window: one bucket that never closes), in columns. */
type Bucket = GroupTable;

const LATE_KEEP = 1000;
const NO_WINDOW = Number.NEGATIVE_INFINITY;

/**
 * The state of one view: groups per window, watermarks per partition, late events. Time comes only from the
 * events and from the `nowMs` the engine passes in, so tests drive it deterministically.
 */
export class ViewState {
  readonly plan: ViewPlan;
  /** Window start -> its groups (tumble and none; for hop: the closed, frozen windows). */
  readonly #buckets = new Map<number, Bucket>();
  /**
   * HOP views aggregate into panes of one slide each; an open window is the merge of its size/slide panes,
   * computed when read. So an event updates one pane instead of size/slide windows (5× less work and memory
   * for a 5-minute window sliding every minute). When the watermark passes a window's end, the window is
   * merged once and frozen into `#buckets`: closed windows never change.
   */
  readonly #panes = new Map<number, Bucket>();
  /** Start of the latest HOP window frozen so far. */
  #frozenThrough = -Infinity;
  /** Pane width: gcd(slide, size), so every window is a whole number of panes. */
  readonly #paneMs: number;
  /** Group key -> its sessions, open and closed (session windows). */
  readonly #sessions = new Map<unknown, Group[]>();
  /** Max event time seen per partition (never past the event's arrival), and when (wall clock) each was last active. */
  readonly #maxTime: number[];
  readonly #lastActiveMs: number[];
  /** Partitions found idle at the last `advance` (they do not hold the watermark back). */
  readonly #idle: boolean[];
  /** Partitions with records the view has not read yet: unseen, they still hold the watermark back. */
  readonly #pending: boolean[];
  #watermark = -Infinity;
  /** The end of the newest closed window dropped for the memory budget: corrections before it cannot be applied. */
  #evictedThrough = -Infinity;
  /** The view's change counter: shared by the states of one view's partitions, so versions order across them. */
  readonly #versions: VersionCounter;
  /** Changes made by this state (what tells whether it needs a new checkpoint). */
  #changes = 0;
  /** Rows dropped (retention, the memory budget): changes too, but not ones a reader is told of. */
  #dropped = 0;
  /**
   * Closed windows are dropped for the retention only behind this watermark too: a view whose state is in several
   * units (see the engine) keeps a window in every unit until the slowest passed its retention, so no merged row is
   * read with some of its parts gone. Infinity (the default): this state's own watermark alone decides.
   */
  retentionCap = Infinity;
  lateCount = 0;
  readonly late: LateEvent[] = [];

  /** `partitions`: how many the log has (the state takes events of any of them). */
  constructor(plan: ViewPlan, partitions: number, versions: VersionCounter = { value: 0 }) {
    this.plan = plan;
    this.#versions = versions;
    this.#maxTime = new Array<number>(partitions).fill(-Infinity);
    this.#lastActiveMs = new Array<number>(partitions).fill(-Infinity);
    this.#idle = new Array<boolean>(partitions).fill(false);
    this.#pending = new Array<boolean>(partitions).fill(false);
    const w = plan.window;
    this.#paneMs = w.kind === 'hop' ? gcd(w.slideMs, w.sizeMs) : 0;
  }

  get watermark(): number {
    return this.#watermark;
  }

  get version(): number {
    return this.#versions.value;
  }

  /**
   * Everything a checkpoint holds that can change without a new record applied (the watermark moving on, rows
   * dropped, late events): two equal fingerprints mean an equal checkpoint.
   */
  get fingerprint(): string {
    return `${this.#changes}/${this.#dropped}/${this.#watermark}/${this.lateCount}/${this.#frozenThrough}`;
  }

  /** Whether no partition has records here yet. */
  get unseen(): boolean {
    return this.#maxTime.every((m) => m === -Infinity);
  }

  #bump(): number {
    this.#changes++;
    return ++this.#versions.value;
  }

  /**
   * How far this state lets the windows of a view spread over several states close: its watermark; -Infinity
   * while a partition has records to come and none seen; +Infinity when it holds nothing back (no partition with
   * records, or all idle).
   */
  get floor(): number {
    let min = Infinity;
    for (let i = 0; i < this.#maxTime.length; i++) {
      if (this.#maxTime[i] === -Infinity) {
        if (this.#pending[i]) return -Infinity;
        continue;
      }
      if (!this.#idle[i]) min = Math.min(min, this.#watermark);
    }
    return min;
  }

  /** Whether every partition this state has records of is idle (quiet past the idle timeout), and there is one. */
  get idle(): boolean {
    let any = false;
    for (let i = 0; i < this.#maxTime.length; i++) {
      if (this.#maxTime[i] === -Infinity) continue;
      if (!this.#idle[i]) return false;
      any = true;
    }
    return any;
  }

  /**
   * Stops counting a partition in the watermark: its records go on in another state (it moved to another engine
   * worker). What this state counted of it stays.
   */
  retire(partition: number): void {
    this.#maxTime[partition] = -Infinity;
    this.#pending[partition] = false;
    this.#idle[partition] = false;
  }

  /**
   * Moves the watermark up to `watermark` (never down) and closes what it passed: an idle partition's state follows
   * the other partitions of its view, so an event arriving after a quiet spell is judged late as it would be in one
   * state over all partitions (and a row another state already reported final does not change).
   */
  raiseWatermark(watermark: number): void {
    if (!(watermark > this.#watermark) || !Number.isFinite(watermark)) return;
    this.#watermark = watermark;
    if (this.plan.window.kind === 'hop') this.#freeze();
    this.#close();
  }

  /** Every group (row) of the view but those of the windows starting in `skip`; open HOP windows are merged from their panes here. */
  *groups(skip?: ReadonlySet<number>): IterableIterator<Group> {
    for (const b of this.#buckets.values()) if (skip === undefined || b.start === null || !skip.has(b.start)) yield* b.values();
    for (const list of this.#sessions.values()) yield* list;
    if (this.plan.window.kind === 'hop') for (const start of this.#openWindowStarts()) yield* this.#derive(start).values();
  }

  /** The closed windows (TUMBLE, and HOP windows once frozen): their rows change only by corrections. */
  *closedWindows(): IterableIterator<GroupTable> {
    for (const b of this.#buckets.values()) if (b.closed && b.start !== null) yield b;
  }

  /** Whether the window starting at `start` is open here and holds rows (a HOP window not frozen with panes in it). */
  isOpen(start: number): boolean {
    const w = this.plan.window;
    if (w.kind === 'hop') {
      if (start <= this.#frozenThrough) return false;
      for (let p = start; p < start + w.sizeMs; p += this.#paneMs) if (this.#panes.has(p)) return true;
      return false;
    }
    const b = this.#buckets.get(start);
    return b !== undefined && !b.closed;
  }

  get groupCount(): number {
    let n = 0;
    for (const b of this.#buckets.values()) n += b.size;
    for (const list of this.#sessions.values()) n += list.length;
    if (this.plan.window.kind === 'hop') for (const start of this.#openWindowStarts()) n += this.#derive(start).size;
    return n;
  }

  /**
   * The groups of one key across all windows, found by lookup instead of a scan: what a point query
   * (`?article_id=a1`) needs. `candidates` are the possible key values (a query's "5" may mean 5).
   */
  *groupsOf(candidates: readonly unknown[]): IterableIterator<Group> {
    const w = this.plan.window;
    for (const c of candidates) {
      for (const b of this.#buckets.values()) {
        const g = b.get(c);
        if (g !== undefined) yield g;
      }
      const sessions = this.#sessions.get(c);
      if (sessions !== undefined) yield* sessions;
      if (w.kind === 'hop') {
        for (const start of this.#openWindowStarts()) {
          let d: Group | undefined;
          for (let p = start; p < start + w.sizeMs; p += this.#paneMs) {
            const g = this.#panes.get(p)?.get(c);
            if (g === undefined) continue;
            d ??= { keys: g.keys, windowStart: start, windowEnd: start + w.sizeMs, accs: this.plan.aggs.map(createAccumulator), closed: false, version: g.version };
            for (let i = 0; i < d.accs.length; i++) d.accs[i].merge(g.accs[i]);
            if (g.version > d.version) d.version = g.version;
          }
          if (d !== undefined) yield d;
        }
      }
    }
  }

  /** Starts of the HOP windows that contain a pane and are not frozen, ascending. */
  #openWindowStarts(): number[] {
    const w = this.plan.window as { slideMs: number; sizeMs: number };
    const starts = new Set<number>();
    for (const p of this.#panes.keys()) {
      for (let s = Math.floor(p / w.slideMs) * w.slideMs; s > p - w.sizeMs; s -= w.slideMs) if (s > this.#frozenThrough) starts.add(s);
    }
    return [...starts].sort((a, b) => a - b);
  }

  /** The HOP window starting at `start`, merged from its panes. */
  #derive(start: number): Map<unknown, Group> {
    const w = this.plan.window as { slideMs: number; sizeMs: number };
    const out = new Map<unknown, Group>();
    for (let p = start; p < start + w.sizeMs; p += this.#paneMs) {
      const pane = this.#panes.get(p);
      if (pane === undefined) continue;
      for (const [k, g] of pane.entries()) {
        let d = out.get(k);
        if (d === undefined) {
          d = { keys: g.keys, windowStart: start, windowEnd: start + w.sizeMs, accs: this.plan.aggs.map(createAccumulator), closed: false, version: g.version };
          out.set(k, d);
        }
        for (let i = 0; i < d.accs.length; i++) d.accs[i].merge(g.accs[i]);
        if (g.version > d.version) d.version = g.version;
      }
    }
    return out;
  }

  /**
   * Freezes every HOP window the watermark has passed, and drops panes no open window needs. Every window
   * starting at or before `#frozenThrough` is closed: frozen if it had events, or empty for good (an event that
   * arrives later for it does not count there, as for any closed window).
   */
  #freeze(): void {
    const w = this.plan.window as { slideMs: number; sizeMs: number };
    const watermark = this.#watermark;
    const through = Math.floor((watermark - w.sizeMs) / w.slideMs) * w.slideMs;
    if (through <= this.#frozenThrough) return;
    for (const start of this.#openWindowStarts()) {
      if (start > through) break;
      const groups = this.#derive(start);
      const version = this.#bump();
      if (groups.size > 0) {
        const frozen = new GroupTable(this.plan.aggs, start, start + w.sizeMs, this.plan.keys.length);
        for (const [key, g] of groups) frozen.absorb(key, g.keys, g.accs, version);
        frozen.close(version);
        this.#buckets.set(start, frozen);
      }
    }
    this.#frozenThrough = through;
    // A pane is needed until the last window containing it (the one starting at or before it) closes.
    for (const p of this.#panes.keys()) if (Math.floor(p / w.slideMs) * w.slideMs <= through) this.#panes.delete(p);
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

  /**
   * Applies one event (already filtered and joined). `keys` may be reused by the caller: it is copied when a
   * group is created. Returns false if the event was late and only recorded.
   */
  apply(row: EventRow, keys: Value[], nowMs: number): boolean {
    const plan = this.plan;
    const t = row[plan.time];
    const p = row.partition;
    this.#lastActiveMs[p] = nowMs;
    this.#idle[p] = false;
    // A partition's clock never runs ahead of when its events arrived: an event time ahead of the server's clock
    // (a client clock off, or a hostile one) is counted in its own window but moves no watermark past its arrival,
    // so it cannot close the windows real events still go to. received_at is in the record: deterministic on replay.
    const clock = t < row.received_at ? t : row.received_at;
    if (clock > this.#maxTime[p]) {
      this.#maxTime[p] = clock;
      // The watermark follows every event, so which events are late does not depend on how records were
      // batched (and a replay after a crash decides exactly as the first run did).
      const min = this.#slowest();
      if (min !== Infinity) {
        const candidate = min - plan.options.maxLatenessMs;
        if (candidate > this.#watermark) {
          this.#watermark = candidate;
          // Also with no panes: windows the watermark passed are closed even if empty, for events that come later.
          if (plan.window.kind === 'hop') this.#freeze();
        }
      }
    }
    const w = plan.window;
    const version = this.#bump();
    const key = groupId(keys);
    switch (w.kind) {
      case 'none':
        this.#add(this.#buckets, NO_WINDOW, null, null, key, keys, row, version);
        return true;
      case 'tumble': {
        const start = Math.floor(t / w.sizeMs) * w.sizeMs;
        if (start + w.sizeMs <= this.#watermark) {
          if (row.replay !== true) return this.#late(row, t, keys, 'window_closed');
          const missing = this.#correct(start, start + w.sizeMs, key, keys, row, version);
          return missing === undefined ? true : this.#late(row, t, keys, missing);
        }
        this.#add(this.#buckets, start, start, start + w.sizeMs, key, keys, row, version);
        return true;
      }
      case 'hop': {
        const newest = Math.floor(t / w.slideMs) * w.slideMs;
        if (row.replay === true) {
          // A correction also reaches the closed windows that contain t, while the view holds them. Freezing first
          // makes "frozen" and "closed" the same windows, so no window gets the event both from a pane and here.
          this.#freeze();
          let applied = false;
          let missing: LateReason | undefined;
          for (let start = Math.min(newest, this.#frozenThrough); start > t - w.sizeMs; start -= w.slideMs) {
            const why = this.#correct(start, start + w.sizeMs, key, keys, row, version);
            if (why === undefined) applied = true;
            else missing ??= why;
          }
          if (newest + w.sizeMs <= this.#watermark) return applied ? true : this.#late(row, t, keys, missing ?? 'window_closed');
        } else if (newest + w.sizeMs <= this.#watermark) {
          // Late when even the newest window containing t has closed.
          return this.#late(row, t, keys, 'window_closed');
        }
        const pane = Math.floor(t / this.#paneMs) * this.#paneMs;
        this.#add(this.#panes, pane, pane, pane + this.#paneMs, key, keys, row, version);
        return true;
      }
      case 'session':
        // Behind the watermark a session event could touch a session already closed (final): late, unless it is a
        // correction, which joins (and may merge) the sessions the view still holds.
        if (t < this.#watermark) {
          if (row.replay !== true) return this.#late(row, t, keys, 'window_closed');
          const missing = this.#retained(t, t + w.gapMs);
          if (missing !== undefined) return this.#late(row, t, keys, missing);
        }
        this.#session(key, keys, t, w.gapMs, row, version);
        return true;
    }
  }

  /** Why the closed window [start, end) can no longer be corrected, or undefined while the view holds it. */
  #retained(start: number, end: number): LateReason | undefined {
    if (end <= this.#watermark - this.plan.options.retentionMs) return 'window_expired';
    if (end <= this.#evictedThrough) return 'window_evicted';
    return undefined;
  }

  /**
   * Applies a correction to the closed window [start, end) (tumble, or a frozen HOP window): its row changes, stays
   * final, and reaches live streams through its new version. A window that had no row for any key yet gets one.
   */
  #correct(start: number, end: number, key: unknown, keys: Value[], row: EventRow, version: number): LateReason | undefined {
    let b = this.#buckets.get(start);
    if (b === undefined) {
      const missing = this.#retained(start, end);
      if (missing !== undefined) return missing;
      b = new GroupTable(this.plan.aggs, start, end, this.plan.keys.length);
      b.close(version);
      this.#buckets.set(start, b);
    }
    b.add(key, keys, row, version);
    return undefined;
  }

  #add(buckets: Map<number, Bucket>, id: number, start: number | null, end: number | null, key: unknown, keys: Value[], row: EventRow, version: number): void {
    let b = buckets.get(id);
    if (b === undefined) {
      b = new GroupTable(this.plan.aggs, start, end, this.plan.keys.length);
      buckets.set(id, b);
    }
    b.add(key, keys, row, version);
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
      // Closed sessions are final, but a correction (a replayed dead letter) may still join them.
      if ((s.closed && row.replay !== true) || !(t < s.windowEnd! && t + gap > s.windowStart!)) continue;
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
      target = { keys: keys.slice(), windowStart: t, windowEnd: t + gap, accs: this.plan.aggs.map(createAccumulator), closed: t + gap <= this.#watermark, version };
      list.push(target);
    } else {
      target.windowStart = Math.min(target.windowStart!, t);
      target.windowEnd = Math.max(target.windowEnd!, t + gap);
      // A correction that joined a closed session to an open one (or stretched it past the watermark) reopens it.
      if (row.replay === true) target.closed = target.windowEnd <= this.#watermark;
    }
    target.version = version;
    const aggs = this.plan.aggs;
    for (let i = 0; i < aggs.length; i++) target.accs[i].add(aggs[i].arg === undefined ? null : aggs[i].arg!(row));
  }

  #late(row: EventRow, t: number, keys: Value[], reason: LateReason): false {
    this.lateCount++;
    if (this.late.length >= LATE_KEEP) this.late.shift();
    this.late.push({ partition: row.partition, offset: row.offset, time: t, received_at: row.received_at, keys: keys.slice(), watermark: this.#watermark, reason });
    return false;
  }

  /**
   * Moves the watermark for quiet partitions: one quiet for `idleTimeoutMs` (wall clock) stops holding it back;
   * for received_at views an all-quiet stream follows the wall clock, so the last windows close. Then closes
   * windows behind the watermark and drops closed windows older than the retention.
   */
  advance(nowMs: number, caughtUp: boolean): void {
    const { maxLatenessMs, idleTimeoutMs } = this.plan.options;
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
    if (this.plan.window.kind === 'hop') this.#freeze();
    this.#close();
  }

  /** Closes the windows behind the watermark and drops closed ones older than the retention. */
  #close(): void {
    const watermark = this.#watermark;
    const horizon = Math.min(watermark, this.retentionCap) - this.plan.options.retentionMs;
    for (const [id, b] of this.#buckets) {
      if (b.end === null) continue;
      if (!b.closed && b.end <= watermark) b.close(this.#bump());
      if (b.closed && b.end <= horizon) {
        this.#buckets.delete(id);
        this.#dropped++;
      }
    }
    for (const [key, list] of this.#sessions) {
      for (let i = 0; i < list.length; i++) {
        const g = list[i];
        if (!g.closed && g.windowEnd! <= watermark) {
          g.closed = true;
          g.version = this.#bump();
        }
        if (g.closed && g.windowEnd! <= horizon) {
          list.splice(i--, 1);
          this.#dropped++;
        }
      }
      if (list.length === 0) this.#sessions.delete(key);
    }
  }

  /**
   * Drops closed windows, oldest first, until the state is estimated at `targetBytes` or less. Open windows are
   * never dropped (that would lose counts). Returns how many rows went.
   */
  evictClosed(currentBytes: number, targetBytes: number): number {
    let bytes = currentBytes;
    let through = -Infinity;
    for (const c of this.closedExtents()) {
      if (bytes <= targetBytes) break;
      bytes -= c.bytes;
      through = c.end;
    }
    return this.evictThrough(through);
  }

  /** The closed windows (and closed sessions), oldest end first, with their estimated size. */
  closedExtents(): { end: number; bytes: number }[] {
    const out: { end: number; bytes: number }[] = [];
    for (const b of this.#buckets.values()) if (b.closed && b.end !== null) out.push({ end: b.end, bytes: b.bytes() });
    for (const list of this.#sessions.values()) {
      for (const g of list) if (g.closed) out.push({ end: g.windowEnd!, bytes: g.accs.reduce((n, a) => n + a.bytes(), 0) });
    }
    return out.sort((a, b) => a.end - b.end);
  }

  /**
   * Drops every closed window (and closed session) ending at or before `through`: corrections before it cannot be
   * applied any more. Returns how many rows went.
   */
  evictThrough(through: number): number {
    if (through === -Infinity) return 0;
    let removed = 0;
    for (const [id, b] of this.#buckets) {
      if (!b.closed || b.end === null || b.end > through) continue;
      removed += b.size;
      this.#buckets.delete(id);
    }
    for (const [key, list] of this.#sessions) {
      for (let i = 0; i < list.length; i++) {
        const g = list[i];
        if (!g.closed || g.windowEnd! > through) continue;
        list.splice(i--, 1);
        removed++;
      }
      if (list.length === 0) this.#sessions.delete(key);
    }
    if (removed > 0) this.#dropped++;
    if (through > this.#evictedThrough) this.#evictedThrough = through;
    return removed;
  }

  memoryBytes(): number {
    let b = 0;
    for (const t of this.#buckets.values()) b += t.bytes();
    for (const t of this.#panes.values()) b += t.bytes();
    for (const g of [...this.#sessions.values()].flat()) {
      b += 120 + g.keys.length * 32;
      for (const a of g.accs) b += a.bytes();
    }
    return b;
  }

  /** Plain data for a checkpoint. */
  save(): SavedViewState {
    const stored = [...[...this.#buckets.values()].flatMap((b) => [...b.values()]), ...[...this.#sessions.values()].flat()];
    const saveGroup = (g: Group): SavedGroup => [g.keys, g.windowStart, g.windowEnd, g.closed, g.accs.map((a) => a.save())];
    return {
      groups: stored.map(saveGroup),
      panes: [...this.#panes.values()].flatMap((b) => [...b.values()]).map(saveGroup),
      frozenThrough: this.#frozenThrough,
      maxTime: [...this.#maxTime],
      watermark: this.#watermark,
      evictedThrough: this.#evictedThrough,
      lateCount: this.lateCount,
      late: [...this.late],
    };
  }

  static restore(plan: ViewPlan, partitions: number, saved: SavedViewState, nowMs: number, versions?: VersionCounter): ViewState {
    const s = new ViewState(plan, partitions, versions);
    for (const [keys, start, end, , accs] of saved.panes) {
      let b = s.#panes.get(start!);
      if (b === undefined) {
        b = new GroupTable(plan.aggs, start, end, plan.keys.length);
        s.#panes.set(start!, b);
      }
      b.absorb(groupId(keys), keys, plan.aggs.map((spec, i) => restoreAccumulator(spec, accs[i])), 0);
    }
    s.#frozenThrough = saved.frozenThrough;
    for (const [keys, start, end, closed, accs] of saved.groups) {
      const g: Group = { keys, windowStart: start, windowEnd: end, closed, version: 0, accs: plan.aggs.map((spec, i) => restoreAccumulator(spec, accs[i])) };
      const key = groupId(keys);
      if (plan.window.kind === 'session') {
        const list = s.#sessions.get(key) ?? [];
        list.push(g);
        s.#sessions.set(key, list);
        continue;
      }
      const id = start ?? NO_WINDOW;
      let b = s.#buckets.get(id);
      if (b === undefined) {
        b = new GroupTable(plan.aggs, start, end, plan.keys.length);
        if (closed) b.close(0);
        s.#buckets.set(id, b);
      }
      b.absorb(key, keys, g.accs, 0);
    }
    saved.maxTime.forEach((m, p) => {
      if (p < partitions) s.#maxTime[p] = m;
    });
    s.#lastActiveMs.fill(nowMs);
    s.#watermark = saved.watermark;
    s.#evictedThrough = saved.evictedThrough ?? -Infinity;
    s.lateCount = saved.lateCount;
    // Checkpoints written before late events carried a reason held only closed-window ones.
    for (const l of saved.late) s.late.push(l.reason === undefined ? { ...l, reason: 'window_closed' } : l);
    return s;
  }
}

/** A view's change counter, shared by the states of its partitions. */
export interface VersionCounter {
  value: number;
}

type SavedGroup = [Value[], number | null, number | null, boolean, unknown[]];

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

export interface SavedViewState {
  groups: SavedGroup[];
  panes: SavedGroup[];
  frozenThrough: number;
  maxTime: number[];
  watermark: number;
  /** Absent in checkpoints written before corrections (-Infinity). */
  evictedThrough?: number;
  lateCount: number;
  late: LateEvent[];
}
