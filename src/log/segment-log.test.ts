import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError, ManualClock } from '../core/index.js';
import { SegmentLog, type SegmentLogOptions } from './segment-log.js';
import { tempDir } from '../../test/helpers/tmp.js';

const text = (v: Uint8Array) => Buffer.from(v).toString('utf8');

async function withLog(opts: Partial<SegmentLogOptions>, fn: (log: SegmentLog, dir: string) => Promise<void>) {
  const { dir, cleanup } = await tempDir();
  const log = new SegmentLog({ dir, partitions: 4, fsync: 'never', ...opts });
  await log.start();
  try {
    await fn(log, dir);
  } finally {
    await log.close();
    await cleanup();
  }
}

test('records with the same key land in one partition, in order, with dense offsets', async () => {
  await withLog({}, async (log) => {
    const acks = await log.append(
      Array.from({ length: 10 }, (_, i) => ({ key: 'k1', timestampMs: 1000 + i, value: `v${i}` })),
    );
    const p = log.partitionFor('k1');
    assert.ok(acks.every((a) => a.partition === p));
    assert.deepEqual(acks.map((a) => a.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const read = await log.read(p, 3, { maxRecords: 4 });
    assert.deepEqual(read.map((r) => text(r.value)), ['v3', 'v4', 'v5', 'v6']);
    assert.equal(read[0].key, 'k1');
    assert.equal(read[0].timestampMs, 1003);
  });
});

test('unkeyed appends are spread round-robin over partitions', async () => {
  await withLog({}, async (log) => {
    const parts = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const [ack] = await log.append([{ timestampMs: 1, value: 'x' }]);
      parts.add(ack.partition);
    }
    assert.equal(parts.size, 4);
    const stats = log.stats();
    assert.deepEqual(stats.partitions.map((p) => p.records), [2, 2, 2, 2]);
    assert.equal(stats.records, 8);
  });
});

test('a pinned key owns its partition: no other key hashes there', async () => {
  await withLog({ pinnedKeys: { 'BTC-USD': 3 } }, async (log) => {
    assert.equal(log.partitionFor('BTC-USD'), 3);
    for (let i = 0; i < 500; i++) assert.notEqual(log.partitionFor(`key-${i}`), 3);
    for (let i = 0; i < 6; i++) {
      const [ack] = await log.append([{ timestampMs: 1, value: 'x' }]);
      assert.notEqual(ack.partition, 3);
    }
  });
});

test('concurrent appends share group commits and all get distinct offsets', async () => {
  await withLog({ fsync: 'always', partitions: 2 }, async (log) => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => log.append([{ key: 'same', timestampMs: i, value: `r${i}` }])),
    );
    const offsets = results.map((r) => r[0].offset).sort((a, b) => a - b);
    assert.deepEqual(offsets, Array.from({ length: 50 }, (_, i) => i));
    const all = await log.read(log.partitionFor('same'), 0, { maxRecords: 100 });
    assert.equal(all.length, 50);
  });
});

test('segments roll at the size limit and reads cross segment boundaries', async () => {
  await withLog({ partitions: 1, segmentBytes: 300, indexIntervalBytes: 64 }, async (log, dir) => {
    for (let i = 0; i < 40; i++) await log.append([{ timestampMs: 10 * i, value: `value-${i}`.padEnd(20, '.') }]);
    const files = (await readdir(join(dir, 'p-0000'))).filter((f) => f.endsWith('.seg'));
    assert.ok(files.length > 3, `expected several segments, got ${files.length}`);
    const all = await log.read(0, 0, { maxRecords: 1000 });
    assert.equal(all.length, 40);
    assert.deepEqual(all.map((r) => r.offset), Array.from({ length: 40 }, (_, i) => i));
    const mid = await log.read(0, 17, { maxRecords: 5 });
    assert.deepEqual(mid.map((r) => r.offset), [17, 18, 19, 20, 21]);
  });
});

test('offsetForTime finds the first record at or after a time, across segments', async () => {
  await withLog({ partitions: 1, segmentBytes: 400, indexIntervalBytes: 50 }, async (log) => {
    for (let i = 0; i < 60; i++) await log.append([{ timestampMs: 1000 + i * 10, value: 'x'.repeat(10) }]);
    assert.equal(await log.offsetForTime(0, 0), 0);
    assert.equal(await log.offsetForTime(0, 1000), 0);
    assert.equal(await log.offsetForTime(0, 1001), 1);
    assert.equal(await log.offsetForTime(0, 1250), 25);
    assert.equal(await log.offsetForTime(0, 1590), 59);
    assert.equal(await log.offsetForTime(0, 99999), 60);
  });
});

test('a record larger than the read chunk is read whole; encoder values are written as given', async () => {
  await withLog({ partitions: 1 }, async (log) => {
    const big = 'b'.repeat(300_000);
    const encoder = { byteLength: 3, writeTo: (buf: Buffer, pos: number) => (buf.write('enc', pos), pos + 3) };
    await log.append([{ timestampMs: 1, value: 'small' }, { timestampMs: 2, value: big }, { timestampMs: 3, value: encoder }]);
    const read = await log.read(0, 0, { maxBytes: 10 });
    assert.equal(read.length, 1);
    const rest = await log.read(0, 1, { maxBytes: 10 });
    assert.equal(text(rest[0].value), big);
    assert.equal(text((await log.read(0, 2))[0].value), 'enc');
  });
});

test('maxRecords and maxBytes bound a read; at least one record is returned', async () => {
  await withLog({ partitions: 1 }, async (log) => {
    await log.append(Array.from({ length: 20 }, (_, i) => ({ timestampMs: i, value: 'y'.repeat(100) })));
    assert.equal((await log.read(0, 0, { maxRecords: 7 })).length, 7);
    const byBytes = await log.read(0, 0, { maxBytes: 300 });
    assert.ok(byBytes.length >= 1 && byBytes.length <= 3, `got ${byBytes.length}`);
    assert.equal((await log.read(0, 20)).length, 0);
  });
});

test('retention by size deletes whole old segments and moves firstOffset', async () => {
  await withLog({ partitions: 1, segmentBytes: 500, retentionMaxBytesPerPartition: 1200 }, async (log) => {
    for (let i = 0; i < 60; i++) await log.append([{ timestampMs: i, value: 'z'.repeat(40) }]);
    const before = log.stats().partitions[0];
    const removed = await log.applyRetention();
    assert.ok(removed > 0);
    const after = log.stats().partitions[0];
    assert.ok(after.firstOffset > before.firstOffset);
    assert.equal(after.nextOffset, 60);
    assert.ok(after.bytes <= 1200 + 500);
    const read = await log.read(0, 0, { maxRecords: 1000 });
    assert.equal(read[0].offset, after.firstOffset);
    assert.equal(read.at(-1)!.offset, 59);
  });
});

test('retention by age deletes segments whose newest record is older than the limit', async () => {
  const clock = new ManualClock(1_000_000);
  await withLog({ partitions: 1, segmentBytes: 300, retentionMaxAgeMs: 60_000, clock }, async (log) => {
    for (let i = 0; i < 20; i++) await log.append([{ timestampMs: 1_000_000, value: 'old'.repeat(10) }]);
    for (let i = 0; i < 20; i++) await log.append([{ timestampMs: 1_100_000, value: 'new'.repeat(10) }]);
    clock.set(1_100_000);
    await log.applyRetention();
    const read = await log.read(0, 0, { maxRecords: 1000 });
    assert.ok(read.every((r) => r.timestampMs === 1_100_000 || r.offset >= 15), 'old segments gone');
    assert.ok(read.filter((r) => r.timestampMs === 1_100_000).length === 20, 'new records kept');
  });
});

test('retention keeps every segment holding a record a consumer it waits for has not committed (none of a partition it has not committed at all), and deletes them once it has', async () => {
  await withLog({ partitions: 2, segmentBytes: 500, retentionMaxBytesPerPartition: 600, retentionKeepsFor: ['archive'] }, async (log) => {
    for (let i = 0; i < 60; i++) await log.append([{ key: 'a', timestampMs: i, value: 'z'.repeat(40) }]);
    const p = log.stats().partitions.findIndex((x) => x.records === 60);
    assert.equal(await log.applyRetention(), 0, 'nothing committed: nothing deleted');
    assert.equal(log.stats().partitions[p].firstOffset, 0);
    await log.commitOffsets('archive', { [p]: 25 });
    await log.applyRetention();
    const first = log.stats().partitions[p].firstOffset;
    assert.ok(first > 0 && first <= 25, `deleted up to the segment holding offset 25 (first now ${first})`);
    assert.equal((await log.read(p, 25, { maxRecords: 1 }))[0].offset, 25);
    await log.commitOffsets('archive', { [p]: 60 });
    await log.applyRetention();
    assert.ok(log.stats().partitions[p].firstOffset > 25, 'then the size limit applies again');
  });
});

test('consumers keep committed offsets by name across restarts', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const log = new SegmentLog({ dir, partitions: 2, fsync: 'always' });
    await log.start();
    await log.commitOffsets('engine', { 0: 5, 1: 7 });
    await log.commitOffsets('engine', { 1: 9 });
    await log.commitOffsets('archive', { 0: 1 });
    // Two engine workers committing their partitions of one view at once: both land.
    await Promise.all([log.commitOffsets('pair', { 0: 3 }), log.commitOffsets('pair', { 1: 4 })]);
    // A view's consumer is 'view.<name>', and view names go up to 128 characters.
    await log.commitOffsets(`view.${'v'.repeat(128)}`, { 0: 1 });
    await log.close();
    const again = new SegmentLog({ dir, partitions: 2, fsync: 'always' });
    await again.start();
    assert.deepEqual(await again.committedOffsets('engine'), { 0: 5, 1: 9 });
    assert.deepEqual(await again.committedOffsets('archive'), { 0: 1 });
    assert.deepEqual(await again.committedOffsets('pair'), { 0: 3, 1: 4 });
    assert.deepEqual(await again.committedOffsets('nobody'), {});
    await assert.rejects(again.commitOffsets('../evil', { 0: 1 }), { code: 'INVALID_CONSUMER_NAME' });
    await again.close();
  } finally {
    await cleanup();
  }
});

test('reopening with another partition count is refused with a clear error', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const log = new SegmentLog({ dir, partitions: 2, fsync: 'never' });
    await log.start();
    await log.close();
    const other = new SegmentLog({ dir, partitions: 3, fsync: 'never' });
    await assert.rejects(other.start(), (err: HalflifeError) => {
      assert.equal(err.code, 'LOG_PARTITIONS_MISMATCH');
      assert.match(err.message, /created with 2 partitions/);
      return true;
    });
  } finally {
    await cleanup();
  }
});

test('bad partitions and use after close give stable codes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const log = new SegmentLog({ dir, partitions: 2, fsync: 'never' });
    await log.start();
    await assert.rejects(log.read(5, 0), { code: 'PARTITION_NOT_FOUND' });
    await assert.rejects(log.append([{ timestampMs: 1, value: 'x', partition: 9 }]), { code: 'PARTITION_NOT_FOUND' });
    await log.close();
    await log.close();
    await assert.rejects(log.append([{ timestampMs: 1, value: 'x' }]), { code: 'COMPONENT_CLOSED' });
    assert.ok((await stat(join(dir, 'meta.json'))).isFile());
  } finally {
    await cleanup();
  }
});

test('one append larger than a batch is split into batches of about 1 MiB, read back whole and after a restart', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const opts: SegmentLogOptions = { dir, partitions: 1, fsync: 'always' };
    const log = new SegmentLog(opts);
    await log.start();
    const values = Array.from({ length: 3000 }, (_, i) => `${i}:`.padEnd(1000, 'x'));
    await log.append(values.map((value, i) => ({ timestampMs: i, value })));
    const check = async (l: SegmentLog) => {
      const all = [];
      for (let from = 0; from < values.length; ) {
        const b = await l.readBatch(0, from, { maxRecords: 700 });
        assert.ok(b.count > 0);
        for (let i = 0; i < b.count; i++) all.push(b.buffer.toString('utf8', b.valueStarts[i], b.valueEnds[i]));
        from = b.offsets[b.count - 1] + 1;
      }
      assert.deepEqual(all, values);
      assert.equal(await l.offsetForTime(0, 2500), 2500);
    };
    await check(log);
    await log.close();
    const file = (await readdir(join(dir, 'p-0000'))).find((f) => f.endsWith('.seg'))!;
    const bytes = await readFile(join(dir, 'p-0000', file));
    let batches = 0;
    for (let pos = 8; pos < bytes.length; pos += 8 + bytes.readUInt32LE(pos)) batches++;
    assert.equal(batches, 3, 'three batches of about 1 MiB');
    const again = new SegmentLog(opts);
    await again.start();
    await check(again);
    await again.close();
  } finally {
    await cleanup();
  }
});

test('a read whose first chunk holds only earlier records goes on to the batch it wants, however large', async () => {
  // No index entries: every read starts at the segment's first batch.
  await withLog({ partitions: 1, indexIntervalBytes: 1 << 30 }, async (log) => {
    await log.append(Array.from({ length: 1000 }, (_, i) => ({ timestampMs: i, value: `small-${i}` })));
    await log.append([{ timestampMs: 1000, value: 'B'.repeat(200_000) }, { timestampMs: 1001, value: 'after' }]);
    const b = await log.readBatch(0, 1000, { maxRecords: 10 });
    assert.deepEqual(Array.from(b.offsets), [1000, 1001]);
    assert.equal(b.valueEnds[0] - b.valueStarts[0], 200_000);
    assert.deepEqual((await log.read(0, 1001)).map((r) => text(r.value)), ['after']);
  });
});

/** A partition folder in format 1 (one CRC-32C frame per record, no file header), as logs were written before record batches. */
async function writeFormat1Segment(dir: string, records: { ts: number; key?: string; value: string }[]): Promise<void> {
  const { crc32c } = await import('./crc32c.js');
  const frames = records.map((r, offset) => {
    const key = r.key === undefined ? Buffer.alloc(0) : Buffer.from(r.key);
    const value = Buffer.from(r.value);
    const body = Buffer.alloc(18 + key.length + value.length);
    body.writeDoubleLE(offset, 0);
    body.writeDoubleLE(r.ts, 8);
    body.writeUInt16LE(r.key === undefined ? 0 : key.length + 1, 16);
    key.copy(body, 18);
    value.copy(body, 18 + key.length);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(body.length, 0);
    head.writeUInt32LE(crc32c(body), 4);
    return Buffer.concat([head, body]);
  });
  await mkdir(join(dir, 'p-0000'), { recursive: true });
  await writeFile(join(dir, 'p-0000', `${'0'.padStart(20, '0')}.seg`), Buffer.concat(frames));
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ format: 1, partitions: 1 }) + '\n');
}

test('a log written in format 1 stays readable; new records go to a new format-2 segment after it', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFormat1Segment(dir, [{ ts: 10, key: 'k', value: 'old-0' }, { ts: 20, value: 'old-1' }, { ts: 30, value: 'old-2' }]);
    const opts: SegmentLogOptions = { dir, partitions: 1, fsync: 'always' };
    const log = new SegmentLog(opts);
    await log.start();
    assert.deepEqual((await log.append([{ timestampMs: 40, value: 'new-3' }])).map((a) => a.offset), [3]);
    const read = async (l: SegmentLog) => (await l.read(0, 0, { maxRecords: 100 })).map((r) => [r.offset, r.key, text(r.value)]);
    const expected = [[0, 'k', 'old-0'], [1, undefined, 'old-1'], [2, undefined, 'old-2'], [3, undefined, 'new-3']];
    assert.deepEqual(await read(log), expected);
    assert.equal(await log.offsetForTime(0, 25), 2);
    assert.equal(await log.offsetForTime(0, 35), 3);
    await log.close();
    assert.equal((await readdir(join(dir, 'p-0000'))).filter((f) => f.endsWith('.seg')).length, 2);
    const again = new SegmentLog(opts);
    await again.start();
    assert.deepEqual(await read(again), expected);
    const b = await again.readBatch(0, 1);
    assert.deepEqual(Array.from(b.offsets), [1, 2]);
    await again.close();
  } finally {
    await cleanup();
  }
});

test('a damaged index entry is found by its CRC and the index rebuilt, so no read starts past the records it asks for', async () => {
  const { dir, cleanup } = await tempDir();
  const opts: SegmentLogOptions = { dir, partitions: 1, fsync: 'never', segmentBytes: 400, indexIntervalBytes: 100 };
  try {
    const log = new SegmentLog(opts);
    await log.start();
    for (let i = 0; i < 40; i++) await log.append([{ timestampMs: i, value: `value-${i}` }]);
    await log.close();
    const pdir = join(dir, 'p-0000');
    const idx = join(pdir, (await readdir(pdir)).filter((f) => f.endsWith('.idx')).sort()[0]);
    const index = await readFile(idx);
    // The second entry now claims an earlier offset than the batch it points at really holds.
    const rel = index.readUInt32LE(16);
    assert.ok(rel - 1 > index.readUInt32LE(0), 'entries are more than one record apart');
    index.writeUInt32LE(rel - 1, 16);
    await writeFile(idx, index);
    const reopened = new SegmentLog(opts);
    await reopened.start();
    try {
      const [first] = await reopened.read(0, rel - 1, { maxRecords: 1 });
      assert.equal(first.offset, rel - 1);
      assert.equal(text(first.value), `value-${rel - 1}`);
      const batch = await reopened.readBatch(0, rel - 1, { maxRecords: 1 });
      assert.equal(batch.offsets[0], rel - 1);
    } finally {
      await reopened.close();
    }
  } finally {
    await cleanup();
  }
});
