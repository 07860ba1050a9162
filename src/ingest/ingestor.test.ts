import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEventRecord, HalflifeError, ManualClock } from '../core/index.js';
import { defaultConfig } from '../config/index.js';
import { MemoryLog, type AppendAck, type AppendRecord } from '../log/index.js';
import { SchemaRegistry } from '../schema/index.js';
import { DeadLetterStore } from './dead-letters.js';
import { Ingestor } from './ingestor.js';
import { tempDir } from '../../test/helpers/tmp.js';

/** A log whose appends can be made to fail after a delay, like a disk filling up mid-request. */
class FlakyLog extends MemoryLog {
  failNext = false;
  override async append(records: readonly AppendRecord[]): Promise<AppendAck[]> {
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
  const registry = new SchemaRegistry({ dir, defaultCompatibility: 'backward' });
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

test('unknown types are accepted unvalidated with schema_version 0 when configured', async () => {
  const s = await setup({ unknownTypes: 'accept' });
  try {
    const res = await s.send({ type: 'anything', data: { free: ['form'] }, ts: 1000 });
    assert.equal(res.accepted, 1);
    const p = s.log.stats().partitions.find((x) => x.records === 1)!;
    const [rec] = await s.log.read(p.partition, 0);
    assert.deepEqual(decodeEventRecord(rec.value), {
      type: 'anything', data: { free: ['form'] }, event_time: 1000, received_at: 1_700_000_000_000, schema_version: 0,
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
