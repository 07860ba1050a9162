/**
 * `npm run bench`: ingest throughput over HTTP, halflife against the ceiling (a bare node:http server that only
 * parses the same bodies), in one run on one machine. Prints a markdown table (or JSON with --json).
 *
 *   npm run bench -- [--quick] [--seconds N] [--runs N] [--concurrency N] [--scenario name,...] [--json] [--profile DIR]
 */
import { spawn, execSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { spawnServer } from '../test/helpers/child-server.js';
import { tempDir } from '../test/helpers/tmp.js';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';
import { engineThroughput, freshness, viewMemory } from './engine-bench.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    seconds: { type: 'string' },
    runs: { type: 'string' },
    concurrency: { type: 'string' },
    scenario: { type: 'string' },
    json: { type: 'boolean' },
    profile: { type: 'string' },
  },
});
/** --profile DIR: the halflife server writes a V8 CPU profile there (open it in Chrome DevTools). */
const serverNodeArgs = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : [];
const seconds = Number(args.seconds ?? (args.quick ? 3 : 8));
const runs = Number(args.runs ?? (args.quick ? 1 : 3));
const concurrency = Number(args.concurrency ?? 4);
const BATCH = 1000;
const BODIES = 16;

interface Target {
  url: string;
  stop(): Promise<void>;
}

interface Result {
  scenario: string;
  eventsPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
}

const bodies = Array.from({ length: BODIES }, (_, i) => Buffer.from(JSON.stringify(makeEvents(1000 + i, BATCH))));
const avgEventBytes = bodies.reduce((a, b) => a + b.length, 0) / (BODIES * BATCH);

async function startBare(): Promise<Target> {
  const entry = fileURLToPath(new URL('./bare-server.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const m = /listening on (\S+)/.exec(l);
      if (m) resolve(m[1]);
    });
  });
  return {
    url,
    stop: () => new Promise((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); }),
  };
}

async function startHalflife(fsync: string): Promise<Target> {
  const { dir, cleanup } = await tempDir('halflife-bench-');
  const server = await spawnServer(dir, { HALFLIFE_LOG_FSYNC: fsync, HALFLIFE_LOG_LEVEL: 'warn' }, serverNodeArgs);
  for (const [type, schema] of Object.entries(WORKLOAD_SCHEMAS)) {
    const res = await fetch(`${server.url}/v1/schemas/${type}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(schema) });
    if (!res.ok) throw new Error(`schema ${type}: ${res.status} ${await res.text()}`);
  }
  return {
    url: server.url,
    async stop() {
      server.child.kill('SIGTERM');
      await server.exited;
      await cleanup();
    },
  };
}

function post(agent: Agent, url: URL, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, path: '/v1/events', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
          resolve((JSON.parse(Buffer.concat(chunks).toString()) as { accepted: number }).accepted);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function drive(target: Target, durationS: number): Promise<Omit<Result, 'scenario'>> {
  const url = new URL(target.url);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let events = 0;
  let bytes = 0;
  const latencies: number[] = [];
  let measuring = false;
  let stop = false;
  const worker = async (w: number) => {
    for (let i = w; !stop; i += concurrency) {
      const body = bodies[i % BODIES];
      const t0 = performance.now();
      const accepted = await post(agent, url, body);
      if (accepted !== BATCH) throw new Error(`only ${accepted} of ${BATCH} accepted`);
      if (measuring) {
        latencies.push(performance.now() - t0);
        events += accepted;
        bytes += body.length;
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationS * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    eventsPerS: events / elapsed,
    mbPerS: bytes / elapsed / 1e6,
    p50Ms: latencies[Math.floor(latencies.length * 0.5)] ?? 0,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const scenarios: Record<string, { label: string; start: () => Promise<Target> }> = {
  ceiling: { label: 'bare node:http, JSON.parse only (ceiling)', start: startBare },
  ingest: { label: 'halflife ingest, fsync=interval (default)', start: () => startHalflife('interval') },
  'ingest-always': { label: 'halflife ingest, fsync=always', start: () => startHalflife('always') },
};
const ENGINE_SCENARIOS = ['engine', 'freshness', 'memory'];
const requested = args.scenario ? args.scenario.split(',') : [...Object.keys(scenarios), ...ENGINE_SCENARIOS];
for (const s of requested) if (!(s in scenarios) && !ENGINE_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}; known: ${[...Object.keys(scenarios), ...ENGINE_SCENARIOS].join(', ')}`);
const chosen = requested.filter((s) => s in scenarios);

const results: Result[] = [];
// Interleave runs (A B C A B C ...) so a noisy moment on a shared machine does not hit one scenario only.
const perScenario = new Map<string, Omit<Result, 'scenario'>[]>();
for (let r = 0; r < runs; r++) {
  for (const s of chosen) {
    const target = await scenarios[s].start();
    try {
      const res = await drive(target, seconds);
      perScenario.set(s, [...(perScenario.get(s) ?? []), res]);
      if (!args.json) process.stderr.write(`run ${r + 1}/${runs} ${s}: ${Math.round(res.eventsPerS)} events/s\n`);
    } finally {
      await target.stop();
    }
  }
}
for (const s of chosen) {
  const rs = perScenario.get(s)!;
  results.push({
    scenario: s,
    eventsPerS: median(rs.map((x) => x.eventsPerS)),
    mbPerS: median(rs.map((x) => x.mbPerS)),
    p50Ms: median(rs.map((x) => x.p50Ms)),
    p99Ms: median(rs.map((x) => x.p99Ms)),
  });
}

// Engine scenarios (issue #3): throughput from the log with three views, freshness under load, view memory.
const engineResults: Record<string, unknown> = {};
if (requested.includes('engine')) {
  const runsE: number[] = [];
  let last: Awaited<ReturnType<typeof engineThroughput>> | undefined;
  // Engine runs are short (a few seconds): take more of them, the median resists the shared machine's noise.
  const engineRuns = args.quick ? 1 : Math.max(runs, 5);
  for (let r = 0; r < engineRuns; r++) {
    last = await engineThroughput(args.quick ? 100_000 : 300_000);
    runsE.push(last.eventsPerS);
    if (!args.json) process.stderr.write(`run ${r + 1}/${engineRuns} engine: ${Math.round(last.eventsPerS)} events/s\n`);
  }
  engineResults.engine = { eventsPerS: median(runsE), rows: last!.rows, memoryBytes: last!.memoryBytes };
}
if (requested.includes('freshness')) {
  engineResults.freshness = await freshness(args.quick ? 20_000 : 50_000, args.quick ? 20 : 60);
}
if (requested.includes('memory')) {
  engineResults.memory = viewMemory(args.quick ? 20_000 : 100_000, 12);
}

let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {
  // not a git checkout
}
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
const ceiling = results.find((r) => r.scenario === 'ceiling');

if (args.json) {
  process.stdout.write(JSON.stringify({ machine, commit, seconds, runs, concurrency, batch: BATCH, avgEventBytes, results, ...engineResults }, null, 2) + '\n');
} else {
  const lines = [
    `machine: ${machine}; commit ${commit}; ${runs} run(s) × ${seconds} s, median; ${concurrency} connections; ${BATCH}-event bodies, ${avgEventBytes.toFixed(0)} B/event`,
    '',
  ];
  if (results.length > 0) lines.push(
    '| scenario | events/s | MB/s | p50 ms | p99 ms | ÷ ceiling |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...results.map(
      (r) =>
        `| ${scenarios[r.scenario].label} | ${Math.round(r.eventsPerS).toLocaleString('en-US')} | ${r.mbPerS.toFixed(1)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${ceiling ? `${((r.eventsPerS / ceiling.eventsPerS) * 100).toFixed(0)} %` : '-'} |`,
    ),
  );
  const e = engineResults.engine as { eventsPerS: number } | undefined;
  const f = engineResults.freshness as { p50Ms: number; p99Ms: number; queryP50Ms: number; queryP99Ms: number } | undefined;
  const m = engineResults.memory as { bytes: number; perKeyWindow: number; heapDelta: number } | undefined;
  if (e || f || m) lines.push('', '| engine | value |', '| --- | ---: |');
  if (e) lines.push(`| engine throughput, 3 views (count per type per minute, readers_5m, p99 per pair per minute) | ${Math.round(e.eventsPerS).toLocaleString('en-US')} events/s |`);
  if (f) lines.push(`| freshness received_at -> visible, p50 / p99 | ${f.p50Ms.toFixed(0)} / ${f.p99Ms.toFixed(0)} ms |`, `| single-key view query under load, p50 / p99 | ${f.queryP50Ms.toFixed(1)} / ${f.queryP99Ms.toFixed(1)} ms |`);
  if (m) lines.push(`| view memory, keys × 12 one-minute windows (COUNT + APPROX_COUNT_DISTINCT) | ${(m.heapDelta / 2 ** 20).toFixed(0)} MiB heap (${(m.heapDelta / (m.bytes / m.perKeyWindow)).toFixed(0)} B per key-window) |`);
  process.stdout.write(lines.join('\n') + '\n');
}
