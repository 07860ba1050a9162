import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { SegmentLog, type SegmentLogOptions } from './segment-log.js';
import { RecordingLogger, tempDir } from '../../test/helpers/tmp.js';

type Op =
  | { kind: 'append'; records: { key: string | undefined; value: string; ts: number }[] }
  | { kind: 'restart' }
  | { kind: 'retention' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      records: fc.array(
        fc.record({
          key: fc.option(fc.constantFrom('a', 'b', 'c', 'ключ', 'e'), { nil: undefined }),
          value: fc.string({ maxLength: 60, unit: 'binary' }),
          ts: fc.integer({ min: 0, max: 1_000_000 }),
        }),
        { minLength: 1, maxLength: 12 },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'restart' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'retention' as const }) },
);

interface Expected {
  offset: number;
  key: string | undefined;
  value: string;
  ts: number;
}

test('property: what is read equals what was appended, across segment rolls, restarts and retention', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
      const { dir, cleanup } = await tempDir();
      const opts: SegmentLogOptions = {
        dir,
        partitions: 3,
        fsync: 'never',
        segmentBytes: 256,
        indexIntervalBytes: 48,
        retentionMaxBytesPerPartition: 700,
      };
      let log = new SegmentLog(opts);
      await log.start();
      const model: Expected[][] = [[], [], []];
      try {
        for (const op of ops) {
          if (op.kind === 'append') {
            const acks = await log.append(op.records.map((r) => ({ key: r.key, timestampMs: r.ts, value: r.value })));
            acks.forEach((a, i) => {
              const r = op.records[i];
              const list = model[a.partition];
              assert.equal(a.offset, list.length === 0 ? 0 : list[list.length - 1].offset + 1, 'offsets are dense');
              model[a.partition].push({ offset: a.offset, key: r.key, value: r.value, ts: r.ts });
            });
          } else if (op.kind === 'restart') {
            await log.close();
            log = new SegmentLog(opts);
            await log.start();
          } else {
            await log.applyRetention();
          }
          // After every step: each partition reads back exactly its retained suffix.
          const stats = log.stats();
          for (let p = 0; p < 3; p++) {
            const first = stats.partitions[p].firstOffset;
            const expected = model[p].filter((e) => e.offset >= first);
            const nextExpected = model[p].length === 0 ? 0 : model[p][model[p].length - 1].offset + 1;
            assert.equal(stats.partitions[p].nextOffset, nextExpected);
            const got = await log.read(p, 0, { maxRecords: 10_000, maxBytes: 10_000_000 });
            assert.deepEqual(
              got.map((r) => ({ offset: r.offset, key: r.key, value: Buffer.from(r.value).toString('utf8'), ts: r.timestampMs })),
              expected.map((e) => ({ ...e, value: Buffer.from(e.value, 'utf8').toString('utf8') })),
            );
          }
        }
      } finally {
        await log.close();
        await cleanup();
      }
    }),
    { numRuns: 40 },
  );
});

/** Where each batch ends in a single-segment partition file, found by walking the length prefixes after the header. */
function frameEnds(buf: Buffer): number[] {
  const ends: number[] = [];
  let pos = 8;
  while (pos < buf.length) {
    pos += 8 + buf.readUInt32LE(pos);
    ends.push(pos);
  }
  return ends;
}

test('property: a truncated tail (an incomplete last write) is cut at the last whole batch, with a warning', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.string({ minLength: 0, maxLength: 40 }), { minLength: 1, maxLength: 30 }),
      fc.double({ min: 0, max: 0.9999, noNaN: true }),
      async (values, where) => {
        const { dir, cleanup } = await tempDir();
        const logger = new RecordingLogger();
        const opts: SegmentLogOptions = { dir, partitions: 1, fsync: 'always', logger };
        try {
          const log = new SegmentLog(opts);
          await log.start();
          // Two segments' worth is not needed: the tail is the active segment.
          for (const v of values) await log.append([{ timestampMs: 5, value: v }]);
          await log.close();

          const pdir = join(dir, 'p-0000');
          const seg = join(pdir, (await readdir(pdir)).find((f) => f.endsWith('.seg'))!);
          const original = await readFile(seg);
          const ends = frameEnds(original);
          const at = Math.floor(where * original.length);
          await truncate(seg, at);
          const survivors = ends.filter((e) => e <= at).length;

          const reopened = new SegmentLog({ ...opts, logger });
          await reopened.start();
          const got = await reopened.read(0, 0, { maxRecords: 1000 });
          assert.deepEqual(
            got.map((r) => Buffer.from(r.value).toString('utf8')),
            values.slice(0, survivors),
          );
          // Damage to the 8-byte file header loses the segment's records; otherwise the header is kept.
          const lastGood = survivors > 0 ? ends[survivors - 1] : at >= 8 ? 8 : 0;
          const cutBytes = at - lastGood;
          const warned = logger.lines.find((l) => l.level === 'warn' && l.obj.truncatedBytes !== undefined);
          if (cutBytes > 0) assert.equal(warned?.obj.truncatedBytes, cutBytes);
          else assert.equal(warned, undefined);
          // The log goes on from the cut, and what follows is readable after another restart.
          const [ack] = await reopened.append([{ timestampMs: 6, value: 'after' }]);
          assert.equal(ack.offset, survivors);
          await reopened.close();
          const third = new SegmentLog(opts);
          await third.start();
          const final = await third.read(0, 0, { maxRecords: 1000 });
          assert.deepEqual(final.map((r) => Buffer.from(r.value).toString('utf8')), [...values.slice(0, survivors), 'after']);
          await third.close();
        } finally {
          await cleanup();
        }
      },
    ),
    { numRuns: 60 },
  );
});
