import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fieldsFromJsonSchema, planView, type Catalog, type EventRow } from '../sql/index.js';
import { ViewState } from './view-state.js';

/**
 * A replayed dead letter is a correction of the past: it must update the window it belongs to while the view
 * still holds that window (open or closed), and go to the late table only when that window is gone, saying why.
 */
const catalog: Catalog = {
  streamNames: () => ['e'],
  streamFields: () => fieldsFromJsonSchema({ type: 'object', properties: { k: { type: 'string' }, v: { type: 'integer' } } }),
  tableNames: () => [],
  tableColumns: () => undefined,
};

const WINDOWS = {
  tumble: (time: string) => `TUMBLE(${time}, INTERVAL '100' MILLISECOND)`,
  hop: (time: string) => `HOP(${time}, INTERVAL '40' MILLISECOND, INTERVAL '100' MILLISECOND)`,
  session: (time: string) => `SESSION(${time}, INTERVAL '30' MILLISECOND)`,
} as const;

function view(window: keyof typeof WINDOWS, time: 'received_at' | 'event_time', options = `max_lateness = '10ms'`) {
  return planView(`CREATE VIEW v WITH (${options}) AS SELECT k, COUNT(*) AS n, SUM(v) AS s FROM e GROUP BY k, ${WINDOWS[window](time)}`, catalog);
}

interface Ev {
  k: string;
  v: number;
  t: number;
  p: number;
  replay: boolean;
}

function feed(state: ViewState, events: readonly Ev[], time: 'received_at' | 'event_time', base = 0): void {
  const plan = state.plan;
  events.forEach((e, i) => {
    // The other time column is far away: the view must use the one it names.
    const row: EventRow = {
      type: 'e', data: { k: e.k, v: e.v }, key: undefined,
      received_at: time === 'received_at' ? e.t : 1e12, event_time: time === 'event_time' ? e.t : 1e12,
      partition: e.p, offset: base + i, replay: e.replay, joined: [],
    };
    state.apply(row, plan.keys.map((k) => k.eval(row)), 0);
    state.advance(0, false);
  });
}

function rows(state: ViewState): string[] {
  return [...state.groups()].map((g) => JSON.stringify([g.keys, g.windowStart, g.windowEnd, g.accs.map((a) => a.result())])).sort();
}

/** Every event in every window it belongs to: what the view holds when no event is late and every replay lands. */
function batch(window: keyof typeof WINDOWS, events: readonly Ev[]): string[] {
  const groups = new Map<string, { k: string; ws: number; we: number; evs: Ev[] }>();
  const put = (k: string, ws: number, we: number, e: Ev) => {
    const id = `${k}|${ws}`;
    const g = groups.get(id) ?? { k, ws, we, evs: [] };
    g.evs.push(e);
    groups.set(id, g);
  };
  if (window === 'session') {
    for (const k of new Set(events.map((e) => e.k))) {
      const mine = events.filter((e) => e.k === k).sort((a, b) => a.t - b.t);
      let start = 0;
      let end = -Infinity;
      let cur: Ev[] = [];
      const flush = () => cur.length > 0 && cur.forEach((e) => put(k, start, end, e));
      for (const e of mine) {
        if (e.t >= end) {
          flush();
          cur = [];
          start = e.t;
        }
        cur.push(e);
        end = Math.max(end, e.t + 30);
      }
      flush();
    }
  } else {
    for (const e of events) {
      if (window === 'tumble') put(e.k, Math.floor(e.t / 100) * 100, Math.floor(e.t / 100) * 100 + 100, e);
      else for (let s = Math.floor(e.t / 40) * 40; s > e.t - 100; s -= 40) put(e.k, s, s + 100, e);
    }
  }
  return [...groups.values()].map((g) => JSON.stringify([[g.k], g.ws, g.we, [g.evs.length, g.evs.reduce((a, e) => a + e.v, 0)]])).sort();
}

for (const window of ['tumble', 'hop', 'session'] as const) {
  for (const time of ['received_at', 'event_time'] as const) {
    test(`property (${window}, ${time}): replays land in their windows, open or closed, as if they had never been late`, () => {
      // Live events arrive in time order (none late); replays come at any point with any past time.
      const arb = fc.array(
        fc.record({ k: fc.constantFrom('a', 'b'), v: fc.integer({ min: 1, max: 9 }), dt: fc.integer({ min: 0, max: 40 }), p: fc.integer({ min: 0, max: 1 }), replay: fc.boolean(), back: fc.integer({ min: 0, max: 500 }) }),
        { maxLength: 80 },
      );
      fc.assert(
        fc.property(arb, fc.nat(), (raw, cut) => {
          let now = 0;
          const events: Ev[] = raw.map((r) => {
            if (r.replay) return { k: r.k, v: r.v, t: Math.max(0, now - r.back), p: r.p, replay: true };
            now += r.dt;
            return { k: r.k, v: r.v, t: now, p: r.p, replay: false };
          });
          const plan = view(window, time);
          const state = new ViewState(plan, 2);
          feed(state, events, time);
          assert.deepEqual(rows(state), batch(window, events));
          assert.equal(state.lateCount, 0);
          // The same across a checkpoint.
          const at = events.length === 0 ? 0 : cut % (events.length + 1);
          const first = new ViewState(plan, 2);
          feed(first, events.slice(0, at), time);
          const restored = ViewState.restore(plan, 2, structuredClone(first.save()), 0);
          feed(restored, events.slice(at), time, at);
          assert.deepEqual(rows(restored), rows(state));
        }),
        { numRuns: 150 },
      );
    });
  }
}

test('a replay into a closed window changes its row, which stays final and gets a new version for live streams', () => {
  const plan = view('tumble', 'received_at');
  const state = new ViewState(plan, 1);
  feed(state, [{ k: 'a', v: 1, t: 5, p: 0, replay: false }, { k: 'a', v: 1, t: 500, p: 0, replay: false }], 'received_at');
  const before = [...state.groups()].find((g) => g.windowStart === 0)!;
  assert.equal(before.closed, true);
  const version = before.version;
  feed(state, [{ k: 'a', v: 7, t: 50, p: 0, replay: true }], 'received_at', 2);
  const after = [...state.groups()].find((g) => g.windowStart === 0)!;
  assert.deepEqual(after.accs.map((a) => a.result()), [2, 8]);
  assert.equal(after.closed, true);
  assert.ok(after.version > version);
  assert.equal(state.lateCount, 0);
  // A live event just as old is late, as before: only corrections reach closed windows.
  feed(state, [{ k: 'a', v: 1, t: 60, p: 0, replay: false }], 'received_at', 3);
  assert.equal(state.lateCount, 1);
  assert.equal(state.late[0].reason, 'window_closed');
});

test('a replay whose window is past the retention or was evicted for memory goes to the late table with that reason', () => {
  for (const window of ['tumble', 'hop', 'session'] as const) {
    const plan = view(window, 'event_time', `max_lateness = '10ms', retention = '1s'`);
    const state = new ViewState(plan, 1);
    feed(state, [{ k: 'a', v: 1, t: 5, p: 0, replay: false }, { k: 'a', v: 1, t: 2000, p: 0, replay: false }, { k: 'a', v: 1, t: 5000, p: 0, replay: false }], 'event_time');
    feed(state, [{ k: 'a', v: 1, t: 6, p: 0, replay: true }], 'event_time', 3);
    assert.equal(state.lateCount, 1, window);
    assert.equal(state.late.at(-1)!.reason, 'window_expired', window);

    const big = new ViewState(view(window, 'event_time'), 1);
    feed(big, [{ k: 'a', v: 1, t: 5, p: 0, replay: false }, { k: 'a', v: 1, t: 300, p: 0, replay: false }, { k: 'b', v: 1, t: 600, p: 0, replay: false }], 'event_time');
    assert.ok(big.evictClosed(big.memoryBytes(), 0) > 0, window);
    feed(big, [{ k: 'a', v: 1, t: 6, p: 0, replay: true }], 'event_time', 3);
    assert.equal(big.late.at(-1)?.reason, 'window_evicted', window);
    // The eviction horizon survives a checkpoint.
    const restored = ViewState.restore(big.plan, 1, structuredClone(big.save()), 0);
    feed(restored, [{ k: 'a', v: 1, t: 7, p: 0, replay: true }], 'event_time', 4);
    assert.equal(restored.late.at(-1)?.reason, 'window_evicted', window);
  }
});
