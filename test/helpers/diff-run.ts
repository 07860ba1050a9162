/**
 * The two sides of the differential test: the halflife engine driven directly (MemoryLog, ManualClock, no HTTP),
 * straight through or across a checkpoint, a crash and a restore; and DuckDB over the same events. Then the
 * comparison of their answers: exact aggregates equal (float sums within a tiny relative tolerance), sketches
 * within their stated bounds.
 */
import { before, after } from 'node:test';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { encodeEventRecord, ManualClock } from '../../src/core/index.js';
import { Engine, MemoryViewStore, Tables } from '../../src/engine/index.js';
import { MemoryLog } from '../../src/log/index.js';
import { schemaCatalog, type Catalog } from '../../src/sql/index.js';
import { EV_SCHEMA, T0, TABLE_ROWS, type AggGen, type GenEvent, type OutCol, type Rendered } from './diff-grammar.js';

export type Row = Record<string, unknown>;

/**
 * One in-memory DuckDB for a test file: one thread, and division by zero NULL as halflife's is (DuckDB's DOUBLE
 * division is IEEE by default: 1.0 / 0 = Infinity, 0.0 / 0 = NaN). Opened before the file's tests, closed after them;
 * `use` receives the connection.
 */
export function duckPerFile(use: (db: DuckDBConnection) => void): void {
  let instance: DuckDBInstance | undefined;
  let db: DuckDBConnection | undefined;
  before(async () => {
    instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    db = await instance.connect();
    await db.run('SET ieee_floating_point_ops = false');
    use(db);
  });
  after(() => {
    db?.closeSync();
    instance?.closeSync();
  });
}

function append(log: MemoryLog, events: readonly GenEvent[]) {
  return log.append(
    events.map((e) => ({
      key: e.key,
      timestampMs: e.received_at,
      value: encodeEventRecord({ receivedAt: e.received_at, schemaVersion: 1, type: 'ev', eventTimeMs: e.ts, data: e.data as Record<string, unknown> }),
    })),
  );
}

async function drain(engine: Engine) {
  while ((await engine.step()) > 0);
}

/**
 * Runs the view over the events in the order given. `crash`: half the events, a checkpoint, a quarter more applied
 * but never checkpointed, the engine abandoned without close(), a new engine restored from the checkpoint, the rest.
 */
export async function runEngine(sql: string, events: readonly GenEvent[], partitions: number, crash: boolean): Promise<Row[]> {
  const log = new MemoryLog(partitions);
  const store = new MemoryViewStore();
  const tables = new Tables();
  await tables.put('tab', 'id', TABLE_ROWS, true);
  const catalog = (): Catalog => schemaCatalog({ ev: EV_SCHEMA }, tables);
  // The clock stays at T0: no window closes on the wall clock, and max_lateness (1 h) keeps every event on time.
  const clock = new ManualClock(T0);
  const make = () => new Engine({ log, store, tables, catalog, clock });
  let engine = make();
  await engine.start(false);
  await engine.createView('v', sql);
  const engines = [engine];
  try {
    if (!crash) {
      await append(log, events);
      await drain(engine);
    } else {
      const half = Math.floor(events.length / 2);
      const threeQuarters = Math.floor((events.length * 3) / 4);
      await append(log, events.slice(0, half));
      await drain(engine);
      await engine.checkpoint();
      await append(log, events.slice(half, threeQuarters));
      await drain(engine);
      engine = make();
      engines.push(engine);
      await engine.start(false);
      await append(log, events.slice(threeQuarters));
      await drain(engine);
    }
    return engine.rows('v', { limit: 1_000_000, order: 'window_start' });
  } finally {
    // The abandoned engine is the crash; closing it now (after its successor read) only releases it.
    for (const e of engines) await e.close().catch(() => undefined);
  }
}

/** Loads the events and the table into DuckDB (tables ev and tab, replaced). */
export async function loadDuck(db: DuckDBConnection, events: readonly GenEvent[]): Promise<void> {
  await db.run('CREATE OR REPLACE TABLE ev (_ra BIGINT, _et BIGINT, _key VARCHAR, s VARCHAR, n BIGINT, x DOUBLE, b BOOLEAN, j VARCHAR)');
  const a = await db.createAppender('ev');
  for (const e of events) {
    a.appendBigInt(BigInt(e.received_at));
    a.appendBigInt(BigInt(e.ts ?? e.received_at));
    if (e.key === undefined) a.appendNull();
    else a.appendVarchar(e.key);
    const d = e.data;
    if (d.s === undefined || d.s === null) a.appendNull();
    else a.appendVarchar(d.s);
    if (d.n === undefined || d.n === null) a.appendNull();
    else a.appendBigInt(BigInt(d.n));
    if (d.x === undefined || d.x === null) a.appendNull();
    else a.appendDouble(d.x);
    if (d.b === undefined || d.b === null) a.appendNull();
    else a.appendBoolean(d.b);
    if (d.j === undefined || d.j === null) a.appendNull();
    else a.appendVarchar(JSON.stringify(d.j));
    a.endRow();
  }
  a.closeSync();
  const count = await db.runAndReadAll("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'tab'");
  if (Number(count.getRowsJS()[0][0]) === 0) {
    await db.run('CREATE TABLE tab (id BIGINT, name VARCHAR, tier VARCHAR)');
    const t = await db.createAppender('tab');
    for (const r of TABLE_ROWS) {
      t.appendBigInt(BigInt(r.id));
      t.appendVarchar(r.name);
      if (r.tier === null) t.appendNull();
      else t.appendVarchar(r.tier);
      t.endRow();
    }
    t.closeSync();
  }
}

const plain = (v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v);

export async function runDuck(db: DuckDBConnection, query: string): Promise<Row[]> {
  const reader = await db.runAndReadAll(query);
  return reader.getRowObjectsJS().map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)])));
}

/** Canonical text of a key value: numbers by value (-0 is 0), JSON values as their JSON text. */
function keyText(v: unknown, col: OutCol, side: 'hl' | 'db'): string {
  if (v === null || v === undefined) return 'NULL';
  if (col.ty === 'json') return side === 'hl' ? JSON.stringify(v) : String(v);
  if (col.ty === 'num') return String(Number(v) === 0 ? 0 : Number(v));
  return JSON.stringify(v);
}

function rowId(r: Row, cols: readonly OutCol[], side: 'hl' | 'db'): string {
  return JSON.stringify([plain(r.window_start) ?? null, plain(r.window_end) ?? null, ...cols.filter((c) => c.role === 'key').map((c) => keyText(r[c.name], c, side))]);
}

const close = (a: number, b: number, scale: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b), scale);

/** Standard error of HLL with precision p, 1.04 / sqrt(2^p) (docs/sql.md: 0.81 % at the default 14). */
export const hllStdError = (p: number) => 1.04 / Math.sqrt(2 ** p);

/** Why the halflife value `h` of aggregate column `c` disagrees with DuckDB's row `d`, or undefined. */
function aggMismatch(c: OutCol, a: AggGen, h: unknown, d: Row): string | undefined {
  const ref = d[c.name];
  const num = (x: unknown) => (x === null || x === undefined ? null : Number(x));
  switch (a.kind) {
    case 'count_star':
    case 'count':
    case 'count_distinct':
      return num(h) === num(ref) ? undefined : `expected ${String(ref)}`;
    case 'sum':
    case 'avg':
    case 'range': {
      if (ref === null || h === null) return ref === h ? undefined : `expected ${String(ref)}`;
      return close(Number(h), Number(ref), Number(d[`${c.name}#abs`])) ? undefined : `expected ${String(ref)} (tolerance 1e-9 relative)`;
    }
    case 'min':
    case 'max': {
      if (ref === null || h === null) return ref === h ? undefined : `expected ${JSON.stringify(ref)}`;
      if (c.ty === 'num') return close(Number(h), Number(ref), 0) ? undefined : `expected ${String(ref)}`;
      return h === ref ? undefined : `expected ${JSON.stringify(ref)}`;
    }
    case 'approx_count_distinct': {
      const n = Number(ref);
      const est = Number(h);
      // Six standard errors, and one value either way for tiny counts (HLL's estimate is not an integer).
      const bound = 6 * hllStdError(a.param ?? 14) * n + 1;
      return Math.abs(est - n) <= bound ? undefined : `HLL estimate ${est} of ${n} distinct is outside ±${bound.toFixed(2)}`;
    }
    case 'approx_percentile': {
      if (ref === null || h === null) return ref === h ? undefined : `expected ${String(ref)}`;
      const v = Number(ref);
      const acc = a.accuracy ?? 0.01;
      // Beyond its bucket budget (four orders of magnitude at any accuracy) the sketch merges its lowest buckets and low
      // ranks lose the stated accuracy: documented in docs/sql.md, so such spans are not checked here.
      if (ddsketchMayCollapse(acc, d, c.name)) return undefined;
      return Math.abs(Number(h) - v) <= acc * Math.abs(v) + 1e-9 ? undefined : `DDSketch ${String(h)} is not within ${acc} of the value at rank floor(q(n-1)), ${v}`;
    }
    case 'top_k':
      return topKMismatch(h, ref, a.param!, c.ty);
  }
}

/**
 * Whether the values of one sign span more buckets than a DDSketch of this accuracy keeps (src/sketch/ddsketch.ts:
 * max(2048, ln(1e4) / ln(gamma)) per sign), so that its lowest buckets may have collapsed.
 */
export function ddsketchMayCollapse(accuracy: number, d: Row, name: string): boolean {
  const lnGamma = Math.log((1 + accuracy) / (1 - accuracy));
  const budget = Math.max(2048, Math.ceil(Math.log(1e4) / lnGamma));
  const span = (lo: unknown, hi: unknown) => (lo === null || hi === null || lo === undefined || hi === undefined ? 0 : Math.log(Math.max(Number(hi), 1e-9) / Math.max(Number(lo), 1e-9)) / lnGamma + 2);
  return Math.max(span(d[`${name}#plo`], d[`${name}#phi`]), span(d[`${name}#nlo`], d[`${name}#nhi`])) > budget;
}

/** Space-Saving's guarantees: each reported count within [count - error, count] of the truth; nothing better left out. */
function topKMismatch(h: unknown, ref: unknown, k: number, ty: OutCol['ty']): string | undefined {
  const truth = new Map<string, number>();
  for (const e of (ref ?? []) as { key: unknown; value: unknown }[]) {
    const text = ty === 'num' ? String(Number(e.key)) : String(e.key);
    truth.set(text, (truth.get(text) ?? 0) + Number(e.value));
  }
  const list = h as { value: string; count: number; error: number }[];
  if (!Array.isArray(list)) return `not a list: ${JSON.stringify(h)}`;
  if (list.length !== Math.min(k, truth.size)) return `${list.length} entries for k = ${k} and ${truth.size} distinct values`;
  for (let i = 1; i < list.length; i++) if (list[i].count > list[i - 1].count) return 'not in descending count order';
  for (const e of list) {
    const t = truth.get(e.value);
    if (t === undefined) return `value ${JSON.stringify(e.value)} never occurs`;
    if (!(e.count - e.error <= t && t <= e.count)) return `${JSON.stringify(e.value)}: true count ${t} not in [${e.count - e.error}, ${e.count}]`;
  }
  if (list.length === k) {
    const reported = new Set(list.map((e) => e.value));
    const floor = list[list.length - 1].count;
    for (const [v, t] of truth) if (!reported.has(v) && t > floor) return `${JSON.stringify(v)} (count ${t}) left out, above the last reported count ${floor}`;
  }
  return undefined;
}

/** Every difference between halflife's rows and DuckDB's, as readable lines (empty when they agree). */
export function compareRows(r: Rendered, hl: readonly Row[], db: readonly Row[]): string[] {
  const problems: string[] = [];
  const byId = new Map<string, Row>();
  for (const d of db) byId.set(rowId(d, r.cols, 'db'), d);
  const seen = new Set<string>();
  for (const h of hl) {
    const id = rowId(h, r.cols, 'hl');
    if (seen.has(id)) problems.push(`halflife has row ${id} twice`);
    seen.add(id);
    const d = byId.get(id);
    if (d === undefined) {
      problems.push(`halflife row ${id} is not in DuckDB's answer`);
      continue;
    }
    for (const c of r.cols) {
      if (c.role !== 'agg') continue;
      const why = aggMismatch(c, c.agg!, h[c.name], d);
      if (why !== undefined) problems.push(`row ${id} column ${c.name} = ${JSON.stringify(h[c.name])}: ${why}`);
    }
  }
  for (const [id] of byId) if (!seen.has(id)) problems.push(`DuckDB row ${id} is missing from halflife's answer`);
  return problems;
}
