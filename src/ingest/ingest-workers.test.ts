import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileKvStore, decodeEventRecord, ManualClock } from '../core/index.js';
import { defaultConfig } from '../config/index.js';
import { MemoryLog } from '../log/index.js';
import { SchemaRegistry } from '../schema/index.js';
import { DeadLetterStore } from './dead-letters.js';
import { Ingestor } from './ingestor.js';
import { IngestWorkers } from './ingest-workers.js';
import { tempDir } from '../../test/helpers/tmp.js';

const schema = {
  type: 'object',
  properties: { a: { type: 'string' }, n: { type: 'integer', minimum: 0 } },
  required: ['a'],
};

async function setup(workers: number, overrides: Partial<ReturnType<typeof defaultConfig>['ingest']> = {}) {
  const { dir, cleanup } = await tempDir();
  const registry = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
  await registry.start();
  await registry.register('t', schema);
  const log = new MemoryLog(3);
  const clock = new ManualClock(1_700_000_000_000);
  const deadLetters = new DeadLetterStore(new MemoryLog(1), new MemoryLog(1), clock);
  await deadLetters.start();
  const limits = { ...defaultConfig().ingest, maxEventBytes: 4096, maxDepth: 6, maxEventsPerRequest: 100_000, ...overrides };
  const pool = workers > 0 ? new IngestWorkers({ count: workers, limits, registry, restartDelayMs: 100 }) : undefined;
  await pool?.start();
  const ingestor = new Ingestor({ limits, log, registry, deadLetters, clock, workers: pool });
  await ingestor.start();
  return {
    registry,
    log,
    pool,
    deadLetters,
    ingestor,
    send: (body: string, format: 'json' | 'ndjson' = 'json') => ingestor.ingestBody(Buffer.from(body), format, { address: 'test' }),
    async stored() {
      const out: unknown[] = [];
      for (let p = 0; p < log.partitionCount; p++) for (const r of await log.read(p, 0, { maxRecords: 100_000 })) out.push([p, r.offset, decodeEventRecord(r.value, r.key)]);
      return out;
    },
    async letters() {
      return (await deadLetters.list({}, 100_000)).deadletters.map(({ id: _id, ...l }) => l);
    },
    async close() {
      await ingestor.close();
      await pool?.close();
      await registry.close();
      await cleanup();
    },
  };
}

/** A body over the worker threshold with good and bad events of every kind, and repeated ids. */
function mixedEvents(n: number): unknown[] {
  let deep: unknown = { x: 1 };
  for (let i = 0; i < 8; i++) deep = { d: deep };
  const bad = [
    { type: 't', data: { n: 1 } },
    { type: 'nope', data: { a: 'x' } },
    { type: 't', data: { a: 'x', n: -1 } },
    { type: 't', data: { a: 'x' }, extra: true },
    { type: 't', data: { a: 'x', deep } },
    { type: 't', data: { a: 'x'.repeat(5000) } },
    'not an object',
  ];
  return Array.from({ length: n }, (_, i) => (i % 10 === 9 ? bad[(i / 10) % bad.length | 0] : { type: 't', key: i % 3 === 0 ? `k${i % 7}` : undefined, id: i % 4 === 0 ? `id${i % 50}` : undefined, data: { a: `a${i}`, n: i, é: ['ü', 1.5, null] } }));
}

test('a large body is checked on a worker thread exactly as on the server thread: results, records, dead letters', async () => {
  const here = await setup(0);
  const there = await setup(1);
  try {
    const body = JSON.stringify(mixedEvents(600));
    assert.ok(body.length > 16 * 1024, 'over the worker threshold');
    const ndjson = mixedEvents(300).map((e) => JSON.stringify(e)).join('\n') + '\n{broken\n';
    const outcomes = [];
    for (const s of [here, there]) {
      const first = await s.send(body);
      const again = await s.send(body);
      const lines = await s.send(ndjson, 'ndjson');
      outcomes.push({ first, again, lines, stored: await s.stored(), letters: await s.letters() });
    }
    assert.deepEqual(outcomes[1], outcomes[0]);
    const { first, again, lines } = outcomes[0];
    assert.ok(first.accepted > 400 && first.rejected === 60, JSON.stringify(first).slice(0, 200));
    assert.deepEqual(new Set(first.errors.map((e) => e.code)), new Set(['SCHEMA_VALIDATION', 'UNKNOWN_TYPE', 'INVALID_EVENT', 'TOO_DEEP', 'EVENT_TOO_LARGE']));
    assert.ok(again.duplicates > 0 && again.accepted < first.accepted);
    assert.equal(lines.errors.at(-1)?.code, 'MALFORMED_JSON');
  } finally {
    await here.close();
    await there.close();
  }
});

test('a schema registered before a request is in force for it on the worker', async () => {
  const s = await setup(1);
  try {
    await s.registry.setCompatibility('t', 'none');
    const events = (v: number) => JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ type: 't', data: { a: `x${i}`, v } })));
    for (let version = 2; version <= 6; version++) {
      // Each version allows only its own `v`.
      await s.registry.register('t', { type: 'object', properties: { a: { type: 'string' }, v: { const: version } }, required: ['a', 'v'] });
      const ok = await s.send(events(version));
      assert.equal(ok.accepted, 400, `version ${version}`);
      const stale = await s.send(events(version - 1));
      assert.equal(stale.rejected, 400);
      assert.equal(stale.errors[0].code, 'SCHEMA_VALIDATION');
    }
    const letter = (await s.letters()).at(-1) as { schema_version: number };
    assert.equal(letter.schema_version, 6);
  } finally {
    await s.close();
  }
});

test('a worker that dies mid-request fails that request (503, retryable, nothing stored); others go on, and it is replaced', async () => {
  const s = await setup(1);
  try {
    const big = JSON.stringify(Array.from({ length: 60_000 }, (_, i) => ({ type: 't', id: `big${i}`, data: { a: `a${i}` } })));
    const inFlight = s.send(big);
    await s.pool!.terminateWorker(0);
    await assert.rejects(inFlight, (err: { code: string; status: number; retryable: boolean }) => {
      assert.equal(err.code, 'INGEST_WORKER_FAILED');
      assert.equal(err.status, 503);
      assert.equal(err.retryable, true);
      return true;
    });
    assert.equal(s.log.stats().records, 0, 'nothing of the failed request is stored');
    // While no worker runs, the server thread checks bodies itself.
    assert.equal(s.pool!.available, false);
    assert.equal((await s.send(JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ type: 't', data: { a: `b${i}` } }))))).accepted, 500);
    for (let i = 0; i < 200 && !s.pool!.available; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(s.pool!.available, true, 'a new worker runs');
    // The retry of the failed request is stored once: its ids were not taken by the failure.
    assert.equal((await s.send(big)).accepted, 60_000);
  } finally {
    await s.close();
  }
});

test('a request whose check runs past ingest.workerTimeoutMs fails (503, retryable, nothing stored); its worker is replaced and other requests go on', async () => {
  // A step budget high enough that the time budget stops the check first.
  const s = await setup(2, { workerTimeoutMs: 1000, maxDepth: 40, maxValidationSteps: 1_000_000_000, maxValidationMs: 60_000 });
  try {
    // Slow without any regex: each level tries the subtree twice (anyOf), so depth 27 is 2^27 steps, about 15 s.
    const ref = { properties: { x: { $ref: '#/$defs/n' } } };
    await s.registry.register('slow', { $defs: { n: { anyOf: [{ allOf: [ref, { required: ['never'] }] }, ref] } }, $ref: '#/$defs/n' });
    let deep: unknown = {};
    for (let i = 0; i < 27; i++) deep = { x: deep };
    // Padded over the size from which bodies go to a worker.
    const slow = JSON.stringify([{ type: 'slow', data: deep }, { type: 't', data: { a: 'x'.repeat(3000) } }].concat(Array(6).fill({ type: 't', data: { a: 'y'.repeat(3000) } })));
    const normal = JSON.stringify(Array.from({ length: 500 }, (_, i) => ({ type: 't', data: { a: `n${i}` } })));
    const started = Date.now();
    const stuck = s.send(slow);
    // The other worker checks other requests meanwhile.
    assert.equal((await s.send(normal)).accepted, 500);
    await assert.rejects(stuck, (err: { code: string; status: number; retryable: boolean; message: string }) => {
      assert.equal(err.code, 'INGEST_WORKER_FAILED');
      assert.equal(err.status, 503);
      assert.equal(err.retryable, true);
      assert.match(err.message, /workerTimeoutMs \(1000 ms\)/);
      return true;
    });
    assert.ok(Date.now() - started < 8000, `failed after ${Date.now() - started} ms, not at its budget`);
    assert.equal(s.log.stats().records, 500, 'nothing of the slow request is stored');
    for (let i = 0; i < 400 && s.pool!.running < 2; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(s.pool!.running, 2, 'the stopped worker is replaced');
    // Both workers, the new one included, check requests with the registered schemas.
    const results = await Promise.all([s.send(normal), s.send(normal), s.send(normal)]);
    assert.deepEqual(results.map((r) => r.accepted), [500, 500, 500]);
  } finally {
    await s.close();
  }
});

/** Each level tries the subtree twice (anyOf): validating an event `depth` levels deep follows 2^depth references. */
const EXPONENTIAL = (() => {
  const ref = { properties: { x: { $ref: '#/$defs/n' } } };
  return { $defs: { n: { anyOf: [{ allOf: [ref, { required: ['never'] }] }, ref] } }, $ref: '#/$defs/n' };
})();

function nested(depth: number): unknown {
  let deep: unknown = {};
  for (let i = 0; i < depth; i++) deep = { x: deep };
  return deep;
}

test('on the server thread an event costs at most ingest.maxValidationSteps / maxValidationMs, and other work runs between events', async () => {
  const s = await setup(0, { maxDepth: 40 });
  try {
    await s.registry.register('slow', EXPONENTIAL);
    // Without the budget each of these would take minutes; with it, about 0.1 s each.
    const body = JSON.stringify([...Array.from({ length: 12 }, () => ({ type: 'slow', data: nested(30) })), { type: 'slow', data: nested(3) }]);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const result = await s.send(body).finally(() => clearInterval(ticker));
    assert.equal(result.accepted, 1);
    assert.equal(result.rejected, 12);
    assert.ok(result.errors.every((e) => e.code === 'SCHEMA_TOO_COSTLY' && e.path === '$.data'), JSON.stringify(result.errors[0]));
    assert.match(result.errors[0].message, /^the event could not be checked against its schema: data: validating it (evaluated more than 1000000 schema nodes \(ingest\.maxValidationSteps\)|took longer than 100 ms \(ingest\.maxValidationMs\))/);
    // The check let timers run between events (it yields every few milliseconds), not once at the end.
    assert.ok(turns >= 6, `timers ran ${turns} times while 12 costly events were checked`);
    const letters = await s.letters();
    assert.equal(letters.length, 12);
    assert.ok(letters.every((l) => (l as { code: string }).code === 'SCHEMA_TOO_COSTLY'));
  } finally {
    await s.close();
  }
});

test('a small body with events of a type whose schema follows references is checked on a worker', async () => {
  const s = await setup(1, { maxDepth: 40 });
  try {
    await s.registry.register('slow', EXPONENTIAL);
    const body = JSON.stringify(Array.from({ length: 8 }, () => ({ type: 'slow', data: nested(30) })));
    assert.ok(body.length < 16 * 1024, 'below the size from which bodies go to a worker anyway');
    const pending = s.send(body);
    let seen = 0;
    for (let i = 0; i < 2000 && seen === 0; i++) {
      seen = s.pool!.health().oldestCheckMs;
      await new Promise((r) => setImmediate(r));
    }
    const result = await pending;
    assert.ok(seen > 0, 'the request was never on the worker');
    assert.deepEqual(result.errors.map((e) => e.code), Array(8).fill('SCHEMA_TOO_COSTLY'));
    // Events of a type without references stay on this thread.
    assert.equal((await s.send(JSON.stringify({ type: 't', data: { a: 'x' } }))).accepted, 1);
    assert.equal(s.pool!.health().oldestCheckMs, 0);
  } finally {
    await s.close();
  }
});

test('on the server thread a request is bounded by ingest.workerTimeoutMs (INGEST_TIMEOUT, nothing stored)', async () => {
  const s = await setup(0, { maxDepth: 40, workerTimeoutMs: 300 });
  try {
    await s.registry.register('slow', EXPONENTIAL);
    // Each event stops at its own budget (about 0.1 s); 60 of them are far past the request's (also on a busy machine).
    const body = JSON.stringify([{ type: 't', data: { a: 'x' } }, ...Array.from({ length: 60 }, () => ({ type: 'slow', data: nested(30) }))]);
    await assert.rejects(s.send(body), (err: { code: string; status: number; retryable: boolean; message: string }) => {
      assert.equal(err.code, 'INGEST_TIMEOUT');
      assert.equal(err.status, 503);
      assert.equal(err.retryable, true);
      assert.match(err.message, /took longer than ingest\.workerTimeoutMs \(300 ms\); nothing of it was stored/);
      return true;
    });
    assert.equal(s.log.stats().records, 0);
    assert.equal((await s.letters()).length, 0);
  } finally {
    await s.close();
  }
});

test('while no worker runs, events of a metered type are refused (retryable), not checked on the server thread', async () => {
  const s = await setup(1, { maxDepth: 40 });
  try {
    await s.registry.register('slow', EXPONENTIAL);
    await s.pool!.terminateWorker(0);
    assert.equal(s.pool!.running, 0);
    await assert.rejects(s.send(JSON.stringify([{ type: 'slow', data: nested(30) }])), (err: { code: string; retryable: boolean; message: string }) => {
      assert.equal(err.code, 'INGEST_WORKER_FAILED');
      assert.equal(err.retryable, true);
      assert.match(err.message, /no worker is running \(a stopped one is being replaced\)/);
      return true;
    });
    // Other small bodies are checked here meanwhile.
    assert.equal((await s.send(JSON.stringify({ type: 't', data: { a: 'x' } }))).accepted, 1);
  } finally {
    await s.close();
  }
});
