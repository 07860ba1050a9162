/**
 * `npm run bench` (or `halflife bench`): halflife next to its peers, on one machine, in one run, as markdown.
 *
 *   npm run bench -- [--quick] [--events N] [--seconds N] [--runs N] [--concurrency N]
 *                    [--scenario a,b,...] [--json] [--profile DIR] [--generate N]
 *
 * Scenarios: ceiling, ingest, ingest-always, e2e, backfill, archive, latency, memory, redis, nats, postgres, duckdb; and, only when
 * asked for, cluster (the log on NATS JetStream: one server R1 and a 3-node cluster R3 next to the embedded log;
 * needs nats-server) and roles (on a 3-node cluster, an ingest process and a worker process next to one doing both).
 * --generate N prints N workload events as NDJSON (input for `halflife send`) and exits.
 */
import { execSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { engineThroughput, freshness, viewMemory } from './engine-bench.js';
import { drive, rssBytes, startBare, startHalflife, viewsCaughtUp, type LoadResult, type Target } from './http-load.js';
import { duckdbPeer, natsPeer, postgresPeer, redisPeer, type PeerResult } from './peers.js';
import { makeEvents } from './workload.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    events: { type: 'string' },
    seconds: { type: 'string' },
    runs: { type: 'string' },
    concurrency: { type: 'string' },
    scenario: { type: 'string' },
    json: { type: 'boolean' },
    profile: { type: 'string' },
    generate: { type: 'string' },
  },
});

if (args.generate !== undefined) {
  const n = Number(args.generate);
  for (let i = 0; i < n; i += 10_000) {
    process.stdout.write(makeEvents(7 + i, Math.min(10_000, n - i)).map((e) => JSON.stringify(e)).join('\n') + '\n');
  }
  process.exit(0);
}

const quick = args.quick === true;
/** --profile DIR: the halflife server writes a V8 CPU profile there (open it in Chrome DevTools). */
const serverNodeArgs = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : [];
const seconds = Number(args.seconds ?? (quick ? 2 : 8));
const runs = Number(args.runs ?? (quick ? 1 : 3));
const concurrency = Number(args.concurrency ?? 4);
const backfillEvents = Number(args.events ?? (quick ? 200_000 : 5_000_000));
const peerEvents = quick ? 100_000 : 500_000;
const BATCH = 1000;
const START_MS = 1_790_000_000_000;
const PER_EVENT_MS = 0.05;

const ALL = ['ceiling', 'ingest', 'ingest-always', 'e2e', 'backfill', 'archive', 'latency', 'memory', 'redis', 'nats', 'postgres', 'duckdb'];
const KNOWN = [...ALL, 'cluster', 'roles'];
const chosen = args.scenario ? args.scenario.split(',') : ALL;
for (const s of chosen) if (!KNOWN.includes(s)) throw new Error(`unknown scenario ${s}; known: ${KNOWN.join(', ')}`);
const want = (s: string) => chosen.includes(s);
const log = (s: string) => {
  if (!args.json) process.stderr.write(`${s}\n`);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const bodies = Array.from({ length: 16 }, (_, i) => Buffer.from(JSON.stringify(makeEvents(1000 + i, BATCH))));
const avgEventBytes = bodies.reduce((a, b) => a + b.length, 0) / (bodies.length * BATCH);
const results: Record<string, unknown> = {};

// (a) Ingest over HTTP, interleaved runs so a noisy moment does not hit one scenario only.
const http: Record<string, { label: string; start: () => Promise<Target> }> = {
  ceiling: { label: 'bare node:http, JSON.parse only (the ceiling)', start: startBare },
  ingest: { label: 'halflife ingest, fsync=interval (default)', start: () => startHalflife('interval', serverNodeArgs) },
  'ingest-always': { label: 'halflife ingest, fsync=always', start: () => startHalflife('always', serverNodeArgs) },
};
const httpRuns = new Map<string, LoadResult[]>();
for (let r = 0; r < runs; r++) {
  for (const s of Object.keys(http).filter(want)) {
    const target = await http[s].start();
    try {
      const res = await drive(target, bodies, BATCH, seconds, concurrency);
      httpRuns.set(s, [...(httpRuns.get(s) ?? []), res]);
      log(`run ${r + 1}/${runs} ${s}: ${Math.round(res.eventsPerS)} events/s`);
    } finally {
      await target.stop();
    }
  }
}
for (const [s, rs] of httpRuns) {
  results[s] = { eventsPerS: median(rs.map((x) => x.eventsPerS)), mbPerS: median(rs.map((x) => x.mbPerS)), p50Ms: median(rs.map((x) => x.p50Ms)), p99Ms: median(rs.map((x) => x.p99Ms)) };
}

// (b) End to end: ingest with the three views running, until the views have caught up; RSS at steady state.
if (want('e2e')) {
  const rates: number[] = [];
  let rss: number | undefined;
  let ingest = 0;
  for (let r = 0; r < runs; r++) {
    const target = await startHalflife('interval', serverNodeArgs, true);
    try {
      const load = await drive(target, bodies, BATCH, seconds, concurrency);
      rss = await rssBytes(target.pid);
      const done = await viewsCaughtUp(target.url);
      rates.push(load.totalEvents / ((done - load.startedAt) / 1000));
      ingest = load.eventsPerS;
      log(`run ${r + 1}/${runs} e2e: ${Math.round(rates.at(-1)!)} events/s (ingest ${Math.round(load.eventsPerS)}/s)`);
    } finally {
      await target.stop();
    }
  }
  results.e2e = { eventsPerS: median(rates), ingestPerS: ingest, rssBytes: rss };
}

// (c) Backfill: the three views over logged events.
if (want('backfill')) {
  const rs: number[] = [];
  for (let r = 0; r < (quick ? 1 : Math.max(runs, 3)); r++) {
    const res = await engineThroughput(backfillEvents);
    rs.push(res.eventsPerS);
    log(`run ${r + 1} backfill of ${backfillEvents} events: ${Math.round(res.eventsPerS)} events/s`);
  }
  results.backfill = { events: backfillEvents, eventsPerS: median(rs) };
}

// (i) The archive: throughput from the log; the backfill's aggregations by SQL over history next to DuckDB on NDJSON.
if (want('archive')) {
  const { archiveBench } = await import('./archive-bench.js');
  const rs: Awaited<ReturnType<typeof archiveBench>>[] = [];
  for (let r = 0; r < (quick ? 1 : Math.max(runs, 3)); r++) {
    const res = await archiveBench(backfillEvents);
    rs.push(res);
    log(`run ${r + 1} archive of ${backfillEvents} events: ${Math.round(res.archiveEventsPerS)} events/s to Parquet; history ${Math.round(res.historyEventsPerS)} events/s, DuckDB on NDJSON ${Math.round(res.duckdbEventsPerS ?? 0)} events/s`);
  }
  const med = (f: (x: (typeof rs)[number]) => number | undefined) => {
    const xs = rs.map(f).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? undefined : median(xs);
  };
  const { archiveLive } = await import('./archive-bench.js');
  const live: Awaited<ReturnType<typeof archiveLive>>[] = [];
  for (let r = 0; r < (quick ? 1 : Math.max(runs, 3)); r++) {
    const res = await archiveLive(bodies, BATCH, seconds, concurrency);
    live.push(res);
    log(`run ${r + 1} archive under full ingest (roll 1 s): ingest ${Math.round(res.ingestPerS)} events/s, lag at most ${res.maxLag} records, ${res.endLag} at the end, caught up ${res.catchUpSeconds.toFixed(1)} s after`);
  }
  const mid = (f: (x: (typeof live)[number]) => number) => median(live.map(f));
  results.archive = {
    events: backfillEvents,
    archiveEventsPerS: med((x) => x.archiveEventsPerS),
    bytesPerEvent: med((x) => x.archiveBytes / x.events),
    historyEventsPerS: med((x) => x.historyEventsPerS),
    duckdbEventsPerS: med((x) => x.duckdbEventsPerS),
    live: { ingestPerS: mid((x) => x.ingestPerS), maxLag: mid((x) => x.maxLag), endLag: mid((x) => x.endLag), catchUpSeconds: mid((x) => x.catchUpSeconds) },
  };
}

// (d) + (e) Query latency and freshness under half the end-to-end maximum.
if (want('latency')) {
  const e2e = (results.e2e as { eventsPerS: number } | undefined)?.eventsPerS;
  const rate = Math.round((e2e ?? 100_000) / 2);
  const f = await freshness(rate, quick ? 20 : 200);
  results.latency = { rate, ...f };
  log(`latency at ${rate} events/s: freshness p99 ${f.p99Ms.toFixed(0)} ms, query p99 ${f.queryP99Ms.toFixed(1)} ms`);
}

// (g) Cluster: the log on NATS JetStream (one server, R1; three servers, R3) next to the embedded log, in the same run:
// ingest over HTTP with the three views running, then freshness at half that rate. The NATS servers share the cores.
if (want('cluster')) {
  const { startNats, startNatsCluster } = await import('../test/helpers/nats.js');
  const setups: { name: string; label: string; env: (run: number) => Record<string, string>; stop: () => Promise<void> }[] = [];
  setups.push({ name: 'embedded', label: 'embedded log (fsync=interval)', env: () => ({}), stop: async () => {} });
  const single = await startNats();
  const three = await startNatsCluster(3);
  const onNats = (servers: string, replicas: number) => (run: number) => ({ HALFLIFE_NATS: servers, HALFLIFE_NATS_REPLICAS: String(replicas), HALFLIFE_NATS_STREAM: `BENCH${run}`, HALFLIFE_NATS_SUBJECT_PREFIX: `bench${run}`, HALFLIFE_NATS_BUCKET_PREFIX: `bench${run}` });
  setups.push({ name: 'r1', label: 'JetStream, 1 server, R1', env: onNats(single.url, 1), stop: () => single.stop() });
  setups.push({ name: 'r3', label: 'JetStream, 3-node cluster, R3', env: onNats(three.servers, 3), stop: () => three.stop() });
  const cluster: Record<string, { label: string; eventsPerS: number; freshP50Ms: number; freshP99Ms: number }> = {};
  try {
    const rates = new Map<string, number[]>();
    for (let r = 0; r < runs; r++) {
      for (const s of setups) {
        const target = await startHalflife('interval', serverNodeArgs, true, s.env(r));
        try {
          const load = await drive(target, bodies, BATCH, seconds, concurrency);
          rates.set(s.name, [...(rates.get(s.name) ?? []), load.eventsPerS]);
          log(`run ${r + 1}/${runs} cluster ${s.name}: ingest ${Math.round(load.eventsPerS)} events/s`);
        } finally {
          await target.stop();
        }
      }
    }
    for (const s of setups) {
      const rate = median(rates.get(s.name)!);
      const f = await freshness(Math.round(rate / 2), quick ? 20 : 100, s.env(runs));
      cluster[s.name] = { label: s.label, eventsPerS: rate, freshP50Ms: f.p50Ms, freshP99Ms: f.p99Ms };
      log(`cluster ${s.name}: freshness at ${Math.round(rate / 2)} events/s p50 ${f.p50Ms.toFixed(0)} ms, p99 ${f.p99Ms.toFixed(0)} ms`);
    }
  } finally {
    for (const s of setups) await s.stop();
  }
  results.cluster = cluster;
}

// (h) Roles on a 3-node JetStream (R3): an ingest process and a worker process of their own, as a scale-out runs, next
// to one process doing both, in the same run: ingest at the process taking the events, and end to end, the rate at
// which the views (read from the worker) took every acknowledged event.
if (want('roles')) {
  const { startNatsCluster } = await import('../test/helpers/nats.js');
  const { spawnServer } = await import('../test/helpers/child-server.js');
  const { tempDir } = await import('../test/helpers/tmp.js');
  const three = await startNatsCluster(3);
  const env = (run: number, role: string) => ({ HALFLIFE_NATS: three.servers, HALFLIFE_NATS_REPLICAS: '3', HALFLIFE_NATS_STREAM: `ROLES${run}`, HALFLIFE_NATS_SUBJECT_PREFIX: `roles${run}`, HALFLIFE_NATS_BUCKET_PREFIX: `roles${run}`, HALFLIFE_CLUSTER_ROLE: role });
  /** Events counted by the view of every event, read from `url` (undefined while it cannot answer yet). */
  const counted = async (url: string) => {
    const res = await fetch(`${url}/v1/views/per_type_1m?limit=100000`);
    if (!res.ok) return undefined;
    return ((await res.json()) as { rows: { n: number }[] }).rows.reduce((sum, row) => sum + row.n, 0);
  };
  const until = async <T>(what: string, get: () => Promise<T | undefined>) => {
    const deadline = performance.now() + 300_000;
    for (;;) {
      const got = await get().catch(() => undefined);
      if (got !== undefined) return got;
      if (performance.now() > deadline) throw new Error(`${what}: not within 5 minutes`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const rates = { all: { ingest: [] as number[], e2e: [] as number[] }, split: { ingest: [] as number[], e2e: [] as number[] } };
  let stream = 0;
  try {
    for (let r = 0; r < runs; r++) {
      // Alternated per run: neither always goes first.
      for (const split of r % 2 === 0 ? [false, true] : [true, false]) {
        stream++;
        const ingest = await startHalflife('interval', serverNodeArgs, true, env(stream, split ? 'ingest' : 'all'));
        const folder = split ? await tempDir('halflife-bench-worker-') : undefined;
        let worker: Awaited<ReturnType<typeof spawnServer>> | undefined;
        try {
          if (folder !== undefined) worker = await spawnServer(folder.dir, { HALFLIFE_LOG_LEVEL: 'warn', ...env(stream, 'worker') }, serverNodeArgs, { shedding: 'defaults' });
          const reader = worker?.url ?? ingest.url;
          // The views answer once the worker holds its partitions' leases.
          await until('the views answering', () => counted(reader));
          const load = await drive(ingest, bodies, BATCH, seconds, concurrency);
          const got = await until('every event counted', async () => {
            const c = await counted(reader);
            return c !== undefined && c >= load.totalEvents ? c : undefined;
          });
          const e2e = load.totalEvents / ((performance.now() - load.startedAt) / 1000);
          if (got !== load.totalEvents) throw new Error(`the views counted ${got} of ${load.totalEvents} acknowledged events`);
          const which = split ? rates.split : rates.all;
          which.ingest.push(load.eventsPerS);
          which.e2e.push(e2e);
          log(`run ${r + 1}/${runs} roles ${split ? 'ingest + worker' : 'one process'}: ingest ${Math.round(load.eventsPerS)} events/s, end to end ${Math.round(e2e)} events/s`);
        } finally {
          if (worker !== undefined) {
            worker.child.kill('SIGTERM');
            await worker.exited;
          }
          await folder?.cleanup();
          await ingest.stop();
        }
      }
    }
  } finally {
    await three.stop();
  }
  results.roles = { all: { ingestPerS: median(rates.all.ingest), e2ePerS: median(rates.all.e2e) }, split: { ingestPerS: median(rates.split.ingest), e2ePerS: median(rates.split.e2e) } };
}

// (f) Memory: APPROX_COUNT_DISTINCT per key, many keys.
if (want('memory')) {
  const keys = quick ? 100_000 : 1_000_000;
  const m = viewMemory(keys, 1, 10);
  results.memory = { keys, distinctPerKey: 10, usedBytes: m.usedDelta, bytesPerKey: m.usedDelta / keys };
  log(`memory: ${keys} keys × ≤10 distinct: ${(m.usedDelta / 2 ** 20).toFixed(0)} MiB`);
}

// The peers, on the same events.
const peerEventList = want('redis') || want('postgres') ? makeEvents(1, peerEvents) : [];
const peers: Record<string, PeerResult | undefined> = {};
if (want('redis')) peers.redis = await redisPeer(peerEventList, START_MS, PER_EVENT_MS);
if (want('nats')) {
  peers.natsEvent = await natsPeer(bodies.map((b) => b.toString()), 'event', quick ? 10_000 : 40_000);
  peers.natsBatch = await natsPeer(bodies.map((b) => b.toString()), 'batch', peerEvents);
}
if (want('postgres')) peers.postgres = await postgresPeer(peerEventList, START_MS, PER_EVENT_MS);
if (want('duckdb')) peers.duckdb = await duckdbPeer(bodies.map((b) => b.toString()), Math.ceil(peerEvents / 16_000));
for (const [k, v] of Object.entries(peers)) if (v) log(`peer ${k}: ${Math.round(v.eventsPerS)} events/s`);

let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {
  // not a git checkout
}
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;

if (args.json) {
  process.stdout.write(JSON.stringify({ machine, commit, seconds, runs, concurrency, avgEventBytes, results, peers }, null, 2) + '\n');
} else {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}×` : '–');
  const check = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? ' ✓' : ' ✗');
  const r = results as Record<string, { eventsPerS: number; p50Ms?: number; p99Ms?: number }>;
  const lines = [`machine: ${machine}; commit ${commit}; ${runs} run(s), medians; ${concurrency} connections; 1,000-event bodies of ${avgEventBytes.toFixed(0)} B/event`, ''];
  lines.push('| measure | halflife | peer | halflife ÷ peer | target |', '| --- | ---: | ---: | ---: | --- |');
  const ceiling = r.ceiling?.eventsPerS;
  if (r.ingest) {
    lines.push(`| (a) ingest over HTTP, events/s (p99 ${r.ingest.p99Ms?.toFixed(0)} ms) | ${n(r.ingest.eventsPerS)} | ceiling ${ceiling ? n(ceiling) : '–'} | ${ratio(r.ingest.eventsPerS, ceiling)} | ≥ 250,000 and ≥ 0.60× ceiling${check(r.ingest.eventsPerS >= 250_000 && (!ceiling || r.ingest.eventsPerS >= 0.6 * ceiling))} |`);
    if (peers.natsEvent) lines.push(`| (a) vs NATS JetStream, a Node service publishing each event with acks | ${n(r.ingest.eventsPerS)} | ${n(peers.natsEvent.eventsPerS)} | ${ratio(r.ingest.eventsPerS, peers.natsEvent.eventsPerS)} | ≥ 10×${check(r.ingest.eventsPerS >= 10 * peers.natsEvent.eventsPerS)} |`);
    if (peers.natsBatch) lines.push(`| (a) vs NATS JetStream, 1,000-event messages with acks | ${n(r.ingest.eventsPerS)} | ${n(peers.natsBatch.eventsPerS)} | ${ratio(r.ingest.eventsPerS, peers.natsBatch.eventsPerS)} | (reference) |`);
  }
  if (r['ingest-always']) lines.push(`| (a) ingest, fsync=always | ${n(r['ingest-always'].eventsPerS)} | ceiling ${ceiling ? n(ceiling) : '–'} | ${ratio(r['ingest-always'].eventsPerS, ceiling)} | |`);
  const e2e = results.e2e as { eventsPerS: number; ingestPerS: number; rssBytes?: number } | undefined;
  if (e2e) lines.push(`| (b) end to end: ingest + 3 views caught up, events/s | ${n(e2e.eventsPerS)} | Redis ${peers.redis ? n(peers.redis.eventsPerS) : '–'} | ${ratio(e2e.eventsPerS, peers.redis?.eventsPerS)} | ≥ 150,000 and ≥ 2× Redis${check(e2e.eventsPerS >= 150_000 && (!peers.redis || e2e.eventsPerS >= 2 * peers.redis.eventsPerS))} |`);
  const backfill = results.backfill as { events: number; eventsPerS: number } | undefined;
  if (backfill) {
    lines.push(`| (c) backfill: 3 new views over ${n(backfill.events)} logged events, events/s (1 engine thread) | ${n(backfill.eventsPerS)} | DuckDB ${peers.duckdb ? n(peers.duckdb.eventsPerS) : '–'} | ${ratio(backfill.eventsPerS, peers.duckdb?.eventsPerS)} | ≥ 500,000 per core${check(backfill.eventsPerS >= 500_000)} |`);
    if (peers.postgres) lines.push(`| (c) vs PostgreSQL: COPY + the same aggregations | ${n(backfill.eventsPerS)} | ${n(peers.postgres.eventsPerS)} | ${ratio(backfill.eventsPerS, peers.postgres.eventsPerS)} | |`);
  }
  const arc = results.archive as { events: number; archiveEventsPerS: number; bytesPerEvent: number; historyEventsPerS: number; duckdbEventsPerS?: number; live: { ingestPerS: number; maxLag: number; endLag: number; catchUpSeconds: number } } | undefined;
  if (arc) {
    const ingestRate = (results.ingest as { eventsPerS: number } | undefined)?.eventsPerS;
    lines.push(`| (i) archive: ${n(arc.events)} logged events to zstd Parquet, events/s (${arc.bytesPerEvent.toFixed(1)} B/event) | ${n(arc.archiveEventsPerS)} | ingest ${ingestRate ? n(ingestRate) : '–'} | ${ratio(arc.archiveEventsPerS, ingestRate)} | keeps up with ingest${check(ingestRate === undefined ? undefined : arc.archiveEventsPerS >= ingestRate)} |`);
    const l = arc.live;
    lines.push(`| (i) archive under full ingest (roll 1 s): ingest events/s; lag at most / at the end, records (seconds of ingest); caught up after the load | ${n(l.ingestPerS)} | ${n(l.maxLag)} / ${n(l.endLag)} (${(l.maxLag / l.ingestPerS).toFixed(1)} s) | ${l.catchUpSeconds.toFixed(1)} s | lag bounded${check(l.maxLag <= 5 * l.ingestPerS && l.catchUpSeconds <= 5)} |`);
    lines.push(`| (i) SQL over history: the 3 aggregations over ${n(arc.events)} archived events, events/s (1 thread) | ${n(arc.historyEventsPerS)} | DuckDB on NDJSON ${arc.duckdbEventsPerS ? n(arc.duckdbEventsPerS) : '–'} | ${ratio(arc.historyEventsPerS, arc.duckdbEventsPerS)} | |`);
  }
  const lat = results.latency as { rate: number; p50Ms: number; p99Ms: number; queryP50Ms: number; queryP99Ms: number } | undefined;
  if (lat) {
    lines.push(`| (d) single-key view query under ${n(lat.rate)} events/s, p50 / p99 ms | ${lat.queryP50Ms.toFixed(1)} / ${lat.queryP99Ms.toFixed(1)} | | | p99 ≤ 20 ms${check(lat.queryP99Ms <= 20)} |`);
    lines.push(`| (e) freshness received_at → visible, p50 / p99 ms | ${lat.p50Ms.toFixed(0)} / ${lat.p99Ms.toFixed(0)} | | | p99 ≤ 1,500 ms${check(lat.p99Ms <= 1500)} |`);
  }
  if (e2e?.rssBytes !== undefined) lines.push(`| (f) server RSS at steady state under (b) | ${(e2e.rssBytes / 2 ** 20).toFixed(0)} MiB | | | |`);
  const mem = results.memory as { keys: number; usedBytes: number; bytesPerKey: number } | undefined;
  if (mem) lines.push(`| (f) APPROX_COUNT_DISTINCT state, ${n(mem.keys)} keys × ≤ 10 distinct values | ${(mem.usedBytes / 2 ** 20).toFixed(0)} MiB (${mem.bytesPerKey.toFixed(0)} B/key) | | | < 100 MB per 1M keys${check(mem.usedBytes / mem.keys * 1e6 < 100e6)} |`);
  const cl = results.cluster as Record<string, { label: string; eventsPerS: number; freshP50Ms: number; freshP99Ms: number }> | undefined;
  if (cl) {
    const base = cl.embedded?.eventsPerS;
    for (const c of Object.values(cl)) {
      const nats = c !== cl.embedded;
      lines.push(`| (g) ${c.label}: ingest with 3 views, events/s | ${n(c.eventsPerS)} | embedded ${base ? n(base) : '–'} | ${ratio(c.eventsPerS, base)} | ${nats ? `≥ 0.50× embedded${check(base === undefined ? undefined : c.eventsPerS >= 0.5 * base)}` : ''} |`);
      lines.push(`| (g) ${c.label}: freshness at half that rate, p50 / p99 ms | ${c.freshP50Ms.toFixed(0)} / ${c.freshP99Ms.toFixed(0)} | | | ${nats ? `p99 ≤ 1,500 ms${check(c.freshP99Ms <= 1500)}` : ''} |`);
    }
  }
  const roles = results.roles as { all: { ingestPerS: number; e2ePerS: number }; split: { ingestPerS: number; e2ePerS: number } } | undefined;
  if (roles) {
    lines.push(`| (h) R3, one process (all): ingest / end to end, events/s | ${n(roles.all.ingestPerS)} / ${n(roles.all.e2ePerS)} | | | |`);
    lines.push(`| (h) R3, an ingest process and a worker process: ingest / end to end, events/s | ${n(roles.split.ingestPerS)} / ${n(roles.split.e2ePerS)} | one process ${n(roles.all.ingestPerS)} / ${n(roles.all.e2ePerS)} | ${ratio(roles.split.ingestPerS, roles.all.ingestPerS)} / ${ratio(roles.split.e2ePerS, roles.all.e2ePerS)} | |`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}
