import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { capture } from './helpers/io.js';
import { caughtUp, startServer, inject } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

const exists = (path: string) => access(path).then(() => true, () => false);
const overrides = { log: { partitions: 1, fsync: 'always' } } as never;

test('serve refuses a damaged segment naming halflife repair; repair --dry-run reports, repair sets the batch aside; offsets are kept and never reused', async () => {
  const { dir, cleanup } = await tempDir();
  const envBefore = process.env.HALFLIFE_LOG_PARTITIONS;
  process.env.HALFLIFE_LOG_PARTITIONS = '1';
  try {
    let t = await startServer(overrides, dir);
    await inject(t, 'PUT', '/v1/schemas/e', { type: 'object', properties: { n: { type: 'integer' } } });
    assert.equal((await inject(t, 'PUT', '/v1/views/c', { sql: 'CREATE VIEW c AS SELECT COUNT(*) AS n FROM e' })).status, 201);
    // Three requests, three batches of 10 (offsets 0-9, 10-19, 20-29).
    for (let b = 0; b < 3; b++) {
      const sent = await inject(t, 'POST', '/v1/events', Array.from({ length: 10 }, (_, i) => ({ type: 'e', data: { n: b * 10 + i } })));
      assert.equal(sent.body.accepted, 10);
    }
    await caughtUp(t, 'c');
    await t.server.close();

    // One byte of the second batch's records is damaged.
    const seg = join(dir, 'log', 'events', 'p-0000', '00000000000000000000.seg');
    const bytes = await readFile(seg);
    const second = 8 + 8 + bytes.readUInt32LE(8);
    const third = second + 8 + bytes.readUInt32LE(second);
    bytes[second + 40] ^= 0x5a;
    await writeFile(seg, bytes);

    // The server does not start over it, and `serve` says what to run.
    t = await startServer(overrides, dir).catch((err: unknown) => {
      assert.equal((err as { code?: string }).code, 'SEGMENT_CORRUPT');
      return undefined as never;
    });
    assert.equal(t, undefined, 'the server must not start over a damaged segment');

    const served = capture();
    assert.equal(await main(['serve', '--data', dir, '--port', '0'], served), 2);
    const line = served.stderr.trim();
    assert.equal(line.split('\n').length, 1, served.stderr);
    assert.match(line, /SEGMENT_CORRUPT: partition 0: segment .*00000000000000000000\.seg is damaged at byte \d+ \(CRC mismatch\); nothing was cut/);
    assert.ok(line.includes(`halflife repair --data ${JSON.stringify(dir)}`), line);

    const dry = capture();
    assert.equal(await main(['repair', '--data', dir, '--dry-run'], dry), 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`partition 0, log/events/p-0000/00000000000000000000\\.seg byte ${second}: CRC mismatch: would set aside ${third - second} bytes into quarantine/log-events-partition-0-00000000000000000000-${second}\\.bin; offsets 10\\.\\.19 \\(10\\) are lost and stay a gap`));
    assert.match(dry.stdout, /dry run: nothing changed/);
    assert.deepEqual(await readFile(seg), bytes, 'a dry run changes nothing');
    assert.equal(await exists(join(dir, 'quarantine')), false);

    const real = capture();
    assert.equal(await main(['repair', '--data', dir], real), 0, real.stderr);
    assert.match(real.stdout, /: CRC mismatch: set aside \d+ bytes into .*offsets 10\.\.19 \(10\) are lost/);
    assert.match(real.stdout, /repaired 1 range/);
    const quarantined = join(dir, 'quarantine', `log-events-partition-0-00000000000000000000-${second}.bin`);
    assert.deepEqual(await readFile(quarantined), bytes.subarray(second, third));
    const report = JSON.parse(await readFile(quarantined.replace(/\.bin$/, '.json'), 'utf8'));
    assert.deepEqual(report.lost, { from: 10, to: 20 });
    assert.ok(!(await readdir(join(dir, 'log', 'events', 'p-0000'))).some((f) => f.endsWith('.repair')));

    const again = capture();
    assert.equal(await main(['repair', '--data', dir, '--dry-run'], again), 0);
    assert.match(again.stdout, /no damage found/);

    // The server starts; the records after the damage keep their offsets; new ones go above every old one and count.
    t = await startServer(overrides, dir);
    try {
      const locked = capture();
      assert.equal(await main(['repair', '--data', dir], locked), 2);
      assert.match(locked.stderr, /DATA_DIR_LOCKED/);

      const before = await t.server.log.read(0, 0, { maxRecords: 100 });
      assert.deepEqual(before.map((r) => r.offset), [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 20 + i)]);
      const counted = (await inject(t, 'GET', '/v1/views/c')).body.rows[0].n as number;
      await inject(t, 'POST', '/v1/events', Array.from({ length: 5 }, (_, i) => ({ type: 'e', data: { n: 100 + i } })));
      const after = await t.server.log.read(0, 30, { maxRecords: 100 });
      assert.deepEqual(after.map((r) => r.offset), [30, 31, 32, 33, 34]);
      await caughtUp(t, 'c');
      assert.equal((await inject(t, 'GET', '/v1/views/c')).body.rows[0].n, counted + 5, 'new events are counted, not skipped');
    } finally {
      await t.server.close();
    }
  } finally {
    if (envBefore === undefined) delete process.env.HALFLIFE_LOG_PARTITIONS;
    else process.env.HALFLIFE_LOG_PARTITIONS = envBefore;
    await cleanup();
  }
});

test('repair --help describes the command; repair of a missing folder exits 2', async () => {
  const help = capture();
  assert.equal(await main(['repair', '--help'], help), 0);
  assert.match(help.stdout, /halflife repair \[--config F\] \[--data DIR\] \[--dry-run\]/);
  const { dir, cleanup } = await tempDir();
  try {
    const missing = capture();
    assert.equal(await main(['repair', '--data', join(dir, 'nope')], missing), 2);
    assert.match(missing.stderr, /does not exist/);
  } finally {
    await cleanup();
  }
});
