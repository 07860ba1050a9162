import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError } from '../core/index.js';
import { repairLog } from './repair.js';
import { SegmentLog, type SegmentLogOptions } from './segment-log.js';
import { tempDir } from '../../test/helpers/tmp.js';

const text = (v: Uint8Array) => Buffer.from(v).toString('utf8');

/** Batch start positions of a format-2 segment. */
function batchStarts(buf: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 8; pos < buf.length; pos += 8 + buf.readUInt32LE(pos)) out.push(pos);
  return out;
}

async function withDamagedLog(
  opts: Omit<SegmentLogOptions, 'dir'>,
  appends: number,
  damage: (segments: string[]) => Promise<void>,
  check: (dir: string, o: SegmentLogOptions) => Promise<void>,
): Promise<void> {
  const { dir, cleanup } = await tempDir();
  const o: SegmentLogOptions = { ...opts, dir };
  try {
    const log = new SegmentLog(o);
    await log.start();
    for (let i = 0; i < appends; i++) await log.append([{ timestampMs: i, value: `v${i}` }]);
    await log.close();
    const pdir = join(dir, 'p-0000');
    await damage((await readdir(pdir)).filter((f) => f.endsWith('.seg')).sort().map((f) => join(pdir, f)));
    await check(dir, o);
  } finally {
    await cleanup();
  }
}

async function expectCorrupt(o: SegmentLogOptions): Promise<void> {
  const log = new SegmentLog(o);
  await assert.rejects(log.start(), (err: unknown) => err instanceof HalflifeError && err.code === 'SEGMENT_CORRUPT');
}

test('a gap at the end of a sealed segment: readBatch from inside it goes on to the next segment', async () => {
  await withDamagedLog(
    { partitions: 1, fsync: 'never', segmentBytes: 200 },
    12,
    async ([first]) => {
      const buf = await readFile(first);
      const last = batchStarts(buf).at(-1)!;
      buf[last + 30] ^= 0xff; // inside the last batch's record
      await writeFile(first, buf);
    },
    async (dir, o) => {
      const segs = (await readdir(join(dir, 'p-0000'))).filter((f) => f.endsWith('.seg')).sort();
      const secondBase = Number(segs[1].slice(0, 20));
      const actions = await repairLog({ dir, quarantineDir: join(dir, 'q'), label: 'l', dryRun: false });
      assert.deepEqual(actions.map((a) => [a.kind, a.lost]), [['set-aside', { from: secondBase - 1, to: secondBase }]]);
      const log = new SegmentLog(o);
      await log.start();
      try {
        const b = await log.readBatch(0, secondBase - 1, { maxRecords: 3 });
        assert.deepEqual([...b.offsets], [secondBase, secondBase + 1, secondBase + 2]);
        const r = await log.read(0, secondBase - 2, { maxRecords: 2 });
        assert.deepEqual(r.map((x) => [x.offset, text(x.value)]), [[secondBase - 2, `v${secondBase - 2}`], [secondBase, `v${secondBase}`]]);
      } finally {
        await log.close();
      }
    },
  );
});

test('a damaged file header stops start-up; repair rewrites it and loses no record', async () => {
  await withDamagedLog(
    { partitions: 1, fsync: 'never' },
    5,
    async ([seg]) => {
      const buf = await readFile(seg);
      buf[5] ^= 0x10; // a reserved byte of "HLSG" 2 0 0 0
      await writeFile(seg, buf);
    },
    async (dir, o) => {
      await expectCorrupt(o);
      const actions = await repairLog({ dir, quarantineDir: join(dir, 'q'), label: 'l', dryRun: false });
      assert.deepEqual(actions.map((a) => [a.kind, a.position, a.bytes, a.lost.to - a.lost.from]), [['header', 0, 8, 0]]);
      const log = new SegmentLog(o);
      await log.start();
      try {
        assert.deepEqual((await log.read(0, 0)).map((r) => text(r.value)), ['v0', 'v1', 'v2', 'v3', 'v4']);
      } finally {
        await log.close();
      }
    },
  );
});

test('a damaged last batch is corruption, not a torn tail; after repair new offsets go above it and above every committed position', async () => {
  await withDamagedLog(
    { partitions: 1, fsync: 'always' },
    4,
    async ([seg]) => {
      const buf = await readFile(seg);
      const last = batchStarts(buf).at(-1)!;
      buf[last + 2] ^= 0x01; // its length: now it runs past the end of the file, as a torn batch would
      await writeFile(seg, buf);
    },
    async (dir, o) => {
      await expectCorrupt(o);
      // A consumer had seen offsets up to 40 (as if the damaged range had held more): they must not come back.
      await writeFile(join(dir, 'consumers', 'view.x.json'), JSON.stringify({ 0: 40 }));
      const dry = await repairLog({ dir, quarantineDir: join(dir, 'q'), label: 'l', dryRun: true });
      assert.equal(dry.length, 1);
      assert.deepEqual(dry[0].lost, { from: 3, to: 40 });
      await repairLog({ dir, quarantineDir: join(dir, 'q'), label: 'l', dryRun: false });
      const log = new SegmentLog(o);
      await log.start();
      try {
        const [ack] = await log.append([{ timestampMs: 9, value: 'new' }]);
        assert.equal(ack.offset, 40);
        assert.deepEqual((await log.read(0, 0)).map((r) => [r.offset, text(r.value)]), [[0, 'v0'], [1, 'v1'], [2, 'v2'], [40, 'new']]);
      } finally {
        await log.close();
      }
    },
  );
});

test('a truly torn last batch (its bytes cut short) is cut at start-up, and repair leaves it alone', async () => {
  await withDamagedLog(
    { partitions: 1, fsync: 'always' },
    4,
    async ([seg]) => {
      const buf = await readFile(seg);
      await writeFile(seg, buf.subarray(0, buf.length - 3));
    },
    async (dir, o) => {
      assert.deepEqual(await repairLog({ dir, quarantineDir: join(dir, 'q'), label: 'l', dryRun: true }), []);
      const log = new SegmentLog(o);
      await log.start();
      try {
        assert.deepEqual((await log.read(0, 0)).map((r) => text(r.value)), ['v0', 'v1', 'v2']);
        assert.equal((await log.append([{ timestampMs: 9, value: 'again' }]))[0].offset, 3);
      } finally {
        await log.close();
      }
    },
  );
});
