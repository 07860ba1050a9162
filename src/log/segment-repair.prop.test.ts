import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { HalflifeError } from '../core/index.js';
import { repairLog } from './repair.js';
import { SegmentLog, type SegmentLogOptions } from './segment-log.js';
import { tempDir } from '../../test/helpers/tmp.js';

const text = (v: Uint8Array) => Buffer.from(v).toString('utf8');

/** Reads every record of partition 0, page by page (as a consumer does), or the error that stopped it. */
async function readAll(log: SegmentLog): Promise<Map<number, string> | HalflifeError> {
  const out = new Map<number, string>();
  let from = 0;
  try {
    for (;;) {
      const page = await log.read(0, from, { maxRecords: 7 });
      if (page.length === 0) break;
      for (const r of page) out.set(r.offset, text(r.value));
      from = page[page.length - 1].offset + 1;
    }
    // The engine's path too (columns, one segment at a time).
    let n = 0;
    for (from = 0; ; ) {
      const b = await log.readBatch(0, from, { maxRecords: 5 });
      if (b.count === 0) break;
      n += b.count;
      from = b.offsets[b.count - 1] + 1;
    }
    assert.equal(n, out.size, 'read and readBatch see the same records');
  } catch (err) {
    if (err instanceof HalflifeError) return err;
    throw err;
  }
  return out;
}

async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const pdir = join(dir, 'p-0000');
  for (const f of await readdir(pdir)) files.set(f, await readFile(join(pdir, f)));
  return files;
}

test('property: one damaged byte anywhere in a partition\'s files (segments, indexes) never loses data silently; repair loses at most the damaged batch and never reuses an offset', { timeout: 300_000 }, async () => {
  await fc.assert(
    fc.asyncProperty(
      // Appends (one batch each: fsync always, one at a time) over several small segments.
      fc.array(fc.array(fc.string({ minLength: 0, maxLength: 30 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 14 }),
      fc.nat(),
      fc.double({ min: 0, max: 0.9999, noNaN: true }),
      fc.integer({ min: 1, max: 255 }),
      async (batches, fileChoice, where, xor) => {
        const { dir, cleanup } = await tempDir();
        const opts: SegmentLogOptions = { dir, partitions: 1, fsync: 'always', segmentBytes: 260, indexIntervalBytes: 40 };
        try {
          const log = new SegmentLog(opts);
          await log.start();
          const expected = new Map<number, string>();
          const batchOf = new Map<number, number>();
          for (let b = 0; b < batches.length; b++) {
            const acks = await log.append(batches[b].map((v) => ({ timestampMs: b, value: v })));
            acks.forEach((a, i) => {
              expected.set(a.offset, batches[b][i]);
              batchOf.set(a.offset, b);
            });
          }
          const highest = Math.max(...expected.keys());
          await log.close();

          const pdir = join(dir, 'p-0000');
          // Any file of the partition: segments, and the sealed segments' indexes (a damaged index must not skip records).
          const files = (await readdir(pdir)).filter((f) => f.endsWith('.seg') || f.endsWith('.idx')).sort();
          const victim = join(pdir, files[fileChoice % files.length]);
          const bytes = await readFile(victim);
          const at = Math.floor(where * bytes.length);
          bytes[at] ^= xor;
          await writeFile(victim, bytes);

          // Start-up either refuses with SEGMENT_CORRUPT or opens; what it reads is then whole or a loud SEGMENT_CORRUPT.
          let damaged = false;
          const reopened = new SegmentLog(opts);
          try {
            await reopened.start();
          } catch (err) {
            assert.ok(err instanceof HalflifeError && err.code === 'SEGMENT_CORRUPT', `start-up failed with ${String(err)}`);
            assert.match(err.message, /halflife repair/);
            damaged = true;
          }
          if (!damaged) {
            const got = await readAll(reopened);
            await reopened.close();
            if (got instanceof HalflifeError) {
              assert.equal(got.code, 'SEGMENT_CORRUPT');
              damaged = true;
            } else {
              assert.deepEqual(got, expected, 'a log that opens and reads without error has every acknowledged record');
            }
          }

          // A dry run changes nothing; repair finds the damage exactly when it was reported.
          const before = await snapshot(dir);
          const quarantineDir = join(dir, 'quarantine');
          const planned = await repairLog({ dir, quarantineDir, label: 'events', dryRun: true });
          assert.deepEqual(await snapshot(dir), before, 'a dry run changes nothing');
          assert.equal(planned.length > 0, damaged, `repair plans ${planned.length} action(s); damage reported: ${damaged}`);
          const done = await repairLog({ dir, quarantineDir, label: 'events', dryRun: false });
          assert.deepEqual(done, planned);
          assert.equal((await repairLog({ dir, quarantineDir, label: 'events', dryRun: true })).length, 0, 'a second repair finds nothing');
          for (const a of done) {
            assert.equal((await stat(a.quarantineFile)).size, a.bytes);
            assert.deepEqual(JSON.parse(await readFile(a.quarantineFile.replace(/\.bin$/, '.json'), 'utf8')).lost, a.lost);
          }

          const repaired = new SegmentLog(opts);
          await repaired.start();
          try {
            const got = await readAll(repaired);
            assert.ok(!(got instanceof HalflifeError), `after repair the log reads: ${String(got)}`);
            // Every record still there is at its own offset; the missing ones are of one batch, reported lost.
            const missing: number[] = [];
            for (const [o, v] of expected) {
              if (got.has(o)) assert.equal(got.get(o), v, `offset ${o}`);
              else missing.push(o);
            }
            for (const o of got.keys()) assert.ok(expected.has(o), `offset ${o} was never written`);
            assert.ok(new Set(missing.map((o) => batchOf.get(o))).size <= 1, `missing ${missing} span several batches`);
            for (const o of missing) assert.ok(done.some((a) => a.lost.from <= o && o < a.lost.to), `offset ${o} lost but not reported`);
            // New records go above every offset ever written.
            const [ack] = await repaired.append([{ timestampMs: 99, value: 'after' }]);
            assert.ok(ack.offset > highest, `new offset ${ack.offset} reuses one at or below ${highest}`);
            const again = await readAll(repaired);
            assert.ok(!(again instanceof HalflifeError));
            assert.equal(again.get(ack.offset), 'after');
          } finally {
            await repaired.close();
          }
        } finally {
          await cleanup();
        }
      },
    ),
    { numRuns: 150 },
  );
});
