// Which Parquet writer the archive uses (issue #13): N page_view rows (9 data columns + 7 metadata columns) written
// to one zstd Parquet file by DuckDB from its appender, row by row and from column chunks; by DuckDB from CSV the
// archive writes (lines made from decoded events, and straight from the event records' bytes); by DuckDB from NDJSON;
// and by hyparquet-writer (pure JS, SNAPPY: it has no zstd compressor of its own) when installed. Prints seconds and
// MiB per method.
//   node --import tsx bench/archive-writer.ts [rows]
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, DuckDBDataChunk, DOUBLE, VARCHAR, INTEGER, BIGINT, type DuckDBType } from '@duckdb/node-api';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';
import { decodeEventRecord, encodeEventRecord } from '../src/core/index.js';
import { CsvSpool, EXTRA, csvRow, csvSource, dataColumns, fileSelect } from '../src/sinks/index.js';

const rows = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'halflife-archive-writer-'));
const events = makeEvents(7, Math.ceil(rows / 0.7) + 1000).filter((e) => e.type === 'page_view').slice(0, rows);
const DATA = ['article_id', 'user_id', 'section', 'read_ms', 'referrer', 'device', 'url', 'session_id', 'ts_client'] as const;
const now = Date.now();
type Col = { name: string; type: DuckDBType; sql: string; values: (i: number) => string | number | null };
const cols: Col[] = [
  ...DATA.map((f): Col => ({ name: f, type: f === 'read_ms' || f === 'ts_client' ? DOUBLE : VARCHAR, sql: f === 'read_ms' || f === 'ts_client' ? 'DOUBLE' : 'VARCHAR', values: (i) => (events[i].data[f] as string | number | undefined) ?? null })),
  { name: 'received_at', type: DOUBLE, sql: 'DOUBLE', values: (i) => now + i },
  { name: 'event_time', type: DOUBLE, sql: 'DOUBLE', values: (i) => now + i },
  { name: 'id', type: VARCHAR, sql: 'VARCHAR', values: () => null },
  { name: 'key', type: VARCHAR, sql: 'VARCHAR', values: (i) => events[i].key ?? null },
  { name: 'partition', type: INTEGER, sql: 'INTEGER', values: (i) => i % 8 },
  { name: 'offset', type: DOUBLE, sql: 'DOUBLE', values: (i) => i * 65_536 },
  { name: 'schema_version', type: INTEGER, sql: 'INTEGER', values: () => 1 },
];
const select = cols
  .map((c) => (c.name === 'received_at' || c.name === 'event_time' ? `epoch_ms(${c.name}::BIGINT) AS ${c.name}` : c.name === 'offset' ? `"offset"::BIGINT AS "offset"` : c.name === 'read_ms' || c.name === 'ts_client' ? `${c.name}::BIGINT AS ${c.name}` : `"${c.name}"`))
  .join(', ');

async function duckdb(method: 'rows' | 'chunks'): Promise<{ s: number; mib: number }> {
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const con = await instance.connect();
  await con.run(`CREATE TABLE buf (${cols.map((c) => `"${c.name}" ${c.sql}`).join(', ')})`);
  const file = join(dir, `${method}.parquet`);
  const t0 = performance.now();
  const app = await con.createAppender('buf');
  if (method === 'rows') {
    for (let i = 0; i < rows; i++) {
      for (const c of cols) {
        const v = c.values(i);
        if (v === null) app.appendNull();
        else if (c.type === VARCHAR) app.appendVarchar(v as string);
        else if (c.type === INTEGER) app.appendInteger(v as number);
        else app.appendDouble(v as number);
      }
      app.endRow();
    }
  } else {
    const size = 2048;
    const chunk = DuckDBDataChunk.create(cols.map((c) => c.type), size);
    for (let start = 0; start < rows; start += size) {
      const n = Math.min(size, rows - start);
      chunk.rowCount = n;
      cols.forEach((c, ci) => {
        const arr = new Array(n);
        for (let i = 0; i < n; i++) arr[i] = c.values(start + i);
        chunk.setColumnValues(ci, arr);
      });
      app.appendDataChunk(chunk);
    }
  }
  app.closeSync();
  const t1 = performance.now();
  await con.run(`COPY (SELECT ${select} FROM buf) TO '${file}' (FORMAT parquet, COMPRESSION zstd)`);
  const t2 = performance.now();
  con.closeSync();
  instance.closeSync();
  console.log(`duckdb ${method}: append ${((t1 - t0) / 1000).toFixed(2)} s, copy ${((t2 - t1) / 1000).toFixed(2)} s`);
  return { s: (t2 - t0) / 1000, mib: statSync(file).size / 2 ** 20 };
}

/** DuckDB reading NDJSON the archive writes (JSON text of each row's data and metadata), with the columns given. */
async function ndjson(): Promise<{ s: number; mib: number }> {
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const con = await instance.connect();
  const file = join(dir, 'ndjson.parquet');
  const tmp = join(dir, 'rows.ndjson');
  const t0 = performance.now();
  const parts: string[] = [];
  for (let i = 0; i < rows; i++) {
    const e = events[i];
    parts.push(`{"received_at":${now + i},"event_time":${now + i},"key":${JSON.stringify(e.key)},"partition":${i % 8},"offset":${i * 65_536},"schema_version":1,"data":${JSON.stringify(e.data)}}\n`);
  }
  writeFileSync(tmp, parts.join(''));
  const t1 = performance.now();
  const struct = DATA.map((f) => `${f} ${f === 'read_ms' || f === 'ts_client' ? 'BIGINT' : 'VARCHAR'}`).join(', ');
  await con.run(
    `COPY (SELECT ${DATA.map((f) => `data.${f} AS ${f}`).join(', ')}, epoch_ms(received_at) AS received_at, epoch_ms(event_time) AS event_time, NULL::VARCHAR AS id, key, partition, "offset", schema_version ` +
      `FROM read_json('${tmp}', format='newline_delimited', columns={received_at: 'BIGINT', event_time: 'BIGINT', key: 'VARCHAR', partition: 'INTEGER', "offset": 'BIGINT', schema_version: 'INTEGER', data: 'STRUCT(${struct})'})) ` +
      `TO '${file}' (FORMAT parquet, COMPRESSION zstd)`,
  );
  const t2 = performance.now();
  con.closeSync();
  instance.closeSync();
  console.log(`duckdb ndjson: write ${((t1 - t0) / 1000).toFixed(2)} s, read + copy ${((t2 - t1) / 1000).toFixed(2)} s`);
  return { s: (t2 - t0) / 1000, mib: statSync(file).size / 2 ** 20 };
}

/** DuckDB reading the CSV the archive writes (see CsvSpool): `objects` from decoded records, else from their bytes. */
async function csv(objects: boolean): Promise<{ s: number; mib: number }> {
  const records = events.map((e, i) => encodeEventRecord({ receivedAt: now + i, schemaVersion: 1, type: 'page_view', data: e.data }));
  const columns = [...dataColumns(WORKLOAD_SCHEMAS.page_view), EXTRA];
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const con = await instance.connect();
  const file = join(dir, 'csv.parquet');
  const t0 = performance.now();
  const spool = await CsvSpool.create(join(dir, 'rows.csv'));
  for (let i = 0; i < rows; i++) {
    const r = records[i];
    if (objects) spool.add(csvRow(columns, decodeEventRecord(r, events[i].key), i % 8, i * 65_536, events[i].key));
    else spool.addRecord(columns, r, 0, r.length, i % 8, i * 65_536, events[i].key);
    if (i % 4096 === 0) await spool.drain();
  }
  await spool.finish();
  const t1 = performance.now();
  await con.run(`COPY (SELECT ${fileSelect(columns)} FROM ${csvSource([spool.path], columns, spool.maxLineBytes)}) TO '${file}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`);
  const t2 = performance.now();
  con.closeSync();
  instance.closeSync();
  console.log(`duckdb csv ${objects ? 'from objects' : 'from records'}: write ${((t1 - t0) / 1000).toFixed(2)} s, read + copy ${((t2 - t1) / 1000).toFixed(2)} s`);
  return { s: (t2 - t0) / 1000, mib: statSync(file).size / 2 ** 20 };
}

async function hyparquet(): Promise<{ s: number; mib: number } | undefined> {
  let w: { parquetWriteFile(o: unknown): Promise<void> | void };
  try {
    w = (await import('hyparquet-writer' as string)) as typeof w;
  } catch {
    return undefined;
  }
  const file = join(dir, 'hyparquet.parquet');
  const t0 = performance.now();
  const columnData = cols.map((c) => {
    const data = new Array(rows);
    for (let i = 0; i < rows; i++) data[i] = c.values(i);
    const type = c.type === VARCHAR ? 'STRING' : c.type === INTEGER ? 'INT32' : 'DOUBLE';
    return { name: c.name, data, type };
  });
  await w.parquetWriteFile({ filename: file, columnData });
  return { s: (performance.now() - t0) / 1000, mib: statSync(file).size / 2 ** 20 };
}

try {
  for (let round = 0; round < 2; round++) {
    for (const m of ['rows', 'chunks'] as const) {
      const r = await duckdb(m);
      console.log(`round ${round + 1} duckdb ${m}: ${rows} rows in ${r.s.toFixed(2)} s (${Math.round(rows / r.s)} rows/s), ${r.mib.toFixed(1)} MiB zstd`);
    }
    for (const objects of [true, false]) {
      const c = await csv(objects);
      console.log(`round ${round + 1} duckdb csv ${objects ? 'from objects' : 'from records'}: ${rows} rows in ${c.s.toFixed(2)} s (${Math.round(rows / c.s)} rows/s), ${c.mib.toFixed(1)} MiB zstd`);
    }
    const j = await ndjson();
    console.log(`round ${round + 1} duckdb ndjson: ${rows} rows in ${j.s.toFixed(2)} s (${Math.round(rows / j.s)} rows/s), ${j.mib.toFixed(1)} MiB zstd`);
    const h = await hyparquet();
    if (h) console.log(`round ${round + 1} hyparquet-writer: ${rows} rows in ${h.s.toFixed(2)} s (${Math.round(rows / h.s)} rows/s), ${h.mib.toFixed(1)} MiB snappy`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
void BIGINT;
