import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeEventRecord, HalflifeError } from '../src/core/index.js';
import { MemoryLog } from '../src/log/index.js';
import { Archive } from '../src/sinks/index.js';
import { History } from '../src/history/index.js';
import { tempDir } from './helpers/tmp.js';

/**
 * SQL over history (issue #13): the archive's committed files plus the log's records after its positions, counted
 * against the events appended (the model), while the archive writes; and the sandbox.
 */
const cleanups: (() => Promise<void>)[] = [];
// DuckDB's asynchronous calls do not keep Node's event loop alive (a server's listener does): without this, the
// runner sees an empty loop while an archive starts its DuckDB and ends the test.
const keepAlive = setInterval(() => {}, 60_000);
after(async () => {
  clearInterval(keepAlive);
  for (const c of cleanups) await c();
});

async function folder(prefix: string): Promise<string> {
  const t = await tempDir(`halflife-${prefix}-`);
  cleanups.push(t.cleanup);
  return t.dir;
}

const SCHEMAS: Record<string, unknown> = {
  click: { type: 'object', properties: { n: { type: 'integer' }, page: { type: 'string' } } },
  order: { type: 'object', properties: { n: { type: 'integer' }, amount: { type: 'number' } } },
};
const T0 = Date.UTC(2026, 11, 3, 22, 30, 0);

function eventsFrom(start: number, count: number) {
  return Array.from({ length: count }, (_, j) => {
    const n = start + j;
    const type = n % 3 === 0 ? 'order' : 'click';
    return {
      key: `k${n % 7}`,
      timestampMs: T0 + n * 1000,
      value: encodeEventRecord({ receivedAt: T0 + n * 1000, schemaVersion: 1, type, id: `e${n}`, data: type === 'order' ? { n, amount: n / 4 } : { n, page: `/p${n % 5}` } }),
    };
  });
}

async function setup(partitions: number, rollSeconds: number) {
  const dir = await folder('history');
  const log = new MemoryLog(partitions);
  await log.start();
  const archiveDir = join(dir, 'archive');
  const archive = new Archive({ log, dir: archiveDir, schemaOf: (t) => SCHEMAS[t], rollSeconds });
  const tempDir = join(dir, 'tmp');
  const history = new History({ log, archiveDir, schemaOf: (t) => SCHEMAS[t], types: () => Object.keys(SCHEMAS), timeoutMs: 30_000, maxRows: 1000, tempDir });
  return { log, archive, history, archiveDir, tempDir };
}

test('every event appended is counted once by SQL over history, whatever the archive has written of it, while it writes (model: the events appended); the tail\'s files are gone after each query, and what a stopped process left is removed at start', async () => {
  const { log, archive, history, tempDir } = await setup(3, 0.05);
  await mkdir(join(tempDir, 'halflife-history-left'), { recursive: true });
  await writeFile(join(tempDir, 'halflife-history-left', '0.csv'), 'x\n');
  await history.start();
  assert.deepEqual(await readdir(tempDir), []);
  await archive.start();
  try {
    let appended = 0;
    for (let round = 0; round < 12; round++) {
      await log.append(eventsFrom(appended, 150));
      appended += 150;
      const r = await history.query('SELECT type, count(*) AS n, count(DISTINCT id) AS ids, sum("n") AS total FROM events GROUP BY type ORDER BY type');
      const want = (type: string) => {
        const ns = Array.from({ length: appended }, (_, n) => n).filter((n) => (n % 3 === 0 ? 'order' : 'click') === type);
        return [type, ns.length, ns.length, ns.reduce((a, b) => a + b, 0)];
      };
      assert.deepEqual(
        r.rows.map((row) => row.map((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v))),
        [want('click'), want('order')],
        `round ${round}: ${r.files} files, ${r.tailEvents} events from the log`,
      );
    }
    assert.deepEqual(await readdir(tempDir), [], 'no tail files left');
    // The archive has written some of it by now: both sources were used.
    const last = await history.query('SELECT count(*) FROM click');
    assert.ok(archive.archived > 0, 'the archive wrote files');
    assert.ok(last.files > 0 || last.tailEvents > 0);
  } finally {
    await archive.close();
    await log.close();
  }
});

test('per type tables have the schema\'s columns, the hive columns and the metadata, from files and tail alike; a filter on date and hour works', async () => {
  const { log, archive, history } = await setup(2, 0.05);
  await archive.start();
  try {
    await log.append(eventsFrom(0, 30));
    await new Promise<void>((resolve) => {
      const check = () => (archive.archived === 30 ? resolve() : setTimeout(check, 10));
      check();
    });
    await log.append(eventsFrom(30, 30)); // in the log only (or being written)
    const r = await history.query(`SELECT count(*) AS n, min(amount) AS lo, max(amount) AS hi FROM "order" WHERE date = DATE '2026-12-03' AND hour = 22`);
    // Events 0..59 at T0 + n s: 22:30:00 .. 22:30:59, all in hour 22.
    const orders = Array.from({ length: 60 }, (_, n) => n).filter((n) => n % 3 === 0);
    assert.deepEqual(r.rows, [[String(orders.length), orders[0] / 4, orders.at(-1)! / 4]]);
    const cols = await history.query('SELECT * FROM click LIMIT 1');
    assert.deepEqual(
      cols.columns.map((c) => c.name).sort(),
      ['_extra', 'date', 'event_time', 'hour', 'id', 'key', 'n', 'offset', 'page', 'partition', 'received_at', 'schema_version', 'type'].sort(),
    );
  } finally {
    await archive.close();
    await log.close();
  }
});

test('sandbox: files outside the archive, COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA and several statements are refused with their codes; a query past its time is cancelled; rows past the limit are cut', async () => {
  const { log, history, archiveDir } = await setup(1, 60);
  await log.append(eventsFrom(0, 10));
  const code = async (sql: string) => {
    try {
      await history.query(sql);
      return 'ok';
    } catch (err) {
      assert.ok(err instanceof HalflifeError, String(err));
      return err.code;
    }
  };
  try {
    assert.equal(await code("SELECT * FROM read_csv('/etc/passwd')"), 'SQL_ERROR');
    assert.match(await history.query("SELECT * FROM read_text('/etc/passwd')").then(() => 'ok', (e: HalflifeError) => e.message), /disabled by configuration|Permission/);
    assert.equal(await code("SELECT * FROM read_parquet('/etc/*.parquet')"), 'SQL_ERROR');
    assert.equal(await code(`SELECT * FROM read_parquet('${archiveDir}/../*.parquet')`), 'SQL_ERROR');
    assert.equal(await code("SELECT * FROM glob('/etc/*')"), 'SQL_ERROR');
    assert.equal(await code(`COPY (SELECT 1) TO '${archiveDir}/x.csv'`), 'SQL_FORBIDDEN');
    assert.equal(await code("ATTACH '/tmp/x.db'"), 'SQL_FORBIDDEN');
    assert.equal(await code('INSTALL httpfs'), 'SQL_FORBIDDEN');
    assert.equal(await code('LOAD httpfs'), 'SQL_FORBIDDEN');
    assert.equal(await code('SET enable_external_access = true'), 'SQL_FORBIDDEN');
    assert.equal(await code("PRAGMA threads=4"), 'SQL_FORBIDDEN');
    assert.equal(await code('CREATE TABLE t AS SELECT 1'), 'SQL_FORBIDDEN');
    assert.equal(await code('SELECT 1; SELECT 2'), 'SQL_FORBIDDEN');
    assert.equal(await code('SELEC 1'), 'SQL_ERROR');
    assert.equal(await code("COPY (SELECT 1) TO '/tmp/halflife-never.csv'"), 'SQL_FORBIDDEN');
    assert.equal(await code('  /* why */ -- not\n COPY click TO \'x.csv\''), 'SQL_FORBIDDEN');
    assert.equal(await code(`EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '${archiveDir}/evil.parquet' (FORMAT parquet)`), 'SQL_FORBIDDEN');
    assert.equal(await code('EXPLAIN SELECT 1'), 'SQL_FORBIDDEN');
    for (const ok of ['SELECT count(*) FROM click', 'FROM click', 'WITH x AS (SELECT 1 AS a) SELECT * FROM x', '(SELECT 1)', '/* c */ SELECT 1', 'DESCRIBE click', 'SUMMARIZE SELECT 1']) {
      assert.equal(await code(ok), 'ok', ok);
    }
    const slow = new History({ log, archiveDir, schemaOf: (t) => SCHEMAS[t], types: () => Object.keys(SCHEMAS), timeoutMs: 300, maxRows: 10 });
    const t0 = performance.now();
    assert.equal(await slow.query('SELECT count(*) FROM range(1000000000000) a, range(1000) b').then(() => 'ok', (e: HalflifeError) => e.code), 'SQL_TIMEOUT');
    assert.ok(performance.now() - t0 < 60_000, 'cancelled, not left to run');
    const cut = await slow.query('SELECT * FROM range(25)');
    assert.equal(cut.rows.length, 10);
    assert.equal(cut.truncated, true);
  } finally {
    await log.close();
  }
});

test('a file holding events past the positions a query read (a flush committed and compacted meanwhile) is counted only up to them; the rest come from the log, once', async () => {
  const { log, archive, history } = await setup(1, 0.01);
  await archive.start();
  try {
    await log.append(eventsFrom(0, 12));
    await new Promise<void>((resolve) => {
      const check = () => (archive.archived === 12 ? resolve() : setTimeout(check, 10));
      check();
    });
  } finally {
    await archive.close();
  }
  // As the query sees it when it read the positions before that flush: committed up to the 9th event.
  const [ninth] = await log.read(0, 0, { maxRecords: 9 }).then((rs) => rs.slice(8));
  await log.commitOffsets('archive', { 0: ninth.offset });
  const r = await history.query('SELECT count(*), count(DISTINCT id) FROM events');
  assert.deepEqual(r.rows, [['12', '12']]);
  assert.equal(r.tailEvents, 4);
  await log.close();
});
