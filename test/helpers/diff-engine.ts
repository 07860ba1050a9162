/**
 * A halflife engine harness for the differential tests that need more than `runEngine` (helpers/diff-run.ts) gives:
 * events on chosen partitions, several engines over disjoint partitions (partial groups merged at read time, as
 * engine workers are), a chosen read batch size, events fed one at a time, queries over views (`runQuery`, what
 * `POST /v1/query` runs in the engine worker), a view's late table, and a checkpoint + crash + restore.
 * Everything runs in-process on a MemoryLog and a ManualClock held at T0 (no window closes on the wall clock).
 */
import { encodeEventRecord, ManualClock } from '../../src/core/index.js';
import { Engine, MemoryViewStore, Tables, type LateEvent, type PartialGroup } from '../../src/engine/index.js';
import { MemoryLog } from '../../src/log/index.js';
import { runQuery, type QueryResult } from '../../src/query/index.js';
import { schemaCatalog, type Catalog } from '../../src/sql/index.js';
import { EV_SCHEMA, T0, TABLE_ROWS, type GenEvent } from './diff-grammar.js';

/** An event with the partition it is appended to (default: by key, else partition 0). */
export interface PlacedEvent extends GenEvent {
  partition?: number;
}

export interface HarnessOptions {
  partitions: number;
  /** Partitions of each engine (default: one engine owning all). */
  split?: number[][];
  /** Records read per partition per engine step (the engine's default is 2,000). */
  batchRecords?: number;
}

export class Harness {
  readonly log: MemoryLog;
  readonly tables = new Tables();
  readonly clock = new ManualClock(T0);
  readonly #options: HarnessOptions;
  /** One store per engine: a restored engine reads its predecessor's checkpoints. */
  readonly #stores: MemoryViewStore[];
  engines: Engine[] = [];
  readonly #all: Engine[] = [];

  constructor(options: HarnessOptions) {
    this.#options = options;
    this.log = new MemoryLog(options.partitions);
    this.#stores = (options.split ?? [undefined]).map(() => new MemoryViewStore());
  }

  #catalog = (): Catalog => schemaCatalog({ ev: EV_SCHEMA }, this.tables);

  #make(i: number): Engine {
    const owned = this.#options.split?.[i];
    const e = new Engine({ log: this.log, store: this.#stores[i], tables: this.tables, catalog: this.#catalog, clock: this.clock, batchRecords: this.#options.batchRecords, ownedPartitions: owned });
    this.#all.push(e);
    return e;
  }

  /** Starts the engines and creates the view in each. */
  async start(sql: string): Promise<void> {
    await this.tables.put('tab', 'id', TABLE_ROWS, true);
    this.engines = this.#stores.map((_s, i) => this.#make(i));
    for (const e of this.engines) {
      await e.start(false);
      await e.createView('v', sql);
    }
  }

  async append(events: readonly PlacedEvent[]): Promise<void> {
    await this.log.append(
      events.map((e) => ({
        key: e.key,
        partition: e.partition ?? (e.key === undefined ? 0 : undefined),
        timestampMs: e.received_at,
        value: encodeEventRecord({ receivedAt: e.received_at, schemaVersion: 1, type: 'ev', eventTimeMs: e.ts, data: e.data as Record<string, unknown> }),
      })),
    );
  }

  /** Applies every record in the log (each engine steps until it reads nothing). */
  async drain(): Promise<void> {
    for (const e of this.engines) while ((await e.step()) > 0);
  }

  /** Checkpoints every engine, then (after `between` more work) abandons them and restores new ones. */
  async crash(between: () => Promise<void>): Promise<void> {
    for (const e of this.engines) await e.checkpoint();
    await between();
    this.engines = this.#stores.map((_s, i) => this.#make(i));
    for (const e of this.engines) await e.start(false);
  }

  /** The view's rows, merged over the engines. */
  rows(): Record<string, unknown>[] {
    const [first, ...rest] = this.engines;
    return first.rows('v', { limit: 10_000_000, order: 'window_start' }, rest.map((e) => e.partials('v')));
  }

  /** A query over the view, merged over the engines (as the engine host does for POST /v1/query). */
  query(sql: string): Promise<QueryResult> {
    const [first, ...rest] = this.engines;
    return runQuery(first, sql, rest.map((e): PartialGroup[] => e.partials('v')));
  }

  /** The late table of every engine, and the late count. */
  late(): { count: number; recent: LateEvent[] } {
    const parts = this.engines.map((e) => e.late('v'));
    return { count: parts.reduce((a, p) => a + p.count, 0), recent: parts.flatMap((p) => p.recent) };
  }

  async close(): Promise<void> {
    for (const e of this.#all) await e.close().catch(() => undefined);
  }
}

/** A small deterministic PRNG (mulberry32), so one fast-check integer stands for thousands of random values. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
