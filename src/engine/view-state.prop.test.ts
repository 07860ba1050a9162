import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fieldsFromJsonSchema, planView, type Catalog, type EventRow } from '../sql/index.js';
import { ViewState } from './view-state.js';

const catalog: Catalog = {
  streamNames: () => ['e'],
  streamFields: () => fieldsFromJsonSchema({ type: 'object', properties: { k: { type: 'string' }, v: { type: 'integer' }, u: { type: 'string' } } }),
  tableNames: () => [],
  tableColumns: () => undefined,
};

interface Ev {
  k: string;
  v: number | null;
  u: string;
  t: number;
  p: number;
}

const eventsArb = fc.array(
  fc.record({
    k: fc.constantFrom('a', 'b', 'c'),
    v: fc.option(fc.integer({ min: -50, max: 50 }), { nil: null, freq: 8 }),
    u: fc.constantFrom('u1', 'u2', 'u3', 'u4', 'u5'),
    t: fc.integer({ min: 0, max: 600 }),
    p: fc.integer({ min: 0, max: 1 }),
  }),
  { maxLength: 120 },
);

type WindowCase = { sql: string; windows: (t: number) => [number, number][] | 'session' | 'none'; gap?: number };

const AGGS = 'COUNT(*) AS n, SUM(v) AS s, AVG(v) AS av, MIN(v) AS lo, MAX(v) AS hi, COUNT(v) AS cv, COUNT(DISTINCT u) AS du';
const CASES: Record<string, WindowCase> = {
  none: { sql: `SELECT k, ${AGGS} FROM e GROUP BY k`, windows: () => 'none' },
  tumble: {
    sql: `SELECT k, ${AGGS} FROM e GROUP BY k, TUMBLE(event_time, INTERVAL '100' MILLISECOND)`,
    windows: (t) => [[Math.floor(t / 100) * 100, Math.floor(t / 100) * 100 + 100]],
  },
  hop: {
    sql: `SELECT k, ${AGGS} FROM e GROUP BY k, HOP(event_time, INTERVAL '40' MILLISECOND, INTERVAL '100' MILLISECOND)`,
    windows: (t) => {
      const out: [number, number][] = [];
      for (let s = Math.floor(t / 40) * 40; s > t - 100; s -= 40) out.push([s, s + 100]);
      return out;
    },
  },
  session: { sql: `SELECT k, ${AGGS} FROM e GROUP BY k, SESSION(event_time, INTERVAL '30' MILLISECOND)`, windows: () => 'session', gap: 30 },
};

/** The plain oracle: which events count (by the watermark rule), the windows they fall in, the aggregates. */
function oracle(c: WindowCase, events: Ev[], latenessMs: number) {
  const maxPerPartition = [-Infinity, -Infinity];
  const rows = new Map<string, Ev[]>();
  const bounds = new Map<string, [number | null, number | null]>();
  let watermark = -Infinity;
  let late = 0;
  const accepted: Ev[] = [];
  for (const e of events) {
    const w = c.windows(e.t);
    if (w === 'none') {
      accepted.push(e);
      const id = `none|${e.k}`;
      rows.set(id, [...(rows.get(id) ?? []), e]);
      bounds.set(id, [null, null]);
    } else if (w === 'session') {
      if (e.t < watermark) late++;
      else accepted.push(e);
    } else {
      const open = w.filter(([, end]) => end > watermark);
      if (open.length === 0) late++;
      for (const [s, end] of open) {
        const id = `${s}|${e.k}`;
        rows.set(id, [...(rows.get(id) ?? []), e]);
        bounds.set(id, [s, end]);
      }
    }
    maxPerPartition[e.p] = Math.max(maxPerPartition[e.p], e.t);
    const active = maxPerPartition.filter((m) => m !== -Infinity);
    watermark = Math.max(watermark, Math.min(...active) - latenessMs);
  }
  if (c.windows(0) === 'session') {
    for (const k of ['a', 'b', 'c']) {
      const mine = accepted.filter((e) => e.k === k).sort((x, y) => x.t - y.t);
      let cur: Ev[] = [];
      let end = -Infinity;
      const flush = () => {
        if (cur.length === 0) return;
        const s = cur[0].t;
        rows.set(`${s}|${k}`, cur);
        bounds.set(`${s}|${k}`, [s, end]);
      };
      for (const e of mine) {
        if (e.t >= end) {
          flush();
          cur = [];
        }
        cur.push(e);
        end = Math.max(end, e.t + c.gap!);
      }
      flush();
    }
  }
  const out = [...rows].map(([id, evs]) => {
    const vs = evs.map((e) => e.v).filter((v): v is number => v !== null);
    const [ws, we] = bounds.get(id)!;
    return {
      window_start: ws,
      window_end: we,
      k: evs[0].k,
      n: evs.length,
      s: vs.length === 0 ? null : vs.reduce((a, b) => a + b, 0),
      av: vs.length === 0 ? null : vs.reduce((a, b) => a + b, 0) / vs.length,
      lo: vs.length === 0 ? null : Math.min(...vs),
      hi: vs.length === 0 ? null : Math.max(...vs),
      cv: vs.length,
      du: new Set(evs.map((e) => e.u)).size,
    };
  });
  return { rows: sortRows(out), late };
}

function sortRows<T extends { k: unknown; window_start: unknown }>(rows: T[]): T[] {
  return rows.sort((a, b) => String(a.k).localeCompare(String(b.k)) || Number(a.window_start) - Number(b.window_start));
}

for (const [name, c] of Object.entries(CASES)) {
  test(`property: ${name} windows with every exact aggregate match the oracle, including out-of-order and late events`, () => {
    fc.assert(
      fc.property(eventsArb, fc.integer({ min: 0, max: 150 }), (events, lateness) => {
        const plan = planView(`CREATE VIEW v WITH (max_lateness = '${lateness}ms') AS ${c.sql}`, catalog);
        const state = new ViewState(plan, 2);
        events.forEach((e, i) => {
          const row: EventRow = { type: 'e', data: { k: e.k, v: e.v, u: e.u }, key: undefined, received_at: e.t, event_time: e.t, partition: e.p, offset: i, joined: [] };
          state.apply(row, plan.keys.map((k) => k.eval(row)), 0);
          state.advance(0, false);
        });
        const expected = oracle(c, events, lateness);
        const got = sortRows(
          [...state.groups()].map((g) => {
            const aggs = g.accs.map((a) => a.result());
            const r: Record<string, unknown> = { window_start: g.windowStart, window_end: g.windowEnd };
            for (const o of plan.outputs) r[o.name] = o.eval(g.keys, aggs, g.windowStart, g.windowEnd);
            return r as { k: unknown; window_start: unknown };
          }),
        );
        assert.deepEqual(got, expected.rows);
        assert.equal(state.lateCount, expected.late);
      }),
      { numRuns: 200 },
    );
  });
}

test('property: checkpoint (save, restore) in the middle changes nothing', () => {
  fc.assert(
    fc.property(eventsArb, fc.nat(), fc.constantFrom(...Object.keys(CASES)), (events, cut, name) => {
      const plan = planView(`CREATE VIEW v WITH (max_lateness = '20ms') AS ${CASES[name].sql}`, catalog);
      const feed = (s: ViewState, evs: Ev[], base: number) =>
        evs.forEach((e, i) => {
          const row: EventRow = { type: 'e', data: { k: e.k, v: e.v, u: e.u }, key: undefined, received_at: e.t, event_time: e.t, partition: e.p, offset: base + i, joined: [] };
          s.apply(row, plan.keys.map((k) => k.eval(row)), 0);
          s.advance(0, false);
        });
      const straight = new ViewState(plan, 2);
      feed(straight, events, 0);
      const at = events.length === 0 ? 0 : cut % (events.length + 1);
      const first = new ViewState(plan, 2);
      feed(first, events.slice(0, at), 0);
      const restored = ViewState.restore(plan, 2, structuredClone(first.save()), 0);
      feed(restored, events.slice(at), at);
      const dump = (s: ViewState) => [...s.groups()].map((g) => JSON.stringify([g.keys, g.windowStart, g.windowEnd, g.closed, g.accs.map((a) => a.result())])).sort();
      assert.deepEqual(dump(restored), dump(straight));
      assert.equal(restored.lateCount, straight.lateCount);
    }),
    { numRuns: 200 },
  );
});

test('property: approximate aggregates per window stay within their bounds of the oracle', () => {
  const sql = `CREATE VIEW v WITH (max_lateness = '1000ms') AS SELECT k, APPROX_COUNT_DISTINCT(u) AS adu, APPROX_PERCENTILE(v, 0.5) AS med, TOP_K(u, 2) AS top, COUNT(*) AS n
    FROM e GROUP BY k, TUMBLE(event_time, INTERVAL '100' MILLISECOND)`;
  fc.assert(
    fc.property(eventsArb, (events) => {
      const plan = planView(sql, catalog);
      const state = new ViewState(plan, 2);
      events.forEach((e, i) => {
        const row: EventRow = { type: 'e', data: { k: e.k, v: e.v, u: e.u }, key: undefined, received_at: e.t, event_time: e.t, partition: e.p, offset: i, joined: [] };
        state.apply(row, plan.keys.map((k) => k.eval(row)), 0);
      });
      for (const g of state.groups()) {
        const mine = events.filter((e) => e.k === g.keys[0] && e.t >= g.windowStart! && e.t < g.windowEnd!);
        const [adu, med, top, n] = g.accs.map((a) => a.result()) as [number, number | null, { value: string; count: number; error: number }[], number];
        assert.equal(n, mine.length);
        assert.equal(adu, new Set(mine.map((e) => e.u)).size, 'HyperLogLog is exact for small sets');
        const vs = mine.map((e) => e.v).filter((v): v is number => v !== null).sort((a, b) => a - b);
        if (vs.length === 0) assert.equal(med, null);
        else {
          const exact = vs[Math.floor(0.5 * (vs.length - 1))];
          assert.ok(Math.abs(med! - exact) <= 0.01 * Math.abs(exact) + 1e-9, `median ${med} vs ${exact}`);
        }
        for (const t of top) {
          const real = mine.filter((e) => e.u === t.value).length;
          assert.ok(t.count - t.error <= real && real <= t.count);
        }
      }
    }),
    { numRuns: 200 },
  );
});
