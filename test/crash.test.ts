import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HalflifeClient, type EventEnvelope } from '../sdk/index.js';
import { spawnServer } from './helpers/child-server.js';
import { hasNatsServer, startNats } from './helpers/nats.js';
import { tempDir } from './helpers/tmp.js';

/**
 * Generous: a request the server has not answered in this long means it is gone, whatever other programs do with
 * the cores (a killed server resets its connections at once, so the tests never wait this long for that).
 */
const CLIENT_TIMEOUT_MS = 60_000;
/** Each test's limit: two server starts, the load and the checks, on a machine whose cores are busy elsewhere. */
const TEST_TIMEOUT_MS = 600_000;

/** Waits until `done()` holds or every writer has stopped (nothing more can change), polling every 20 ms. */
async function until(done: () => boolean, writers: Promise<unknown>[]): Promise<void> {
  let stopped = false;
  void Promise.allSettled(writers).then(() => (stopped = true));
  while (!done() && !stopped) await new Promise((r) => setTimeout(r, 20));
}

async function readAll(client: HalflifeClient): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let cursor: string | undefined;
  for (;;) {
    const page = await client.readEvents({ cursor, limit: 10_000 });
    for (const r of page.records) counts.set(r.id!, (counts.get(r.id!) ?? 0) + 1);
    if (page.records.length === 0) return counts;
    cursor = page.next;
  }
}

/**
 * Runs concurrent writers against a child server, SIGKILLs it mid-load, restarts it, and checks that every
 * acknowledged event is present exactly once; then resends every unacknowledged batch with the same ids and
 * checks that nothing is stored twice.
 */
async function crashUnderLoad(fsync: 'always' | 'interval', backendEnv: Record<string, string> = {}) {
  const { dir, cleanup } = await tempDir('halflife-crash-');
  const env = { HALFLIFE_LOG_FSYNC: fsync, HALFLIFE_INGEST_UNKNOWN_TYPES: 'accept', HALFLIFE_LOG_SEGMENT_BYTES: '200000', ...backendEnv };
  // On JetStream a partition's record count is exact for what one process saw appended, estimated for older messages.
  const exactCounts = backendEnv.HALFLIFE_NATS === undefined;
  let server = await spawnServer(dir, env);
  try {
    const client = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const acked = new Set<string>();
    const unacked: EventEnvelope[][] = [];
    let stop = false;
    let requests = 0;
    const writer = async (w: number) => {
      for (let b = 0; !stop && b < 2000; b++) {
        const batch = Array.from({ length: 25 }, (_, i): EventEnvelope => ({
          type: 'crash_test',
          id: `w${w}-b${b}-e${i}`,
          key: `k${(b * 25 + i) % 17}`,
          data: { w, b, i, pad: 'x'.repeat(100) },
        }));
        try {
          const res = await client.sendEvents(batch);
          requests++;
          assert.equal(res.accepted + res.duplicates, batch.length);
          for (const e of batch) acked.add(e.id!);
        } catch {
          unacked.push(batch);
          return;
        }
      }
    };
    const writers = Array.from({ length: 4 }, (_, w) => writer(w));
    // Kill once a good amount of load has been acknowledged, while requests are still in flight.
    await until(() => acked.size >= 3000, writers);
    server.child.kill('SIGKILL');
    const { signal } = await server.exited;
    assert.equal(signal, 'SIGKILL');
    stop = true;
    await Promise.all(writers);
    assert.ok(acked.size >= 1000, `only ${acked.size} events were acknowledged before the kill`);
    assert.ok(requests > 10);

    server = await spawnServer(dir, env);
    const again = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const counts = await readAll(again);
    const missing = [...acked].filter((id) => !counts.has(id));
    assert.deepEqual(missing.slice(0, 5), [], `${missing.length} acknowledged events lost`);
    const doubled = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(doubled.slice(0, 5), [], 'no event stored twice');
    const streams = await again.streams();
    if (exactCounts) assert.equal(streams.records, counts.size);

    // The client retries what it never saw acknowledged: the dedup window, rebuilt from the log, keeps it exact.
    for (const batch of unacked) {
      const res = await again.sendEvents(batch);
      assert.equal(res.accepted + res.duplicates, batch.length);
    }
    const after = await readAll(again);
    assert.ok([...after.values()].every((n) => n === 1), 'retries after the crash stored nothing twice');
    for (const batch of unacked) for (const e of batch) assert.equal(after.get(e.id!), 1);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0, 'graceful exit');
  } finally {
    server.child.kill('SIGKILL');
    await cleanup();
  }
}

test('kill -9 under concurrent load with fsync=always: every acknowledged event survives exactly once', { timeout: TEST_TIMEOUT_MS }, async () => {
  await crashUnderLoad('always');
});

test('kill -9 under concurrent load with fsync=interval: a process crash loses nothing acknowledged', { timeout: TEST_TIMEOUT_MS }, async () => {
  await crashUnderLoad('interval');
});

test('kill -9 under concurrent load on NATS JetStream: every event acknowledged after its publish ack survives exactly once', { timeout: TEST_TIMEOUT_MS, skip: hasNatsServer ? false : 'nats-server not installed' }, async () => {
  const nats = await startNats();
  try {
    await crashUnderLoad('interval', { HALFLIFE_NATS: nats.url, HALFLIFE_NATS_REPLICAS: '1' });
  } finally {
    await nats.stop();
  }
});

for (const workers of [1, 2]) test(`kill -9 under load with a view running (${workers} engine worker${workers > 1 ? 's' : ''}): after restart the view equals the oracle computed from the log`, { timeout: TEST_TIMEOUT_MS }, async () => {
  const { dir, cleanup } = await tempDir('halflife-crash-view-');
  const env = { HALFLIFE_LOG_FSYNC: 'interval', HALFLIFE_ENGINE_CHECKPOINT_INTERVAL_MS: '200', HALFLIFE_ENGINE_WORKERS: String(workers) };
  let server = await spawnServer(dir, env);
  try {
    const client = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    await client.registerSchema('crash_test', { type: 'object', properties: { w: { type: 'integer' }, b: { type: 'integer' }, i: { type: 'integer' }, pad: { type: 'string' } } });
    await client.createView('per_w', 'CREATE VIEW per_w AS SELECT w, COUNT(*) AS n, SUM(i) AS s, COUNT(DISTINCT b) AS batches FROM crash_test GROUP BY w');
    let acked = 0;
    let stop = false;
    const writer = async (w: number) => {
      for (let b = 0; !stop && b < 2000; b++) {
        const batch = Array.from({ length: 25 }, (_, i): EventEnvelope => ({ type: 'crash_test', id: `w${w}-b${b}-e${i}`, key: `k${i % 5}`, data: { w, b, i, pad: 'y'.repeat(50) } }));
        try {
          await client.sendEvents(batch);
          acked += batch.length;
        } catch {
          return;
        }
      }
    };
    const writers = Array.from({ length: 3 }, (_, w) => writer(w));
    // Let several checkpoints happen under load, then kill between two of them.
    await until(() => acked >= 6000, writers);
    await new Promise((r) => setTimeout(r, 330));
    server.child.kill('SIGKILL');
    await server.exited;
    stop = true;
    await Promise.all(writers);

    server = await spawnServer(dir, env);
    const again = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const end = (await again.streams()).partitions.map((p) => p.nextOffset);
    // Until the view has replayed everything (however long a busy machine takes; the test's limit bounds it).
    for (;;) {
      const info = (await again.listViews()).find((v) => v.name === 'per_w')!;
      if (info.offsets.every((o, p) => o >= end[p])) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const oracle = new Map<number, { n: number; s: number; batches: Set<number> }>();
    let cursor: string | undefined;
    for (;;) {
      const page = await again.readEvents({ cursor, limit: 10_000 });
      for (const r of page.records) {
        const d = r.data as { w: number; b: number; i: number };
        const o = oracle.get(d.w) ?? { n: 0, s: 0, batches: new Set<number>() };
        o.n++;
        o.s += d.i;
        o.batches.add(d.b);
        oracle.set(d.w, o);
      }
      if (page.records.length === 0) break;
      cursor = page.next;
    }
    const rows = await again.viewRows('per_w', { order: 'w' });
    assert.deepEqual(
      rows.map((r) => [r.w, r.n, r.s, r.batches]),
      [...oracle].sort((a, b) => a[0] - b[0]).map(([w, o]) => [w, o.n, o.s, o.batches.size]),
      'every event counted exactly once after the crash',
    );
    assert.ok(rows.reduce((a, r) => a + (r.n as number), 0) >= 6000);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  } finally {
    server.child.kill('SIGKILL');
    await cleanup();
  }
});

for (const signals of [1, 2]) test(`${signals === 1 ? 'SIGTERM' : 'two SIGTERMs'} under load: ${signals === 1 ? 'exit 0 after in-flight requests finish' : 'exit at once'}; nothing acknowledged is lost`, { timeout: TEST_TIMEOUT_MS }, async () => {
  const { dir, cleanup } = await tempDir('halflife-shutdown-');
  const env = { HALFLIFE_INGEST_UNKNOWN_TYPES: 'accept', HALFLIFE_LOG_LEVEL: 'debug' }; // debug: the shutdown steps, shown on failure
  let server = await spawnServer(dir, env);
  try {
    const client = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const acked = new Set<string>();
    const refusals = new Map<string, number>();
    let stop = false;
    const writer = async (w: number) => {
      for (let b = 0; !stop && b < 5000; b++) {
        const batch = Array.from({ length: 200 }, (_, i): EventEnvelope => ({ type: 'shutdown_test', id: `w${w}-b${b}-e${i}`, data: { w, b, i, pad: 'z'.repeat(100) } }));
        try {
          const res = await client.sendEvents(batch);
          assert.equal(res.accepted + res.duplicates, batch.length);
          for (const e of batch) acked.add(e.id!);
        } catch (err) {
          const code = (err as { code?: string }).code ?? 'unknown';
          refusals.set(code, (refusals.get(code) ?? 0) + 1);
          return;
        }
      }
    };
    const writers = Array.from({ length: 6 }, (_, w) => writer(w));
    await until(() => acked.size >= 20_000, writers);
    // With two signals, a request whose body is still arriving holds the graceful shutdown (it waits for in-flight
    // requests), so the second signal always finds it under way instead of racing a shutdown that already ended.
    const held = signals === 2 ? await holdRequest(server.url) : undefined;
    const t0 = Date.now();
    server.child.kill('SIGTERM');
    if (signals === 2) {
      // The second signal once the first is being handled: two sent back to back to a process other programs starve
      // of CPU arrive as one (a pending signal does not queue).
      const child = server;
      while (!child.output.some((l) => /shutting down/.test(l)) && child.child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
      server.child.kill('SIGTERM');
    }
    const exit = await server.exited;
    held?.destroy();
    stop = true;
    await Promise.all(writers);
    assert.equal(exit.code, signals === 1 ? 0 : 130, `exit ${JSON.stringify(exit)}: ${server.output.filter((l) => /shutdown|shutting|error|warn/i.test(l)).slice(-8).join("\n").slice(0, 3000)}`);
    // server.shutdownTimeoutMs (10 s) bounds the drain; a forced exit would not exit 0. The margin is the process's
    // own teardown on a busy machine.
    assert.ok(Date.now() - t0 < 15_000, `within server.shutdownTimeoutMs: ${Date.now() - t0} ms`);
    for (const code of refusals.keys()) assert.ok(['SHUTTING_DOWN', 'NETWORK'].includes(code), `refused with ${code}`);

    server = await spawnServer(dir, env);
    const counts = await readAll(new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS }));
    const missing = [...acked].filter((id) => counts.get(id) !== 1);
    assert.equal(missing.length, 0, `${missing.length} of ${acked.size} acknowledged events are not stored exactly once`);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  } finally {
    server.child.kill('SIGKILL');
    await cleanup();
  }
});

// Test hygiene: a server a test started never outlives it, whether the test times out or its process is signalled
// (the runner's time limit). Each case starts one real server in a process of its own and looks for it afterwards.
const CHILD_SERVER = fileURLToPath(new URL('./helpers/child-server.ts', import.meta.url));

/** PIDs of processes whose command line holds `marker` (a unique data folder). */
function processesWith(marker: string): number[] {
  const out = execFileSync('ps', ['-A', '-o', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(marker) && !l.includes('<defunct>'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** Waits until no process holds `marker`, polling every 20 ms for at most `ms` (a SIGKILLed process is gone at once). */
async function gone(marker: string, ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  for (;;) {
    const left = processesWith(marker);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs node with `args`, resolving when a stdout line matches `line` (or it exits); returns the process. */
function runUntil(args: string[], env: Record<string, string>, line: RegExp) {
  // Not inside this test run: a node:test context of its own.
  const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
  const child = spawn(process.execPath, args, { env: { ...outer, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const seen = new Promise<string>((resolve) => {
    let text = '';
    child.stdout!.on('data', (c: Buffer) => {
      text += c.toString();
      if (line.test(text)) resolve(text);
    });
    child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
    void exited.then(() => resolve(text));
  });
  return { child, exited, seen };
}

test('a test that times out leaves no server behind', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { dir, cleanup } = await tempDir('halflife-hygiene-');
  const file = join(dir, 'times-out.test.mts');
  // The inner test times out while its server is still starting or already listening: either way it must be killed.
  await writeFile(
    file,
    `import { test } from 'node:test';
import { spawnServer } from ${JSON.stringify(CHILD_SERVER)};
test('starts a server and never ends', { timeout: 1000 }, async () => {
  await spawnServer(${JSON.stringify(join(dir, 'data'))});
  await new Promise((r) => setTimeout(r, 3_600_000));
});
`,
  );
  // The reason follows the `not ok` line, maybe in a later chunk: wait for it (or for the exit, which fails below).
  const inner = runUntil(['--import', 'tsx', '--test', file], {}, /test timed out after 1000ms|timed out/);
  try {
    const out = await inner.seen;
    assert.match(out, /test timed out after 1000ms|timed out/, out.slice(0, 2000));
    assert.deepEqual(await gone(join(dir, 'data'), 5000), [], 'the timed-out test killed its server');
    await inner.exited; // and with nothing left running, the test process ends
  } finally {
    inner.child.kill('SIGKILL');
    for (const pid of processesWith(join(dir, 'data'))) process.kill(pid, 'SIGKILL');
    await cleanup();
  }
});

test('a test process ended by a signal (the runner\'s time limit) leaves no server behind', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { dir, cleanup } = await tempDir('halflife-hygiene-');
  const file = join(dir, 'signalled.mts');
  await writeFile(
    file,
    `import { spawnServer } from ${JSON.stringify(CHILD_SERVER)};
const server = await spawnServer(${JSON.stringify(join(dir, 'data'))});
console.log('LISTENING', server.url);
setInterval(() => {}, 3_600_000);
`,
  );
  const inner = runUntil(['--import', 'tsx', file], {}, /^LISTENING /m);
  try {
    const out = await inner.seen;
    assert.match(out, /^LISTENING /m, out.slice(0, 2000));
    assert.equal(processesWith(join(dir, 'data')).length, 1, 'the server runs');
    inner.child.kill('SIGTERM');
    await inner.exited;
    assert.equal(inner.child.signalCode, 'SIGTERM', 'the process still ends as the signal says');
    assert.deepEqual(await gone(join(dir, 'data'), 5000), [], 'its server was killed with it');
  } finally {
    inner.child.kill('SIGKILL');
    for (const pid of processesWith(join(dir, 'data'))) process.kill(pid, 'SIGKILL');
    await cleanup();
  }
});

/**
 * Opens a POST /v1/events whose body has only begun to arrive (the rest never comes). A request on another
 * connection, sent after it and answered, shows the server has taken it in.
 */
async function holdRequest(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port) }, () => {
      s.write(`POST /v1/events HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n[{"type":"shutdown_test"`, () => resolve(s));
    });
    s.on('error', reject);
  });
  socket.on('error', () => {});
  await (await fetch(`${url}/healthz`)).text();
  return socket;
}
