import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileKvStore, decodeEventRecord, HalflifeError, ManualClock } from '../core/index.js';
import { defaultConfig } from '../config/index.js';
import { MemoryLog, withStoredBeforeFailure, type AppendAck, type AppendRecord } from '../log/index.js';
import { SchemaRegistry } from '../schema/index.js';
import { DeadLetterStore } from './dead-letters.js';
import { Ingestor, type IngestorOptions, type RequestPolicy, type Shedding } from './ingestor.js';
import { tempDir } from '../../test/helpers/tmp.js';

/** A log whose appends can be made to fail after a delay, like a disk filling up mid-request. */
class FlakyLog extends MemoryLog {
  failNext = false;
  /** Fails the next append after storing its even-numbered records (as JetStream may, publishing per partition). */
  failNextPartly = false;
  override async append(records: readonly AppendRecord[]): Promise<AppendAck[]> {
    if (this.failNextPartly) {
      this.failNextPartly = false;
      const stored = records.flatMap((_r, i) => (i % 2 === 0 ? [i] : []));
      await super.append(stored.map((i) => records[i]));
      throw withStoredBeforeFailure(new HalflifeError('LOG_WRITE_FAILED', { reason: 'no responders' }), stored);
    }
    if (this.failNext) {
      this.failNext = false;
      await new Promise((r) => setTimeout(r, 30));
      throw new HalflifeError('LOG_WRITE_FAILED', { reason: 'disk full' });
    }
    return super.append(records);
  }
}

async function setup(overrides: Partial<ReturnType<typeof defaultConfig>['ingest']> = {}) {
  const { dir, cleanup } = await tempDir();
  const registry = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
  await registry.start();
  const log = new FlakyLog(4);
  const clock = new ManualClock();
  const deadLetters = new DeadLetterStore(new MemoryLog(1), new MemoryLog(1), clock);
  await deadLetters.start();
  const ingestor = new Ingestor({ limits: { ...defaultConfig().ingest, ...overrides }, log, registry, deadLetters, clock });
  await ingestor.start();
  const send = (events: unknown) => ingestor.ingestBody(Buffer.from(JSON.stringify(events)), 'json', { address: 'test' });
  return { registry, log, send, ingestor, async close() { await ingestor.close(); await registry.close(); await cleanup(); } };
}

test('a repeat of an id whose first append fails is not acknowledged; the retry is stored', async () => {
  const s = await setup({ unknownTypes: 'accept' });
  try {
    const ev = { type: 'x', id: 'only-once', data: { n: 1 } };
    s.log.failNext = true;
    const first = s.send([ev]);
    const repeat = s.send([ev]);
    await assert.rejects(first, { code: 'LOG_WRITE_FAILED' });
    await assert.rejects(repeat, { code: 'LOG_WRITE_FAILED' }, 'the repeat must not be acknowledged as a duplicate');
    const retry = await s.send([ev]);
    assert.deepEqual([retry.accepted, retry.duplicates], [1, 0]);
    assert.equal(s.log.stats().records, 1);
  } finally {
    await s.close();
  }
});

test('a request the log stored only in part fails, and its retry stores the rest once: what was stored is a duplicate', async () => {
  const s = await setup({ unknownTypes: 'accept' });
  try {
    const events = Array.from({ length: 6 }, (_, i) => ({ type: 'x', id: `part-${i}`, data: { n: i } }));
    s.log.failNextPartly = true;
    await assert.rejects(s.send(events), { code: 'LOG_WRITE_FAILED' });
    assert.equal(s.log.stats().records, 3);
    const retry = await s.send(events);
    assert.deepEqual([retry.accepted, retry.duplicates], [3, 3]);
    assert.equal(s.log.stats().records, 6, 'each event stored once');
  } finally {
    await s.close();
  }
});

test('unknown types are accepted unvalidated with schema_version 0 when configured', async () => {
  const s = await setup({ unknownTypes: 'accept' });
  try {
    const res = await s.send({ type: 'anything', data: { free: ['form'] }, ts: 1_699_999_999_000 });
    assert.equal(res.accepted, 1);
    const p = s.log.stats().partitions.find((x) => x.records === 1)!;
    const [rec] = await s.log.read(p.partition, 0);
    assert.deepEqual(decodeEventRecord(rec.value), {
      type: 'anything', data: { free: ['form'] }, event_time: 1_699_999_999_000, received_at: 1_700_000_000_000, schema_version: 0,
    });
  } finally {
    await s.close();
  }
});

test('the stored record holds the validated data, not a second copy of the text; keyed events go to their key partition', async () => {
  const s = await setup({ unknownTypes: 'accept' });
  try {
    await s.ingestor.ingestBody(Buffer.from('[ {"type":"t", "key":"k1",\n "data":{"a":1, "b":[1.50, "x"]}, "id":"i1"} ]'), 'json', { address: 'x' });
    const [rec] = await s.log.read(s.log.partitionFor('k1'), 0);
    assert.equal(rec.key, 'k1');
    assert.deepEqual(decodeEventRecord(rec.value, rec.key), {
      type: 't', data: { a: 1, b: [1.5, 'x'] }, id: 'i1', key: 'k1', received_at: 1_700_000_000_000, schema_version: 0,
    });
    assert.doesNotMatch(Buffer.from(rec.value).toString('latin1'), /"data"/, 'no JSON text is stored');
  } finally {
    await s.close();
  }
});

async function setupWith(opts: Partial<IngestorOptions>, limits: Partial<ReturnType<typeof defaultConfig>['ingest']> = {}) {
  const { dir, cleanup } = await tempDir();
  const registry = new SchemaRegistry({ kv: new FileKvStore(dir), defaultCompatibility: 'backward' });
  await registry.start();
  for (const t of ['audit', 'page', 'debug']) await registry.register(t, { type: 'object' });
  const log = new MemoryLog(4);
  const clock = new ManualClock(1_000_000);
  const deadLetters = new DeadLetterStore(new MemoryLog(1), new MemoryLog(1), clock);
  await deadLetters.start();
  const ingestor = new Ingestor({
    limits: { ...defaultConfig().ingest, priorities: { audit: 'high', debug: 'low' }, ...limits },
    log,
    registry,
    deadLetters,
    clock,
    ...opts,
  });
  await ingestor.start();
  const send = (events: unknown, policy?: RequestPolicy) => ingestor.ingestBody(Buffer.from(JSON.stringify(events)), 'json', { address: 'test' }, policy);
  const letters = async () => (await deadLetters.list({}, 1000)).deadletters.length;
  return { log, clock, ingestor, send, letters, async close() { await ingestor.close(); await registry.close(); await cleanup(); } };
}

test('under overload low events are shed first, then normal ones; high ones never; shed events are counted, not stored', async () => {
  let shedding: Shedding = { level: 1, reason: 'queue' };
  const s = await setupWith({ shedding: () => shedding });
  try {
    const body = [{ type: 'debug', data: {} }, { type: 'page', data: {} }, { type: 'audit', data: {} }, { type: 'debug', data: {} }, { type: 'page', data: 5 }];
    const r1 = await s.send(body);
    assert.equal(r1.accepted, 2);
    assert.equal(r1.shed, 2);
    assert.equal(r1.rejected, 1);
    assert.deepEqual(r1.errors.map((e) => [e.index, e.code]), [[0, 'OVERLOADED'], [3, 'OVERLOADED'], [4, 'INVALID_EVENT']]);
    shedding = { level: 2, reason: 'memory' };
    const r2 = await s.send(body);
    assert.equal(r2.accepted, 1);
    assert.equal(r2.shed, 4, 'an event is shed by its type before it is checked');
    assert.deepEqual(s.ingestor.shedCounts(), { debug: { queue: 2, memory: 2 }, page: { memory: 2 } });
    assert.equal(s.log.stats().records, 3);
    const lettersBefore = await s.letters();
    // Nothing of a request would be stored: it is refused whole, and its bad events are not dead-lettered either.
    await assert.rejects(s.send([{ type: 'debug', data: {} }, { type: 'page', data: {} }, { type: 'page', data: 'bad' }]), (err: HalflifeError) => {
      assert.equal(err.code, 'OVERLOADED');
      assert.equal(err.status, 429);
      assert.match(err.message, /overloaded \(memory\) and sheds low- and normal-priority events/);
      return true;
    });
    assert.equal(await s.letters(), lettersBefore);
    assert.equal(s.log.stats().records, 3);
    shedding = { level: 0, reason: 'memory' };
    assert.equal((await s.send(body)).accepted, 4);
  } finally {
    await s.close();
  }
});

test('an API key over its token bucket is refused whole with the seconds to wait, and refused before parsing once empty', async () => {
  const s = await setupWith({});
  const policy: RequestPolicy = { rateLimit: { name: 'k1', eventsPerS: 10, burstEvents: 20 } };
  try {
    const events = (n: number) => Array.from({ length: n }, () => ({ type: 'page', data: {} }));
    assert.equal((await s.send(events(15), policy)).accepted, 15);
    await assert.rejects(s.send(events(10), policy), (err: HalflifeError) => {
      assert.equal(err.code, 'RATE_LIMITED');
      assert.equal(err.details?.retryAfterS, 1);
      return true;
    });
    assert.equal((await s.send(events(5), policy)).accepted, 5);
    await assert.rejects(s.ingestor.ingestBody(Buffer.from('{not json'), 'json', { address: 'x' }, policy), { code: 'RATE_LIMITED' }, 'an empty bucket refuses before parsing');
    s.clock.advance(1000);
    await assert.rejects(s.send(events(21), policy), (err: HalflifeError) => /split the request/.test(err.message));
    assert.equal((await s.send(events(10), policy)).accepted, 10);
    assert.equal((await s.send(events(5), { rateLimit: { name: 'k2', eventsPerS: 10, burstEvents: 20 } })).accepted, 5, 'another key has its own bucket');
    assert.equal(s.log.stats().records, 35);
  } finally {
    await s.close();
  }
});

test('a hot partition key beyond its bucket goes to the overflow partition; other keys keep theirs', async () => {
  const s = await setupWith({ hotKeys: { eventsPerS: 1, burstEvents: 5, overflowPartition: 3 } });
  try {
    const hot = Array.from({ length: 20 }, (_, i) => ({ type: 'page', key: 'hot', data: { i } }));
    const cold = Array.from({ length: 5 }, (_, i) => ({ type: 'page', key: 'cold', data: { i } }));
    assert.equal((await s.send([...hot, ...cold])).accepted, 25);
    const hotHome = s.log.partitionFor('hot');
    const coldHome = s.log.partitionFor('cold');
    assert.notEqual(hotHome, 3, 'the test needs the hot key to live elsewhere');
    const keysIn = async (p: number) => (await s.log.read(p, 0, { maxRecords: 100 })).map((r) => r.key);
    assert.equal((await keysIn(hotHome)).filter((k) => k === 'hot').length, 5);
    assert.equal((await keysIn(3)).filter((k) => k === 'hot').length, 15);
    assert.equal((await keysIn(coldHome)).filter((k) => k === 'cold').length, 5);
    assert.equal(s.ingestor.divertedEvents, 15);
  } finally {
    await s.close();
  }
});
