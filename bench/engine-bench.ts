/**
 * Engine benchmarks: throughput from the log with the three views of issue #3, view memory for many keys, and
 * freshness (received_at -> visible in a view) through a running server under load.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEventRecord, ManualClock } from '../src/core/index.js';
import { Engine, MemoryViewStore, Tables, ViewState } from '../src/engine/index.js';
import { SegmentLog } from '../src/log/index.js';
import { planView, schemaCatalog, type Catalog, type EventRow } from '../src/sql/index.js';
import { HalflifeClient } from '../sdk/index.js';
import { spawnServer } from '../test/helpers/child-server.js';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';

export const ENGINE_VIEWS: Record<string, string> = {
  per_type_1m: "CREATE VIEW per_type_1m AS SELECT type, COUNT(*) AS n FROM events GROUP BY type, TUMBLE(received_at, INTERVAL '1' MINUTE)",
  readers_5m:
    "CREATE VIEW readers_5m AS SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers FROM page_view GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
  p99_pair_1m: "CREATE VIEW p99_pair_1m AS SELECT pair, APPROX_PERCENTILE(price, 0.99) AS p99 FROM trade GROUP BY pair, TUMBLE(received_at, INTERVAL '1' MINUTE)",
};

const catalog = (): Catalog => schemaCatalog(WORKLOAD_SCHEMAS);

/** Events/s of the engine applying `events` logged events to the three views (read, decode, aggregate). */
export async function engineThroughput(events: number, eventsPerSecond = 20_000): Promise<{ eventsPerS: number; rows: Record<string, number>; memoryBytes: Record<string, number> }> {
  const dir = await mkdtemp(join(tmpdir(), 'halflife-bench-engine-'));
  const log = new SegmentLog({ dir, partitions: 8, fsync: 'never' });
  await log.start();
  const start = 1_790_000_000_000;
  const step = 1000 / eventsPerSecond;
  const batch = 1000;
  for (let i = 0; i < events; i += batch) {
    const evs = makeEvents(1 + i, Math.min(batch, events - i));
    await log.append(
      evs.map((e, j) => {
        const t = Math.floor(start + (i + j) * step);
        return { key: e.key, timestampMs: t, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: e.type, data: e.data }) };
      }),
    );
  }
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(start) });
  await engine.start(false);
  for (const [name, sql] of Object.entries(ENGINE_VIEWS)) await engine.createView(name, sql);
  global.gc?.(); // measure the engine, not the garbage left by generating and logging the events
  const t0 = performance.now();
  let n = 0;
  for (;;) {
    const r = await engine.step();
    if (r === 0) break;
    n += r;
  }
  const seconds = (performance.now() - t0) / 1000;
  const rows: Record<string, number> = {};
  const memoryBytes: Record<string, number> = {};
  for (const name of engine.names()) {
    rows[name] = engine.info(name).rows;
    memoryBytes[name] = engine.info(name).memoryBytes;
  }
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return { eventsPerS: n / seconds, rows, memoryBytes };
}

/** State bytes for `keys` distinct keys × `windows` one-minute windows, COUNT + APPROX_COUNT_DISTINCT of `users` values. */
export function viewMemory(keys: number, windows: number, users = 3): { bytes: number; perKeyWindow: number; usedDelta: number } {
  const plan = planView(
    "CREATE VIEW m AS SELECT article_id, COUNT(*) AS views, APPROX_COUNT_DISTINCT(user_id) AS readers FROM page_view GROUP BY article_id, TUMBLE(received_at, INTERVAL '1' MINUTE)",
    catalog(),
  );
  // Typed arrays keep their data outside the JS heap: count both.
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  global.gc?.();
  const before = used();
  const state = new ViewState(plan, 1);
  for (let w = 0; w < windows; w++) {
    for (let k = 0; k < keys; k++) {
      for (let u = 0; u < users; u++) {
        const row: EventRow = { type: 'page_view', data: { article_id: `a${k}`, user_id: `u${(k + u) % 1000}` }, key: undefined, received_at: w * 60_000 + 1, event_time: 0, partition: 0, offset: 0, joined: [] };
        state.apply(row, [row.data.article_id], 0);
      }
    }
  }
  // Typed arrays' memory is returned by a sweep that can lag one collection behind.
  for (let i = 0; i < 3; i++) global.gc?.();
  const usedDelta = used() - before;
  const bytes = state.memoryBytes();
  return { bytes, perKeyWindow: bytes / (keys * windows), usedDelta };
}

/**
 * Freshness: with the three views running and a background load at `rate` events/s, sends marker events and
 * measures the time from sending to seeing them in a view (p50/p99, ms).
 */
export async function freshness(rate: number, samples: number, env: Record<string, string> = {}): Promise<{ p50Ms: number; p99Ms: number; queryP50Ms: number; queryP99Ms: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'halflife-bench-fresh-'));
  const server = await spawnServer(dir, { HALFLIFE_LOG_LEVEL: 'warn', ...env }, [], { shedding: 'defaults' });
  const client = new HalflifeClient({ url: server.url });
  try {
    for (const [type, schema] of Object.entries(WORKLOAD_SCHEMAS)) await client.registerSchema(type, schema);
    await client.registerSchema('marker', { type: 'object', properties: { m: { type: 'string' } } });
    for (const [name, sql] of Object.entries(ENGINE_VIEWS)) await client.createView(name, sql);
    await client.createView('markers', 'CREATE VIEW markers AS SELECT m, COUNT(*) AS n FROM marker GROUP BY m');
    // The background load runs in its own process, so this process measures only the server's latency.
    const load = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./load-child.ts', import.meta.url)), server.url, String(rate)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => createInterface({ input: load.stdout! }).once('line', () => resolve()));
    await new Promise((r) => setTimeout(r, 1000)); // let the load settle
    const lat: number[] = [];
    const queries: number[] = [];
    for (let s = 0; s < samples; s++) {
      const m = `m${s}`;
      const t0 = performance.now();
      await client.sendEvents({ type: 'marker', data: { m } });
      for (;;) {
        const q0 = performance.now();
        const rows = await client.viewRows('markers', { keys: { m } });
        queries.push(performance.now() - q0);
        if (rows.length > 0) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      lat.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
    const exited = new Promise((r) => load.once('exit', r));
    load.kill('SIGTERM');
    await exited;
    const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];
    return { p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99), queryP50Ms: pct(queries, 0.5), queryP99Ms: pct(queries, 0.99) };
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
    await rm(dir, { recursive: true, force: true });
  }
}
