import { createAccumulator, type Accumulator, type Engine, type PartialGroup } from '../engine/index.js';
import { HalflifeError } from '../core/index.js';
import { compareForOrder, planQuery, type EventRow, type QueryCatalog, type Value } from '../sql/index.js';

export interface QueryResult {
  readonly columns: readonly string[];
  readonly rows: readonly Record<string, Value>[];
}

const DEFAULT_LIMIT = 10_000;

/** The views and their columns as queries see them. */
export function queryCatalog(engine: Engine): QueryCatalog {
  return {
    viewNames: () => engine.names(),
    viewColumns: (name) => {
      if (!engine.names().includes(name)) return undefined;
      const plan = engine.plan(name);
      return [
        { name: 'window_start', agg: undefined },
        { name: 'window_end', agg: undefined },
        ...plan.outputs.map((o) => ({ name: o.name, agg: o.agg === undefined ? undefined : plan.aggs[o.agg] })),
      ];
    },
    viewWindow: (name) => (engine.names().includes(name) ? engine.plan(name).window : undefined),
  };
}

/** The view a query reads (to gather its partial groups from other engines first). */
export function queryView(engine: Engine, sql: string): string {
  return planQuery(sql, queryCatalog(engine)).view;
}

export interface QueryOptions {
  /** Past this the query stops with SQL_TIMEOUT (default 10 s). */
  readonly timeoutMs?: number;
  /** The longest stretch a query runs before it lets the engine apply events and answer reads (default 10 ms). */
  readonly sliceMs?: number;
}

/**
 * Runs in slices: the engine's thread also applies events and answers every read, so a query yields to them every
 * `sliceMs` and gives up at its deadline, instead of holding the views up for as long as it runs.
 */
class Slicer {
  readonly #deadline: number;
  readonly #sliceMs: number;
  readonly #timeoutMs: number;
  #sliceStart = performance.now();

  constructor(o: QueryOptions) {
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#sliceMs = o.sliceMs ?? 10;
    this.#deadline = this.#sliceStart + this.#timeoutMs;
  }

  /** After each row: whether the slice is spent (then the caller awaits `pause`). A clock read costs tens of ns. */
  due(): boolean {
    return performance.now() - this.#sliceStart >= this.#sliceMs;
  }

  async pause(): Promise<void> {
    if (performance.now() >= this.#deadline) throw new HalflifeError('SQL_TIMEOUT', { timeoutMs: this.#timeoutMs, setting: 'engine.queryTimeoutMs', hint: 'narrow it with WHERE (window_start, keys) or LIMIT, or raise the limit' });
    await new Promise((resolve) => setImmediate(resolve));
    if (performance.now() >= this.#deadline) throw new HalflifeError('SQL_TIMEOUT', { timeoutMs: this.#timeoutMs, setting: 'engine.queryTimeoutMs', hint: 'narrow it with WHERE (window_start, keys) or LIMIT, or raise the limit' });
    this.#sliceStart = performance.now();
  }
}

/**
 * Runs `SELECT … FROM <view> …` (POST /v1/query). `foreign` are the view's partial groups from engines owning
 * other partitions, merged in first.
 */
export async function runQuery(engine: Engine, sql: string, foreign: readonly (readonly PartialGroup[])[] = [], options: QueryOptions = {}): Promise<QueryResult> {
  const slicer = new Slicer(options);
  const plan = planQuery(sql, queryCatalog(engine));
  const rows: Record<string, Value>[] = [];
  const base = engine.snapshot(plan.view, foreign);
  const asRow = (values: Record<string, Value>, states: Record<string, Accumulator>): EventRow => ({
    type: plan.view,
    data: values as Record<string, unknown>,
    key: undefined,
    received_at: 0,
    event_time: 0,
    partition: 0,
    offset: 0,
    joined: [],
    states,
  });
  let columns: string[];
  if (plan.aggregate === undefined) {
    columns = plan.columns.map((c) => c.name);
    for (const { values, states } of base) {
      if (slicer.due()) await slicer.pause();
      const row = asRow(values, states);
      if (plan.filter !== undefined && plan.filter(row) !== true) continue;
      const out: Record<string, Value> = {};
      for (const c of plan.columns) out[c.name] = c.eval(row);
      rows.push(out);
    }
  } else {
    const { keys, aggs, outputs, having } = plan.aggregate;
    columns = outputs.map((o) => o.name);
    const groups = new Map<string, { keys: Value[]; accs: Accumulator[] }>();
    for (const { values, states } of base) {
      if (slicer.due()) await slicer.pause();
      const row = asRow(values, states);
      if (plan.filter !== undefined && plan.filter(row) !== true) continue;
      const k = keys.map((key) => key.eval(row));
      const id = JSON.stringify(k);
      let g = groups.get(id);
      if (g === undefined) {
        g = { keys: k, accs: aggs.map(createAccumulator) };
        groups.set(id, g);
      }
      aggs.forEach((spec, i) => {
        if (spec.merge === true) {
          const state = states[spec.argColumn!];
          if (state !== undefined) g!.accs[i].merge(state);
        } else g!.accs[i].add(spec.arg === undefined ? null : spec.arg(row));
      });
    }
    if (groups.size === 0 && keys.length === 0) groups.set('[]', { keys: [], accs: aggs.map(createAccumulator) });
    for (const g of groups.values()) {
      if (slicer.due()) await slicer.pause();
      const results = g.accs.map((a) => a.result());
      if (having !== undefined && having(g.keys, results, null, null) !== true) continue;
      const out: Record<string, Value> = {};
      for (const o of outputs) out[o.name] = o.eval(g.keys, results, null, null);
      rows.push(out);
    }
  }
  if (plan.orderBy.length > 0) {
    rows.sort((a, b) => {
      for (const o of plan.orderBy) {
        const c = compareForOrder(a[o.column], b[o.column]);
        if (c !== 0) return o.desc ? -c : c;
      }
      return 0;
    });
  }
  return { columns, rows: rows.slice(0, plan.limit ?? DEFAULT_LIMIT) };
}
