import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { DuckDBInstance } from '@duckdb/node-api';
import { encodeEventRecord } from '../src/core/index.js';
import { MemoryLog } from '../src/log/index.js';
import { Archive } from '../src/sinks/index.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The archive (issue #13) against independent readers: events appended to a log, archived, then read back from the
 * Parquet files by DuckDB and compared with the events as they were sent (the model: the JS objects themselves).
 */
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  con.closeSync();
  db.closeSync();
  for (const c of cleanups) await c();
});

async function folder(prefix: string): Promise<string> {
  const t = await tempDir(`halflife-${prefix}-`);
  cleanups.push(t.cleanup);
  return t.dir;
}

const SCHEMA = {
  type: 'object',
  properties: {
    s: { type: 'string' },
    i: { type: 'integer' },
    n: { type: 'number' },
    b: { type: 'boolean' },
    e: { enum: ['x', 'y'] },
    o: { type: 'object' },
    offset: { type: 'string' },
  },
};

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 11, 3, 22, 0, 0);

interface Sent {
  type: string;
  key?: string;
  id?: string;
  receivedAt: number;
  data: Record<string, unknown>;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts `archive`, waits until it has written `n` events, then closes it and `log`. */
async function archiveAll(archive: Archive, n: number, log: MemoryLog): Promise<void> {
  await archive.start();
  try {
    await until(`${n} events archived`, () => archive.archived === n);
  } finally {
    await archive.close();
    await log.close();
  }
}

async function append(log: MemoryLog, events: Sent[]): Promise<void> {
  await log.append(
    events.map((e) => ({
      key: e.key,
      timestampMs: e.receivedAt,
      value: encodeEventRecord({ receivedAt: e.receivedAt, schemaVersion: e.type === 'typed' ? 1 : 0, type: e.type, id: e.id, data: e.data }),
    })),
  );
}

async function rows(dir: string, type: string): Promise<Record<string, unknown>[]> {
  const files = `${dir}/type=${type}/*/*/*.parquet`;
  const r = await con.runAndReadAll(`SELECT * FROM read_parquet('${files}', hive_partitioning = true, union_by_name = true) ORDER BY "partition", "offset"`);
  return r.getRowObjectsJson() as Record<string, unknown>[];
}

/** Strings any code point, and those CSV quoting must get right (the rows reach DuckDB as CSV). */
const text = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('', '"', '""', ',', '\n', '\r\n', ' a ', 'x,"y"\n', 'NULL', '\\N', '\u0000'));
const value = fc.oneof(text, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const event = fc.record(
  {
    type: fc.constantFrom('typed', 'free'),
    key: fc.option(fc.constantFrom('k1', 'k2', 'k3', 'ünï'), { nil: undefined }),
    id: fc.option(fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }), fc.constantFrom('"', ',\n')), { nil: undefined }),
    hour: fc.integer({ min: 0, max: 3 }),
    data: fc.record(
      {
        s: fc.oneof(text, fc.integer()),
        i: fc.integer({ min: -1e12, max: 1e12 }),
        // -0 and the extremes too (records hold no NaN or infinity: the codec refuses them).
        n: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(-0, 5e-324, -Number.MAX_VALUE)),
        b: fc.boolean(),
        e: fc.constantFrom('x', 'y'),
        o: fc.dictionary(fc.string({ maxLength: 4 }), value, { maxKeys: 3 }),
        offset: text,
        extra: value,
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['type', 'hour', 'data'] },
);

test('property: every event appended is in exactly one Parquet file, in the folder of its type, date and hour, with its values in typed columns and the undeclared ones in _extra (model: the events sent)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(event, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 3 }), async (evs, partitions) => {
      const dir = await folder('archive-prop');
      const log = new MemoryLog(partitions);
      await log.start();
      const sent: Sent[] = evs.map((e, i) => ({ type: e.type, key: e.key, id: e.id, receivedAt: T0 + e.hour * HOUR + i, data: e.data as Record<string, unknown> }));
      await append(log, sent);
      const archive = new Archive({ log, dir, schemaOf: (t) => (t === 'typed' ? SCHEMA : undefined), rollSeconds: 0.01 });
      await archive.start();
      try {
        await until('every event archived', () => archive.archived === sent.length);
      } finally {
        await archive.close();
        await log.close();
      }
      for (const type of ['typed', 'free']) {
        const mine = sent.filter((e) => e.type === type);
        if (mine.length === 0) continue;
        const got = await rows(dir, type);
        assert.equal(got.length, mine.length, `${type}: rows in the files`);
        const byTime = new Map(mine.map((e) => [e.receivedAt, e]));
        for (const r of got) {
          const e = byTime.get(new Date(String(r.received_at).replace(' ', 'T') + 'Z').getTime());
          assert.ok(e, `a row of ${type} that was not sent: ${JSON.stringify(r)}`);
          byTime.delete(e.receivedAt);
          const d = new Date(e.receivedAt);
          assert.equal(String(r.date), d.toISOString().slice(0, 10));
          assert.equal(Number(r.hour), d.getUTCHours());
          assert.equal(r.id ?? undefined, e.id);
          assert.equal(r.key ?? undefined, e.key);
          const extra = (r._extra === null ? {} : JSON.parse(String(r._extra))) as Record<string, unknown>;
          if (type === 'typed') {
            const want: Record<string, unknown> = {};
            for (const [k, v] of Object.entries(e.data)) {
              const column = ['s', 'i', 'n', 'b', 'e', 'o'].includes(k) ? k : undefined; // 'offset' is a metadata column's name
              const fitsColumn = (k === 's' && typeof v === 'string') || (k === 'i' && Number.isSafeInteger(v)) || k === 'n' || k === 'b' || k === 'e' || k === 'o';
              if (column !== undefined && fitsColumn && v !== null) {
                if (k === 'o') assert.deepEqual(JSON.parse(String(r.o)), JSON.parse(JSON.stringify(v)));
                else if (k === 'i') assert.equal(Number(r.i), v);
                else assert.equal(r[k], v, `column ${k}`);
              } else if (column === undefined || v !== null) want[k] = v; // a declared column's null is its NULL
            }
            assert.deepEqual(extra, JSON.parse(JSON.stringify(want)), '_extra: the undeclared and unfitting values');
          } else {
            assert.deepEqual(extra, JSON.parse(JSON.stringify(e.data)));
          }
        }
        assert.equal(byTime.size, 0, `${type}: events not archived`);
      }
    }),
    { numRuns: 15 },
  );
});

test('a flush that wrote its files but did not commit: at start its files (and .tmp files, and the spool) are removed and its records archived again, once', async () => {
  const dir = await folder('archive-recover');
  const log = new MemoryLog(1);
  await log.start();
  const first: Sent[] = Array.from({ length: 20 }, (_, i) => ({ type: 'free', receivedAt: T0 + i, data: { n: i } }));
  await append(log, first);
  let archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.01 });
  await archive.start();
  await until('the first flush', () => archive.archived === 20);
  await archive.close();
  // Left by a flush of later records that stopped before its commit: a complete file named from the committed
  // position on (a copy of the one there, as if those records were written again) and a .tmp file.
  const hourDir = join(dir, 'type=free', 'date=2026-12-03', 'hour=22');
  const [done] = (await readdir(hourDir)).filter((f) => f.endsWith('.parquet'));
  const committed = (await log.committedOffsets('archive'))[0];
  await copyFile(join(hourDir, done), join(hourDir, `p0_${String(committed).padStart(16, '0')}-${String(committed + 5).padStart(16, '0')}.parquet`));
  await writeFile(join(hourDir, 'p0_x.parquet.tmp'), 'partial');
  await writeFile(join(dir, '.spool', 'p0_9.csv'), 'records gathered for a flush that never came\n');
  const second: Sent[] = Array.from({ length: 20 }, (_, i) => ({ type: 'free', receivedAt: T0 + 100 + i, data: { n: 100 + i } }));
  await append(log, second);
  archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.01 });
  await archiveAll(archive, 20, log);
  const got = await rows(dir, 'free');
  assert.deepEqual(
    got.map((r) => JSON.parse(String(r._extra)).n),
    [...first, ...second].map((e) => e.data.n),
  );
  assert.deepEqual((await readdir(hourDir)).filter((f) => f.endsWith('.tmp')), []);
  assert.deepEqual(await readdir(join(dir, '.spool')), [], 'the spool emptied at start and by the flushes');
});

test('a schema that gains a property: later files have the column, earlier rows read NULL in it (union by name)', async () => {
  const dir = await folder('archive-evolve');
  const log = new MemoryLog(1);
  await log.start();
  let schema: unknown = { type: 'object', properties: { a: { type: 'string' } } };
  const archive = new Archive({ log, dir, schemaOf: () => schema, rollSeconds: 0.01 });
  await archive.start();
  try {
    await append(log, [{ type: 'typed', receivedAt: T0, data: { a: 'one', b: 1 } }]);
    await until('the first event', () => archive.archived === 1);
    schema = { type: 'object', properties: { a: { type: 'string' }, b: { type: 'integer' } } };
    await append(log, [{ type: 'typed', receivedAt: T0 + 1, data: { a: 'two', b: 2 } }]);
    await until('the second event', () => archive.archived === 2);
  } finally {
    await archive.close();
    await log.close();
  }
  const got = await rows(dir, 'typed');
  assert.deepEqual(
    got.map((r) => [r.a, r.b === null ? null : Number(r.b), r._extra]),
    [
      ['one', null, '{"b":1}'],
      ['two', 2, null],
    ],
  );
});

test('archive thread: events appended while it starts are archived without any later append (it learns the log\'s ends when ready); a schema registered meanwhile gives its columns', async () => {
  const { ArchiveHost } = await import('../src/sinks/index.js');
  const { SchemaRegistry } = await import('../src/schema/index.js');
  const { FileKvStore } = await import('../src/core/index.js');
  const dir = await folder('archive-host');
  const log = new MemoryLog(2);
  await log.start();
  const registry = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'state')), defaultCompatibility: 'none' });
  await registry.start();
  const host = new ArchiveHost({ log, registry, dir: join(dir, 'archive'), rollSeconds: 1, rollBytes: 1 << 20 });
  const started = host.start();
  await registry.register('typed', { type: 'object', properties: { a: { type: 'string' } } });
  await append(log, [
    { type: 'typed', receivedAt: T0, data: { a: 'x' } },
    { type: 'typed', receivedAt: T0 + 1, data: { a: 'y' } },
  ]);
  try {
    await started;
    await until('the events appended during start', () => host.status().archived === 2, 60_000);
  } finally {
    await host.close();
    await registry.close();
    await log.close();
  }
  assert.deepEqual((await rows(join(dir, 'archive'), 'typed')).map((r) => [r.a, r._extra]).sort(), [
    ['x', null],
    ['y', null],
  ]);
});

test('retention: date folders wholly older than retentionDays are removed at start, of every type; younger ones and the day on the edge stay', async () => {
  const { ManualClock } = await import('../src/core/index.js');
  const { mkdir } = await import('node:fs/promises');
  const dir = await folder('archive-retention');
  for (const type of ['a', 'b']) {
    for (const date of ['2026-11-24', '2026-11-25', '2026-11-26', '2026-12-03']) {
      await mkdir(join(dir, `type=${type}`, `date=${date}`, 'hour=00'), { recursive: true });
      await writeFile(join(dir, `type=${type}`, `date=${date}`, 'hour=00', 'p0_0000000000000000-0000000000000000.parquet'), 'x');
    }
  }
  const log = new MemoryLog(1);
  await log.start();
  // Committed far ahead: the files above are not an uncommitted flush's.
  await log.commitOffsets('archive', { 0: 1e15 });
  const clock = new ManualClock(Date.UTC(2026, 11, 3, 10, 0, 0));
  const archive = new Archive({ log, dir, schemaOf: () => undefined, retentionDays: 7, clock });
  await archive.start();
  await archive.close();
  await log.close();
  for (const type of ['a', 'b']) assert.deepEqual((await readdir(join(dir, `type=${type}`))).sort(), ['date=2026-11-26', 'date=2026-12-03']);
});

test('an independent reader (hyparquet, zstd by hyparquet-compressors) reads the files: the same rows as sent, with Parquet types from the schema', async () => {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const dir = await folder('archive-hyparquet');
  const log = new MemoryLog(2);
  await log.start();
  const schema = { type: 'object', properties: { s: { type: 'string' }, i: { type: 'integer' }, n: { type: 'number' }, b: { type: 'boolean' }, o: { type: 'object' } } };
  const sent: Sent[] = Array.from({ length: 40 }, (_, k) => ({
    type: 'typed',
    key: `k${k % 3}`,
    id: `id${k}`,
    receivedAt: T0 + k * 61_000,
    data: { s: `s${k} ü`, i: k * 1_000_000_007, n: k / 8, b: k % 2 === 0, o: { k, list: [k] }, more: k },
  }));
  await append(log, sent);
  const archive = new Archive({ log, dir, schemaOf: () => schema, rollSeconds: 0.01 });
  await archiveAll(archive, sent.length, log);
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.endsWith('.parquet')) files.push(join(d, e.name));
    }
  };
  await walk(dir);
  const got = new Map<string, Record<string, unknown>>();
  for (const f of files) {
    const file = await asyncBufferFromFile(f);
    const meta = await parquetMetadataAsync(file);
    const types = Object.fromEntries(meta.schema.slice(1).map((c) => [c.name, [c.type, c.logical_type?.type ?? c.converted_type ?? null]]));
    assert.equal(types.s[0], 'BYTE_ARRAY');
    assert.ok(['STRING', 'UTF8'].includes(String(types.s[1])), `s is text: ${types.s}`);
    assert.equal(types.i[0], 'INT64');
    assert.deepEqual(types.n, ['DOUBLE', null]);
    assert.deepEqual(types.b, ['BOOLEAN', null]);
    assert.equal(types.received_at[0], 'INT64');
    assert.match(String(types.received_at[1]), /^TIMESTAMP/);
    assert.equal(meta.row_groups[0].columns[0].meta_data?.codec, 'ZSTD');
    for (const row of await parquetReadObjects({ file, compressors })) got.set(String(row.id), row as Record<string, unknown>);
  }
  assert.equal(got.size, sent.length);
  for (const e of sent) {
    const r = got.get(e.id!)!;
    assert.equal(r.s, e.data.s);
    assert.equal(Number(r.i), e.data.i);
    assert.equal(r.n, e.data.n);
    assert.equal(r.b, e.data.b);
    assert.deepEqual(JSON.parse(String(r.o)), e.data.o);
    assert.deepEqual(JSON.parse(String(r._extra)), { more: e.data.more });
    assert.equal(r.key, e.key);
    assert.equal(new Date(r.received_at as Date).getTime(), e.receivedAt);
    assert.equal(Number(r.offset) >= 0, true);
  }
});

test('compaction: a partition\'s files of a folder are merged into one once there are compactFiles, the events unchanged and once', async () => {
  const dir = await folder('archive-compact');
  const log = new MemoryLog(1);
  await log.start();
  const archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.01, compactFiles: 3 });
  await archive.start();
  try {
    for (let f = 0; f < 7; f++) {
      await append(log, Array.from({ length: 5 }, (_, i) => ({ type: 'free', id: `f${f}-${i}`, receivedAt: T0 + f * 10 + i, data: { f, i } })));
      await until(`flush ${f}`, () => archive.archived === (f + 1) * 5);
    }
    await archive.compactions();
  } finally {
    await archive.close();
    await log.close();
  }
  const hourDir = join(dir, 'type=free', 'date=2026-12-03', 'hour=22');
  const names = (await readdir(hourDir)).sort();
  // 7 flushes: after the 3rd, the 3 merged into one; after the 6th, that one and 3 more into one; the 7th alone.
  assert.equal(names.length, 2, names.join(' '));
  assert.ok(archive.compacted >= 3);
  const got = await rows(dir, 'free');
  assert.deepEqual(got.map((r) => r.id), Array.from({ length: 35 }, (_, k) => `f${Math.floor(k / 5)}-${k % 5}`));
});

test('a compaction that renamed its merged file but did not remove the files merged: readers and the next start keep the merged file only', async () => {
  const { History } = await import('../src/history/index.js');
  const { DuckDBInstance: Duck } = await import('@duckdb/node-api');
  const dir = await folder('archive-compact-crash');
  const log = new MemoryLog(1);
  await log.start();
  let archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.01, compactFiles: 1000 });
  await archive.start();
  for (let f = 0; f < 3; f++) {
    await append(log, Array.from({ length: 4 }, (_, i) => ({ type: 'free', id: `f${f}-${i}`, receivedAt: T0 + f * 10 + i, data: { f } })));
    await until(`flush ${f}`, () => archive.archived === (f + 1) * 4);
  }
  await archive.close();
  const hourDir = join(dir, 'type=free', 'date=2026-12-03', 'hour=22');
  const inputs = (await readdir(hourDir)).sort();
  assert.equal(inputs.length, 3);
  // What a compaction leaves when it stops after its rename: the merged file beside the files it merged.
  const first = inputs[0].slice(3, 19);
  const last = inputs[2].slice(20, 36);
  const db2 = await Duck.create(':memory:');
  const c2 = await db2.connect();
  await c2.run(`COPY (SELECT * FROM read_parquet([${inputs.map((n) => `'${join(hourDir, n)}'`).join(', ')}], hive_partitioning = false) ORDER BY "offset") TO '${join(hourDir, `p0_${first}-${last}.parquet`)}' (FORMAT parquet, COMPRESSION zstd)`);
  c2.closeSync();
  db2.closeSync();
  const history = new History({ log, archiveDir: dir, schemaOf: () => undefined, types: () => [], timeoutMs: 30_000, maxRows: 100 });
  assert.deepEqual((await history.query('SELECT count(*), count(DISTINCT id) FROM free')).rows, [['12', '12']]);
  archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.01 });
  await archive.start();
  await archive.close();
  assert.deepEqual(await readdir(hourDir), [`p0_${first}-${last}.parquet`]);
  assert.deepEqual((await rows(dir, 'free')).map((r) => r.id), Array.from({ length: 12 }, (_, k) => `f${Math.floor(k / 4)}-${k % 4}`));
  await log.close();
});

test('records buffered while the log is quiet are written once they are due, however much garbage is collected meanwhile', async () => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = await folder('archive-quiet');
  const log = new MemoryLog(4);
  await log.start();
  const archive = new Archive({ log, dir, schemaOf: () => undefined, rollSeconds: 0.3 });
  await archive.start();
  try {
    await append(log, Array.from({ length: 8 }, (_, i) => ({ type: 'free', key: `k${i}`, receivedAt: T0 + i, data: { i } })));
    // While every partition waits for its records to be due, collect garbage again and again.
    const deadline = Date.now() + 20_000;
    while (archive.archived < 8) {
      assert.ok(Date.now() < deadline, `only ${archive.archived} of 8 written: a wait for buffered records to be due was lost`);
      gc();
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await archive.close();
    await log.close();
  }
});
