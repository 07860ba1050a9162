// Overload: three times the server's capacity, offered open-loop with mixed priorities, against a server in its own
// process: the requests it has not answered pile up, and past the in-flight bounds it sheds by priority while it
// answers a status probe sooner than it could drain its queue. Bounded: ~4 s to measure capacity, 3 s of overload,
// at most 600 requests outstanding, loopback only.
// And its opposite: closed loops (each connection waits for its answer) cannot overload anything, so they must lose
// nothing to shedding, however busy the machine's cores are. Bounded: 3 s (and at least 15 requests) or 400 requests
// per connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { decodeEventRecord } from '../src/core/index.js';
import { SegmentLog } from '../src/log/index.js';
import { REQUEST_OVERHEAD_BYTES } from '../src/server/overload.js';
import { spawnServer } from './helpers/child-server.js';
import { tempDir } from './helpers/tmp.js';
import { join } from 'node:path';

const EVENTS_PER_REQUEST = 500;
const MAX_OUTSTANDING = 600;
const OVERLOAD_S = 3;
const BUDGET = 1024 * 2 ** 20;

interface Reply {
  status: number;
  body: { accepted?: number; errors?: { index: number; code: string }[]; error?: { code: string } };
}

function post(agent: Agent, url: URL, body: string, headers: Record<string, string>): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, path: '/v1/events', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const CLOSED_LOOP_S = 3;
/** Per connection: at least this many requests however slow the machine (at most this many however fast). */
const CLOSED_LOOP_MIN_REQUESTS = 15;
const CLOSED_LOOP_MAX_REQUESTS = 400;

for (const connections of [8, 16]) {
  test(`a closed loop of ${connections} connections at full speed loses nothing to shedding (default overload settings)`, async (t) => {
    const { dir, cleanup } = await tempDir();
    // The production defaults for overload: what a user gets.
    const server = await spawnServer(dir, { HALFLIFE_LOG_LEVEL: 'warn', HALFLIFE_INGEST_WORKERS: '1' }, [], { shedding: 'defaults' });
    const url = new URL(server.url);
    const agent = new Agent({ keepAlive: true, maxSockets: connections });
    try {
      const res = await fetch(`${server.url}/v1/schemas/cl`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'object' }) });
      assert.equal(res.status, 201);
      const big = `[${Array.from({ length: EVENTS_PER_REQUEST }, (_, i) => `{"type":"cl","data":{"n":${i},"pad":"${'x'.repeat(40)}"}}`).join(',')}]`;
      const one = '[{"type":"cl","data":{"n":0}}]';
      const counts = { requests: 0, events: 0, accepted: 0, shed: 0, other: 0, statuses: {} as Record<number, number> };
      const end = performance.now() + CLOSED_LOOP_S * 1000;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: connections }, async (_, c) => {
          for (let i = 0; i < CLOSED_LOOP_MAX_REQUESTS && (i < CLOSED_LOOP_MIN_REQUESTS || performance.now() < end); i++) {
            // Mostly 500-event bodies; every fifth a single event; half the connections declare their priority.
            const single = i % 5 === 4;
            const reply = await post(agent, url, single ? one : big, c % 2 === 0 ? { 'x-halflife-priority': 'normal' } : {}).catch(() => ({ status: 0, body: {} }) as Reply);
            const n = single ? 1 : EVENTS_PER_REQUEST;
            counts.requests++;
            counts.events += n;
            counts.statuses[reply.status] = (counts.statuses[reply.status] ?? 0) + 1;
            if (reply.status === 200) {
              const shed = (reply.body.errors ?? []).filter((e) => e.code === 'OVERLOADED').length;
              counts.shed += shed;
              counts.accepted += reply.body.accepted ?? 0;
              counts.other += n - shed - (reply.body.accepted ?? 0);
            } else if (reply.status === 429 || reply.body.error?.code === 'OVERLOADED') counts.shed += n;
            else counts.other += n;
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const status = (await (await fetch(`${server.url}/v1/status`)).json()) as { overload?: unknown };
      const report = JSON.stringify({ connections, seconds: Number(seconds.toFixed(1)), eventsPerS: Math.round(counts.accepted / seconds), ...counts, overload: status.overload });
      t.diagnostic(report);
      assert.ok(counts.requests >= connections, report);
      assert.equal(counts.shed, 0, `nothing shed: ${report}`);
      assert.equal(counts.other, 0, `nothing failed: ${report}`);
      assert.equal(counts.accepted, counts.events, report);
    } finally {
      agent.destroy();
      server.child.kill('SIGTERM');
      await server.exited;
      await cleanup();
    }
  });
}

test('at 3x capacity with mixed priorities: high is accepted (>= 99 %), low is shed first, memory stays under budget, nothing acknowledged is lost', async (t) => {
  let seq = 0;
  // A body and the ids of its events (kept beside it, so acknowledging costs the client no parsing).
  const body = (type: string) => {
    const events = [];
    const ids = [];
    for (let i = 0; i < EVENTS_PER_REQUEST; i++) {
      const id = `${type}-${seq++}`;
      ids.push(id);
      events.push(`{"type":"${type}","id":"${id}","data":{"n":${i},"pad":"${'x'.repeat(40)}"}}`);
    }
    return { text: `[${events.join(',')}]`, ids };
  };
  const { dir, cleanup } = await tempDir();
  // What piles up in an open loop beyond capacity is requests received and not yet answered: the in-flight bound is
  // 200 requests, so low is shed from 120, normal from 160. The capacity phase's closed loop holds at most 32 (0.16
  // of the bound, nothing shed): a closed loop is never shed. The memory budget stays well above what the test needs.
  const requestBytes = Buffer.byteLength(body('hi').text) + REQUEST_OVERHEAD_BYTES;
  const server = await spawnServer(dir, {
    HALFLIFE_LOG_LEVEL: 'warn',
    HALFLIFE_INGEST_WORKERS: '1',
    HALFLIFE_INGEST_PRIORITIES: JSON.stringify({ hi: 'high', lo: 'low' }),
    HALFLIFE_OVERLOAD_MEMORY_BUDGET_BYTES: String(BUDGET),
    HALFLIFE_OVERLOAD_MAX_INFLIGHT_BYTES: String(200 * requestBytes),
  }, [], { shedding: 'defaults' });
  const url = new URL(server.url);
  const agent = new Agent({ keepAlive: true, maxSockets: MAX_OUTSTANDING });
  const acked = new Set<string>();
  const ack = (b: { ids: string[] }, reply: Reply) => {
    if (reply.status !== 200) return 0;
    const failed = new Set((reply.body.errors ?? []).map((e) => e.index));
    b.ids.forEach((id, i) => failed.has(i) || acked.add(id));
    return b.ids.length - failed.size;
  };
  try {
    for (const type of ['hi', 'mid', 'lo']) {
      const res = await fetch(`${server.url}/v1/schemas/${type}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'object' }) });
      assert.equal(res.status, 201);
    }

    // Capacity: closed loop, 32 requests at a time, high-priority bodies only, after a second of warm-up (a closed
    // loop, so nothing is shed: at most 32 requests in flight, 0.16 of the bound).
    const closedLoop = async (ms: number) => {
      let done = 0;
      const end = performance.now() + ms;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (performance.now() < end) {
            const b = body('hi');
            // Not `done += ack(b, await …)`: that reads `done` before the await and loses the other loops' counts.
            const reply = await post(agent, url, b.text, {});
            done += ack(b, reply);
          }
        }),
      );
      return done / ((performance.now() - started) / 1000);
    };
    await closedLoop(1000);
    // The better of two seconds: on a machine other programs keep busy the server's share of the cores comes and
    // goes, and 3x an unlucky second would not overload it at all.
    const capacities = [await closedLoop(1000), await closedLoop(1000)];
    const capacity = Math.max(...capacities);

    // Overload: 3x capacity offered open-loop, 20 % high, 40 % normal, 40 % low; producers of normal and low
    // traffic declare their priority, as background producers would.
    const bodies: { type: string; b: ReturnType<typeof body> }[] = [];
    const offeredRequests = Math.ceil((3 * capacity * OVERLOAD_S) / EVENTS_PER_REQUEST);
    for (let i = 0; i < offeredRequests; i++) {
      const r = i % 5;
      const type = r === 0 ? 'hi' : r <= 2 ? 'mid' : 'lo';
      bodies.push({ type, b: body(type) });
    }
    const stats: Record<string, { sent: number; accepted: number; shed: number; refused: number; other: number }> = {};
    for (const t of ['hi', 'mid', 'lo']) stats[t] = { sent: 0, accepted: 0, shed: 0, refused: 0, other: 0 };
    let maxRss = 0;
    let outstanding = 0;
    let skipped = 0;
    const inflight: Promise<void>[] = [];
    const start = performance.now();
    // One status probe at a time (a new one when the last is answered, at most every 100 ms): how long the server
    // takes to answer a request that is not queued behind the flood.
    const probes: number[] = [];
    let maxInflight = 0;
    let maxPressure = 0;
    let maxDelay = 0;
    let probing = true;
    const probeLoop = (async () => {
      while (probing) {
        const t0 = performance.now();
        try {
          const s = (await (await fetch(`${server.url}/v1/status`)).json()) as { overload?: { rssBytes: number; inflightRequests: number; pressure: number; eventLoopDelayMs: number } };
          maxRss = Math.max(maxRss, s.overload?.rssBytes ?? 0);
          maxInflight = Math.max(maxInflight, s.overload?.inflightRequests ?? 0);
          maxPressure = Math.max(maxPressure, s.overload?.pressure ?? 0);
          maxDelay = Math.max(maxDelay, s.overload?.eventLoopDelayMs ?? 0);
          probes.push(performance.now() - t0);
        } catch {
          // Counted as unanswered: the report shows how many were.
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - t0))));
      }
    })();
    let next = 0;
    let sentEvents = 0;
    while (next < bodies.length) {
      const due = Math.min(bodies.length, Math.floor(((performance.now() - start) / (OVERLOAD_S * 1000)) * bodies.length));
      for (; next < due; next++) {
        const { type, b } = bodies[next];
        if (outstanding >= MAX_OUTSTANDING) {
          skipped++;
          continue;
        }
        outstanding++;
        stats[type].sent += EVENTS_PER_REQUEST;
        sentEvents += EVENTS_PER_REQUEST;
        inflight.push(
          post(agent, url, b.text, type === 'hi' ? {} : { 'x-halflife-priority': type === 'mid' ? 'normal' : 'low' }).then(
            (reply) => {
              outstanding--;
              const s = stats[type];
              const accepted = ack(b, reply);
              s.accepted += accepted;
              if (reply.status === 200) s.shed += (reply.body.errors ?? []).filter((e) => e.code === 'OVERLOADED').length;
              else if (reply.status === 429) s.shed += EVENTS_PER_REQUEST;
              else if (reply.status === 503) s.refused += EVENTS_PER_REQUEST;
              else s.other += EVENTS_PER_REQUEST;
            },
            () => {
              outstanding--;
              stats[type].other += EVENTS_PER_REQUEST;
            },
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    // What the clients offered while they tried 3x: what they sent, and what they had to hold back because all 600
    // connections were waiting for answers (the server was not keeping up: that is offered load it did not take).
    const offeredRate = (sentEvents + skipped * EVENTS_PER_REQUEST) / ((performance.now() - start) / 1000);
    await Promise.all(inflight);
    probing = false;
    await probeLoop;
    const overloadMs = performance.now() - start;
    probes.sort((a, b) => a - b);
    const slowestProbeMs = probes.length > 0 ? probes[probes.length - 1] : Infinity;
    // Responsive: a probe is answered sooner than the server could work through what may be outstanding at once
    // (a bound from the measured capacity, not a fixed time: a busy machine is slower at both).
    const drainMs = ((MAX_OUTSTANDING * EVENTS_PER_REQUEST) / capacity) * 1000;
    const acceptedRate = (stats.hi.accepted + stats.mid.accepted + stats.lo.accepted) / (overloadMs / 1000);
    const report = JSON.stringify({ capacity: Math.round(capacity), capacities: capacities.map(Math.round), offeredRate: Math.round(offeredRate), acceptedRate: Math.round(acceptedRate), skipped, stats, maxRssMiB: Math.round(maxRss / 2 ** 20), probes: probes.length, medianProbeMs: Math.round(probes[probes.length >> 1] ?? -1), slowestProbeMs: Math.round(slowestProbeMs), drainMs: Math.round(drainMs), overloadMs: Math.round(overloadMs), maxInflight, maxPressure, maxDelay });

    t.diagnostic(report);
    // Overloaded: offered well over what the server took meanwhile (its capacity under this load; the closed loop's
    // estimate is the best of three seconds, which a busy machine may not give it again). Counting only what was
    // sent made this depend on how much of the cores the test's own client got beside another test file.
    assert.ok(offeredRate >= 1.5 * acceptedRate, `offered well over what the server accepted: ${report}`);
    assert.ok(stats.hi.accepted >= 0.99 * stats.hi.sent, `high-priority acceptance >= 99 %: ${report}`);
    const shedShare = (t: string) => stats[t].shed / Math.max(1, stats[t].sent);
    if (stats.mid.shed + stats.lo.shed > 0 || maxPressure >= 0.6) {
      // The queue formed inside halflife (pressure past shedLowAt = 0.6): it sheds, low first. Once normal is shed
      // too, both are shed alike (a jump in pressure can start both at once), so low's share is at least normal's,
      // give or take the mix of requests. The exact order is a unit test's (src/ingest/ingestor.test.ts).
      assert.ok(shedShare('lo') > 0, `low-priority events were shed: ${report}`);
      assert.ok(shedShare('lo') >= shedShare('mid') - 0.02, `low is shed at least as much as normal: ${report}`);
    } else {
      // On a machine whose cores other programs keep busy, the queue can form in the kernel's socket buffers before
      // halflife reads the requests (seen: 75 sockets holding 3.2 MB unread while halflife held 11-17 requests).
      // halflife then holds no more work than it can do and rightly sheds nothing: the clients get slower answers.
      // Everything else below still holds.
      t.diagnostic(`nothing shed: the queue formed outside halflife (max pressure ${maxPressure.toFixed(2)})`);
    }
    assert.equal(stats.hi.shed, 0, report);
    assert.equal(stats.hi.other + stats.mid.other + stats.lo.other, 0, `no failures other than shedding: ${report}`);
    assert.ok(maxRss > 0 && maxRss < BUDGET, `resident memory stayed under the budget: ${report}`);
    assert.ok(probes.length >= 2 && slowestProbeMs < drainMs, `the server stayed responsive: ${report}`);
  } finally {
    agent.destroy();
    server.child.kill('SIGTERM');
    await server.exited;
  }
  // Every acknowledged event is in the log, exactly once.
  try {
    const log = new SegmentLog({ dir: join(dir, 'log', 'events'), partitions: 8, fsync: 'never' });
    await log.start();
    const seen = new Map<string, number>();
    for (let p = 0; p < 8; p++) {
      for (let from = 0; ; ) {
        const batch = await log.read(p, from, { maxRecords: 5000 });
        if (batch.length === 0) break;
        for (const r of batch) {
          const id = decodeEventRecord(r.value).id!;
          seen.set(id, (seen.get(id) ?? 0) + 1);
        }
        from = batch[batch.length - 1].offset + 1;
      }
    }
    await log.close();
    let missing = 0;
    for (const id of acked) if (seen.get(id) !== 1) missing++;
    assert.equal(missing, 0, `${missing} of ${acked.size} acknowledged events are not in the log exactly once`);
  } finally {
    await cleanup();
  }
});
