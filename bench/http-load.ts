/** HTTP load for the benchmarks: a bare node:http ceiling, halflife servers, and a keep-alive load generator. */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { spawnServer } from '../test/helpers/child-server.js';
import { tempDir } from '../test/helpers/tmp.js';
import { ENGINE_VIEWS } from './engine-bench.js';
import { WORKLOAD_SCHEMAS } from './workload.js';

export interface Target {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export interface LoadResult {
  eventsPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Events accepted since the load started (warm-up included). */
  totalEvents: number;
  /** performance.now() when the load started. */
  startedAt: number;
}

export async function startBare(): Promise<Target> {
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
    pid: child.pid!,
    stop: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

/** A halflife server with the workload's schemas registered (and the three benchmark views with `views`). */
export async function startHalflife(fsync: string, nodeArgs: string[], views = false, env: Record<string, string> = {}): Promise<Target> {
  const { dir, cleanup } = await tempDir('halflife-bench-');
  // The production settings, shedding included: the benchmark measures what a user runs.
  const server = await spawnServer(dir, { HALFLIFE_LOG_FSYNC: fsync, HALFLIFE_LOG_LEVEL: 'warn', ...env }, nodeArgs, { shedding: 'defaults' });
  const put = async (path: string, body: unknown) => {
    const res = await fetch(`${server.url}${path}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  };
  for (const [type, schema] of Object.entries(WORKLOAD_SCHEMAS)) await put(`/v1/schemas/${type}`, schema);
  if (views) for (const [name, sql] of Object.entries(ENGINE_VIEWS)) await put(`/v1/views/${name}`, { sql });
  return {
    url: server.url,
    pid: server.child.pid!,
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

/** Posts the bodies as fast as `concurrency` keep-alive connections allow: 1 s warm-up, then `seconds` measured. */
export async function drive(target: Target, bodies: readonly Buffer[], eventsPerBody: number, seconds: number, concurrency: number): Promise<LoadResult> {
  const url = new URL(target.url);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let events = 0;
  let total = 0;
  let bytes = 0;
  const latencies: number[] = [];
  let measuring = false;
  let stop = false;
  const startedAt = performance.now();
  const worker = async (w: number) => {
    for (let i = w; !stop; i += concurrency) {
      const body = bodies[i % bodies.length];
      const t0 = performance.now();
      const accepted = await post(agent, url, body);
      if (accepted !== eventsPerBody) throw new Error(`only ${accepted} of ${eventsPerBody} accepted`);
      total += accepted;
      if (measuring) {
        latencies.push(performance.now() - t0);
        events += accepted;
        bytes += body.length;
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
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
    totalEvents: total,
    startedAt,
  };
}

/** Resident memory of a process in bytes (Linux), or undefined. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until every view of the server has applied the whole log; returns performance.now() then. */
export async function viewsCaughtUp(url: string, timeoutMs = 600_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  const end = ((await (await fetch(`${url}/v1/streams`)).json()) as { partitions: { nextOffset: number }[] }).partitions.map((p) => p.nextOffset);
  for (;;) {
    const views = ((await (await fetch(`${url}/v1/views`)).json()) as { views: { offsets: number[] }[] }).views;
    if (views.every((v) => v.offsets.every((o, p) => o >= end[p]))) return performance.now();
    if (performance.now() > deadline) throw new Error('views did not catch up');
    await new Promise((r) => setTimeout(r, 20));
  }
}
