import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { deflateRawSync } from 'node:zlib';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { HalflifeError } from '../src/core/index.js';
import { JetStreamLog, KvOffsetStore, MemoryLog, SegmentLog, positionAfter, storedBeforeFailure, type Log, type LogRecord } from '../src/log/index.js';
import { NatsKvStore } from '../src/log/nats-kv.js';
import { hasNatsServer, startNats, type NatsServer } from './helpers/nats.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The log contract (ARCHITECTURE.md, "The log"): LogWriter, LogReader with opaque ordered positions and `tail`, and
 * the OffsetStore, run against every backend: memory, embedded segment files and NATS JetStream (a nats-server of
 * the test's own). Positions are only compared and followed (`next`), never added to, as every room above does.
 */
interface Opened {
  readonly log: Log;
  /** The same log as a new process would open it (files: from its folder; NATS: a new connection). */
  reopen?(): Promise<Log>;
}

interface Backend {
  readonly name: string;
  fresh(partitions: number): Promise<Opened>;
  readonly skip?: string | false;
  /** Fewer property runs where each costs a stream. */
  readonly runs: number;
}

const connections: NatsConnection[] = [];
const open: Log[] = [];
const cleanups: (() => Promise<void>)[] = [];
// Registered before the NATS server is started: a file's `after` hooks run in the order they were registered, and
// starting it registers one that kills it (every stop below would then wait on requests to a server that is gone).
after(async () => {
  for (const log of open) await log.close().catch(() => {});
  for (const nc of connections) await nc.close().catch(() => {});
  await nats?.stop();
  for (const c of cleanups) await c();
});
// Started at module load (not in before()): node:test evaluates `skip` and the backends before hooks run.
const nats: NatsServer | undefined = hasNatsServer ? await startNats() : undefined;
let streamNo = 0;

async function natsLog(nc: NatsConnection, n: number, partitions: number, compression?: 'deflate' | 'none'): Promise<Log> {
  const kv = await NatsKvStore.open(nc, { bucket: `offsets_${process.pid}_${n}` });
  const log = new JetStreamLog({ connection: nc, partitions, stream: `LOG_${process.pid}_${n}`, subjectPrefix: `t${process.pid}_${n}`, offsets: new KvOffsetStore(kv), compression });
  await log.start();
  open.push(log);
  return log;
}

const backends: Backend[] = [
  {
    name: 'memory',
    runs: 40,
    async fresh(partitions) {
      const log = new MemoryLog(partitions);
      await log.start();
      open.push(log);
      return { log };
    },
  },
  {
    name: 'segment files',
    runs: 40,
    async fresh(partitions) {
      const { dir, cleanup } = await tempDir('halflife-logc-');
      cleanups.push(cleanup);
      const make = async () => {
        const log = new SegmentLog({ dir, partitions, fsync: 'never', segmentBytes: 4096 });
        await log.start();
        open.push(log);
        return log;
      };
      const log = await make();
      return {
        log,
        async reopen() {
          await log.close();
          return make();
        },
      };
    },
  },
  {
    name: 'NATS JetStream',
    skip: hasNatsServer ? false : 'nats-server not installed',
    runs: 8,
    async fresh(partitions) {
      const n = ++streamNo;
      const nc = await connect({ servers: nats!.url });
      connections.push(nc);
      const log = await natsLog(nc, n, partitions);
      return {
        log,
        async reopen() {
          await log.close();
          const again = await connect({ servers: nats!.url });
          connections.push(again);
          // Reopened with the other setting (its records here are too small to be deflated: the compressed batches'
          // own test below mixes both kinds in one stream).
          return natsLog(again, n, partitions, 'none');
        },
      };
    },
  },
];


const text = (r: LogRecord) => Buffer.from(r.value).toString('utf8');

/** Every record of a partition, read from its first position by following `next` in reads of `chunk` records. */
async function readAll(log: Log, p: number, chunk: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let at: number = log.stats().partitions[p].firstOffset;
  for (;;) {
    const got = await log.read(p, at, { maxRecords: chunk });
    if (got.length === 0) return out;
    out.push(...got);
    at = got[got.length - 1].next;
  }
}

for (const b of backends) {
  describe(`log contract: ${b.name}`, { skip: b.skip }, () => {
    test('what is appended is read back in order, per partition, with keys and times; acks name the positions read', async () => {
      const { log } = await b.fresh(3);
      const acks = await log.append([
        { key: 'k1', timestampMs: 1000, value: 'a' },
        { key: 'k2', timestampMs: 1001, value: Buffer.from('b') },
        { timestampMs: 1002, value: 'c', partition: 2 },
        { key: 'k1', timestampMs: 1003, value: 'd' },
      ]);
      assert.equal(acks[0].partition, log.partitionFor('k1'));
      assert.equal(acks[3].partition, acks[0].partition);
      assert.equal(acks[2].partition, 2);
      for (let p = 0; p < 3; p++) {
        const records = await readAll(log, p, 1000);
        const expected = acks.map((a, i) => ({ a, i })).filter(({ a }) => a.partition === p);
        assert.deepEqual(records.map((r) => r.offset), expected.map(({ a }) => a.offset));
        for (const r of records) assert.equal(r.partition, p);
      }
      const k1 = await readAll(log, acks[0].partition, 1000);
      const mine = k1.filter((r) => r.key === 'k1');
      assert.deepEqual(mine.map(text), ['a', 'd']);
      assert.deepEqual(mine.map((r) => r.timestampMs), [1000, 1003]);
      assert.ok(mine[0].offset < mine[1].offset, 'positions grow within a partition');
      const c = (await readAll(log, 2, 1000)).find((r) => text(r) === 'c')!;
      assert.equal(c.key, undefined);
    });

    test('property: any appends, read in any chunk size by following next, give each partition\'s records once, in order (model: lists)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(fc.record({ key: fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'é'), { nil: undefined }), value: fc.string({ maxLength: 40 }) }), { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 6 }),
          fc.integer({ min: 1, max: 7 }),
          async (appends, chunk) => {
            const { log } = await b.fresh(3);
            const model: string[][] = [[], [], []];
            let t = 1;
            for (const batch of appends) {
              const acks = await log.append(batch.map((r) => ({ key: r.key, timestampMs: t++, value: r.value })));
              acks.forEach((a, i) => model[a.partition].push(`${batch[i].key ?? '-'}:${batch[i].value}`));
            }
            for (let p = 0; p < 3; p++) {
              const got = await readAll(log, p, chunk);
              assert.deepEqual(got.map((r) => `${r.key ?? '-'}:${text(r)}`), model[p]);
              for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].offset < got[i].offset && got[i - 1].next <= got[i].offset);
              // The batch read agrees with the record read, and its `next` goes on where the records stop.
              const batch = await log.readBatch(p, log.stats().partitions[p].firstOffset, { maxRecords: chunk });
              assert.deepEqual([...batch.offsets], got.slice(0, batch.count).map((r) => r.offset));
              for (let i = 0; i < batch.count; i++) assert.equal(Buffer.from(batch.buffer.subarray(batch.valueStarts[i], batch.valueEnds[i])).toString('utf8'), text(got[i]));
              if (batch.count > 0) {
                const after = await log.read(p, positionAfter(batch, batch.count - 1), { maxRecords: 1 });
                assert.deepEqual(after.map((r) => r.offset), got.slice(batch.count, batch.count + 1).map((r) => r.offset));
              }
              assert.equal(log.lag(p, log.stats().partitions[p].firstOffset), model[p].length, 'lag from the start is the records held');
              assert.equal(log.lag(p, log.stats().partitions[p].nextOffset), 0);
              // Lag is exact at every record (JetStream: for positions among its recent messages, as here).
              got.forEach((r, i) => assert.equal(log.lag(p, r.offset), model[p].length - i, `lag at record ${i}`));
              // Reading at the end returns nothing, and the empty batch stays where it is.
              const end = log.stats().partitions[p].nextOffset;
              assert.equal((await log.read(p, end)).length, 0);
              assert.equal((await log.readBatch(p, end)).next, end);
            }
            await log.close();
          },
        ),
        { numRuns: b.runs },
      );
    });

    test('an append larger than one write or message (3 MiB) is kept whole and in order', async () => {
      const { log } = await b.fresh(2);
      const value = (i: number) => `${String(i).padStart(6, '0')}${'x'.repeat(1018)}`;
      const acks = await log.append(Array.from({ length: 3000 }, (_, i) => ({ timestampMs: 1000 + i, value: value(i), partition: 1 })));
      for (let i = 1; i < acks.length; i++) assert.ok(acks[i - 1].offset < acks[i].offset);
      const got = await readAll(log, 1, 700);
      assert.equal(got.length, 3000);
      got.forEach((r, i) => assert.equal(text(r), value(i)));
      assert.deepEqual(got.map((r) => r.offset), acks.map((a) => a.offset));
      assert.equal(log.lag(1, got[0].offset), 3000);
      assert.equal(log.lag(1, got[2999].offset), 1);
      assert.equal(text((await log.read(1, await log.offsetForTime(1, 2500), { maxRecords: 1 }))[0]), value(1500));
    });

    test('tail resolves at once when records are there, when one is appended, and false when aborted', async () => {
      const { log } = await b.fresh(2);
      const end = log.stats().partitions[1].nextOffset;
      const waiting = log.tail(1, end);
      let settled = false;
      void waiting.then(() => (settled = true));
      await log.append([{ timestampMs: 1, value: 'x', partition: 0 }]);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(settled, false, 'a record in another partition does not wake a tail');
      const [ack] = await log.append([{ timestampMs: 2, value: 'y', partition: 1 }]);
      assert.equal(await waiting, true);
      assert.equal(await log.tail(1, ack.offset), true, 'a record at the position: at once');
      const ctl = new AbortController();
      const aborted = log.tail(1, log.stats().partitions[1].nextOffset, ctl.signal);
      ctl.abort();
      assert.equal(await aborted, false);
    });

    test('offsetForTime: the first position at or after a time, the end when there is none', async () => {
      const { log } = await b.fresh(1);
      await log.append([10, 20, 30].map((t) => ({ timestampMs: t, value: String(t), partition: 0 })));
      await log.append([40, 50].map((t) => ({ timestampMs: t, value: String(t), partition: 0 })));
      for (const [t, want] of [[0, '10'], [10, '10'], [11, '20'], [30, '30'], [31, '40'], [50, '50']] as const) {
        const at = await log.offsetForTime(0, t);
        assert.equal(text((await log.read(0, at, { maxRecords: 1 }))[0]), want, `time ${t}`);
      }
      assert.equal(await log.offsetForTime(0, 51), log.stats().partitions[0].nextOffset);
    });

    test('offset store: positions per consumer and partition, merged, names checked', async () => {
      const { log } = await b.fresh(4);
      const [a] = await log.append([{ timestampMs: 1, value: 'x', partition: 1 }]);
      await log.commitOffsets('view.one', { 0: 0, 1: a.offset });
      await log.commitOffsets('view.one', { 2: 0 });
      await log.commitOffsets('view.two', { 3: 0 });
      assert.deepEqual(await log.committedOffsets('view.one'), { 0: 0, 1: a.offset, 2: 0 });
      assert.deepEqual(await log.committedOffsets('view.two'), { 3: 0 });
      assert.deepEqual(await log.committedOffsets('nobody'), {});
      await assert.rejects(log.commitOffsets('bad name!', { 0: 0 }), { code: 'INVALID_CONSUMER_NAME' });
      await assert.rejects(log.commitOffsets('view.one', { 9: 0 }), { code: 'PARTITION_NOT_FOUND' });
    });

    test('records and committed positions survive a reopen; positions go on growing after it', { skip: b.name === 'memory' ? 'in memory: nothing to reopen' : false }, async () => {
      const opened = await b.fresh(2);
      const before = await opened.log.append([{ key: 'k', timestampMs: 5, value: 'one' }]);
      await opened.log.commitOffsets('c', { [before[0].partition]: before[0].offset });
      const log = await opened.reopen!();
      const p = before[0].partition;
      assert.deepEqual((await readAll(log, p, 10)).map(text), ['one']);
      assert.deepEqual(await log.committedOffsets('c'), { [p]: before[0].offset });
      const [later] = await log.append([{ key: 'k', timestampMs: 6, value: 'two' }]);
      assert.ok(later.offset > before[0].offset);
      assert.deepEqual((await readAll(log, p, 1)).map(text), ['one', 'two']);
      assert.equal(log.lag(p, log.stats().partitions[p].firstOffset), 2);
    });
  });
}

describe('JetStream log shared by two processes', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('each is told the record ids the other appends (not its own), and reads the other\'s records', async () => {
    const n = ++streamNo;
    const [nc1, nc2] = await Promise.all([connect({ servers: nats!.url }), connect({ servers: nats!.url })]);
    connections.push(nc1, nc2);
    const one = await natsLog(nc1, n, 2);
    const two = await natsLog(nc2, n, 2);
    const seenByOne: string[] = [];
    const seenByTwo: string[] = [];
    one.watchIds!((ids) => seenByOne.push(...ids));
    two.watchIds!((ids) => seenByTwo.push(...ids));
    await one.append([{ key: 'k', timestampMs: 1, value: 'a', id: 'id-1' }, { key: 'k', timestampMs: 2, value: 'b' }, { key: 'k', timestampMs: 3, value: 'c', id: 'id-é' }]);
    const p = one.partitionFor('k');
    const t0 = Date.now();
    while (seenByTwo.length < 2) {
      assert.ok(Date.now() - t0 < 10_000, 'the other process was not told the ids');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(seenByTwo, ['id-1', 'id-é']);
    assert.ok(await two.tail(p, two.stats().partitions[p].firstOffset));
    assert.deepEqual((await readAll(two, p, 10)).map(text), ['a', 'b', 'c']);
    await two.append([{ key: 'k', timestampMs: 4, value: 'd', id: 'id-2' }]);
    while (seenByOne.length < 1) {
      assert.ok(Date.now() - t0 < 10_000, 'the first process was not told the id');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(seenByOne, ['id-2'], 'a process is not told its own ids');
  });
});

describe('JetStream log: what each process counts', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('two processes appending to one partition at once: each counts every record once and its lag from any position is what follows it', async () => {
    const n = ++streamNo;
    const [nc1, nc2] = await Promise.all([connect({ servers: nats!.url }), connect({ servers: nats!.url })]);
    connections.push(nc1, nc2);
    const logs = [await natsLog(nc1, n, 1), await natsLog(nc2, n, 1)];
    const acks: number[] = [];
    // Interleaved from both over many event-loop turns, several groups in flight each: a process may learn of the
    // other's messages (and of its own) out of order, also before the first one it counted.
    const sending: Promise<void>[] = [];
    for (let i = 0; i < 120; i++) {
      sending.push(
        logs[i % 2].append(Array.from({ length: 1 + (i % 7) }, (_, j) => ({ timestampMs: i, partition: 0, value: `r${i}.${j}` }))).then((got) => {
          acks.push(...got.map((a) => a.offset));
        }),
      );
      if (i % 3 === 2) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(sending);
    acks.sort((a, b) => a - b);
    for (const log of logs) {
      // Until its watcher told it of every message (bounded: a record missed would never be counted).
      const deadline = Date.now() + 20_000;
      while (log.stats().partitions[0].records < acks.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(log.stats().partitions[0].records, acks.length);
      for (const [i, at] of acks.entries()) assert.equal(log.lag(0, at), acks.length - i, `lag from the ${i}th record`);
    }
  });
});

describe('JetStream log: a request whose records fail on some partitions', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('one partition failing outright: the request names every record stored on the others (sent again, none is stored twice)', async () => {
    const n = ++streamNo;
    const nc = await connect({ servers: nats!.url });
    connections.push(nc);
    const log = await natsLog(nc, n, 2);
    // A record whose encoder fails as it is written (a producer's bug): its partition's message is not sent.
    const broken = { byteLength: 8, writeTo: (): number => { throw new Error('the encoder failed'); } };
    const err = await log.append([{ timestampMs: 1, partition: 0, value: 'kept' }, { timestampMs: 2, partition: 1, value: broken }]).then(
      () => assert.fail('the append succeeded'),
      (e: unknown) => e as HalflifeError,
    );
    assert.equal(err.code, 'LOG_WRITE_FAILED');
    assert.deepEqual([...storedBeforeFailure(err)], [0], 'the record stored on partition 0 is named');
    assert.deepEqual((await readAll(log, 0, 10)).map(text), ['kept']);
  });

  test('a record larger than a batch can hold is refused, even when it would compress below the message limit', async () => {
    const n = ++streamNo;
    const nc = await connect({ servers: nats!.url });
    connections.push(nc);
    const log = await natsLog(nc, n, 1);
    await assert.rejects(log.append([{ timestampMs: 1, partition: 0, value: 'a'.repeat(65 * 1024 * 1024) }]), (e: unknown) => e instanceof HalflifeError && e.code === 'LOG_WRITE_FAILED' && /most a batch can hold/.test(e.message));
  });
});

describe('JetStream log: batches stored compressed', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('property: records appended by processes storing batches deflated or plain, into one stream, are read back whole and in order, in any chunk size; offsetForTime finds the first at or after a time (model: lists)', async () => {
    const value = fc.oneof(
      fc.string({ maxLength: 40 }),
      // Compressible (a JSON-like event) and not (random bytes), large enough to be compressed.
      fc.record({ word: fc.constantFrom('click', 'view', 'trade'), n: fc.integer({ min: 1, max: 60 }) }).map(({ word, n }) => `{"type":"${word}","data":${JSON.stringify({ user: 'u'.repeat(n), é: '☃'.repeat(n) })}}`.repeat(n)),
      fc.uint8Array({ minLength: 500, maxLength: 3000 }).map((b) => Buffer.from(b).toString('base64')),
    );
    const append = fc.record({ by: fc.constantFrom(0, 1), records: fc.array(fc.record({ key: fc.constantFrom('a', 'b', 'c', 'd'), value }), { minLength: 1, maxLength: 60 }) });
    await fc.assert(
      fc.asyncProperty(fc.array(append, { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 50 }), fc.constantFrom<('deflate' | 'none')[]>(['deflate', 'none'], ['none', 'deflate'], ['deflate', 'deflate']), async (appends, chunk, settings) => {
        const n = ++streamNo;
        const nc = await connect({ servers: nats!.url });
        connections.push(nc);
        const logs = [await natsLog(nc, n, 2, settings[0]), await natsLog(nc, n, 2, settings[1])];
        const model = new Map<number, { value: string; t: number }[]>();
        let t = 0;
        for (const a of appends) {
          const records = a.records.map((r) => ({ ...r, timestampMs: ++t }));
          const acks = await logs[a.by].append(records);
          acks.forEach((ack, i) => model.set(ack.partition, [...(model.get(ack.partition) ?? []), { value: records[i].value, t: records[i].timestampMs }]));
        }
        for (const log of logs) {
          for (const [p, want] of model) {
            await log.tail(p, log.stats().partitions[p].firstOffset);
            const deadline = Date.now() + 20_000;
            while (log.lag(p, log.stats().partitions[p].firstOffset) < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
            const got = await readAll(log, p, chunk);
            assert.deepEqual(got.map((r) => ({ value: text(r), t: r.timestampMs })), want);
            const at = want[Math.floor(want.length / 2)].t;
            const first = await log.offsetForTime(p, at);
            assert.equal(text((await log.read(p, first, { maxRecords: 1 }))[0]), want.find((r) => r.t >= at)!.value);
          }
        }
      }),
      { numRuns: 8 },
    );
  });

  test('compressible events take a fraction of the bytes in the stream; a damaged compressed batch is refused as SEGMENT_CORRUPT, never a crash or a hang', async () => {
    const n = ++streamNo;
    const nc = await connect({ servers: nats!.url });
    connections.push(nc);
    const log = (await natsLog(nc, n, 3)) as JetStreamLog;
    const events = Array.from({ length: 2000 }, (_, i) => ({ timestampMs: i, partition: 0, value: JSON.stringify({ type: 'page_view', data: { article_id: `a${i % 300}`, user_id: `u${(i * 7919) % 100_000}`, section: 'news', referrer: 'https://www.google.com/' } }) }));
    const raw = events.reduce((s, e) => s + Buffer.byteLength(e.value), 0);
    await log.append(events);
    const stored = (await log.streamInfo()).bytes;
    assert.ok(stored < raw / 2, `${stored} bytes stored for ${raw} bytes of events`);
    assert.equal((await readAll(log, 0, 700)).length, 2000);
    const js = jetstream(nc);
    const h = headers();
    h.set('Halflife-Records', '1');
    h.set('Halflife-Max-Ts', '9999');
    // A message that says it is compressed but is not: the reader refuses it with the log's corruption code.
    await js.publish(`t${process.pid}_${n}.0`, Buffer.concat([Buffer.from('HLB\x02', 'latin1'), Buffer.from([1, 0, 0, 0, 100, 0, 0, 0]), Buffer.from('not deflate at all')]), { headers: h });
    // One whose records inflate to more than it states (as a bomb would): refused once past what it states.
    await js.publish(`t${process.pid}_${n}.1`, Buffer.concat([Buffer.from('HLB\x02', 'latin1'), Buffer.from([1, 0, 0, 0, 16, 0, 0, 0]), deflateRawSync(Buffer.alloc(1 << 20))]), { headers: h });
    // One that states more bytes than a batch can hold (4 GiB): refused before anything is allocated for it.
    await js.publish(`t${process.pid}_${n}.2`, Buffer.concat([Buffer.from('HLB\x02', 'latin1'), Buffer.from([1, 0, 0, 0, 255, 255, 255, 255]), deflateRawSync(Buffer.from('x'))]), { headers: h });
    const corrupt = (err: unknown) => err instanceof HalflifeError && err.code === 'SEGMENT_CORRUPT' && /do not inflate/.test(err.message);
    for (const p of [0, 1]) while (log.lag(p, log.stats().partitions[p].firstOffset) < (p === 0 ? 2001 : 1)) await log.tail(p, log.stats().partitions[p].nextOffset);
    const before = await log.read(0, log.stats().partitions[0].firstOffset, { maxRecords: 2000 });
    await assert.rejects(log.read(0, before.at(-1)!.next, { maxRecords: 10 }), corrupt);
    await assert.rejects(log.readBatch(1, log.stats().partitions[1].firstOffset), corrupt);
    while (log.lag(2, log.stats().partitions[2].firstOffset) < 1) await log.tail(2, log.stats().partitions[2].nextOffset);
    await assert.rejects(log.readBatch(2, log.stats().partitions[2].firstOffset), (err: unknown) => err instanceof HalflifeError && err.code === 'SEGMENT_CORRUPT' && /more than a batch can hold/.test(err.message));
  });
});
