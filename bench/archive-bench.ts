/**
 * The archive and SQL over history (issue #13): archive throughput from the log (events/s written to Parquet by the
 * archive, on one thread), then the three aggregations of the backfill scenario by SQL over history over the archived
 * events, next to DuckDB reading the same events as NDJSON and running the same aggregations (one thread each).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEventRecord } from '../src/core/index.js';
import { SegmentLog } from '../src/log/index.js';
import { Archive } from '../src/sinks/index.js';
import { History } from '../src/history/index.js';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';

/** The three aggregations of the backfill scenario, in DuckDB's SQL over the history tables (`v` = a table). */
const QUERIES = [
  (v: (t: string) => string) => `SELECT article_id, time_bucket(INTERVAL 5 MINUTE, received_at) AS w, count(*) AS views, approx_count_distinct(user_id) AS readers FROM ${v('page_view')} GROUP BY ALL`,
  (v: (t: string) => string) => `SELECT type, time_bucket(INTERVAL 1 MINUTE, received_at) AS w, count(*) AS n FROM ${v('events')} GROUP BY ALL`,
  (v: (t: string) => string) => `SELECT pair, time_bucket(INTERVAL 1 MINUTE, received_at) AS w, approx_quantile(price, 0.99) AS p99 FROM ${v('trade')} GROUP BY ALL`,
];

export interface ArchiveBenchResult {
  events: number;
  /** Events written to Parquet per second by the archive, from the log. */
  archiveEventsPerS: number;
  archiveBytes: number;
  /** The three aggregations by SQL over history over the archived events. */
  historyEventsPerS: number;
  historySeconds: number;
  /** DuckDB: read_json_auto of the same events as NDJSON + the same aggregations. */
  duckdbEventsPerS: number | undefined;
  duckdbSeconds: number | undefined;
}

export async function archiveBench(events: number, eventsPerSecond = 20_000): Promise<ArchiveBenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'halflife-bench-archive-'));
  const log = new SegmentLog({ dir: join(dir, 'log'), partitions: 8, fsync: 'never' });
  await log.start();
  const ndjsonFile = join(dir, 'events.ndjson');
  const ndjson = createWriteStream(ndjsonFile);
  try {
    const start = 1_790_000_000_000;
    const step = 1000 / eventsPerSecond;
    for (let i = 0; i < events; i += 1000) {
      const evs = makeEvents(1 + i, Math.min(1000, events - i));
      let lines = '';
      await log.append(
        evs.map((e, j) => {
          const t = Math.floor(start + (i + j) * step);
          lines += `${JSON.stringify({ type: e.type, received_at: new Date(t).toISOString(), ...e.data })}\n`;
          return { key: e.key, timestampMs: t, value: encodeEventRecord({ receivedAt: t, schemaVersion: 1, type: e.type, data: e.data }) };
        }),
      );
      if (!ndjson.write(lines)) await once(ndjson, 'drain');
    }
    ndjson.end();
    await once(ndjson, 'finish');

    progress(`logged ${events} events`);
    const archiveDir = join(dir, 'archive');
    const schemaOf = (t: string) => WORKLOAD_SCHEMAS[t];
    global.gc?.();
    const archive = new Archive({ log, dir: archiveDir, schemaOf, rollSeconds: 1 });
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await archive.start();
    while (Object.values(archive.lag()).some((n) => n > 0)) await new Promise((r) => setTimeout(r, 5));
    const archiveSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    progress(`archive used ${(cpu.user / 1e6).toFixed(1)} s user + ${(cpu.system / 1e6).toFixed(1)} s system CPU`);
    await archive.close();
    const archiveBytes = await folderBytes(archiveDir);
    progress(`archived in ${archiveSeconds.toFixed(1)} s`);

    const history = new History({ log, archiveDir, schemaOf, types: () => Object.keys(WORKLOAD_SCHEMAS), timeoutMs: 3_600_000, maxRows: 10_000_000, memoryLimitMb: 4096 });
    const t1 = performance.now();
    for (const q of QUERIES) {
      const r = await history.query(q((t) => t));
      if (r.tailEvents !== 0) throw new Error(`history read ${r.tailEvents} events from the log: the archive had not caught up`);
    }
    const historySeconds = (performance.now() - t1) / 1000;
    progress(`history queries in ${historySeconds.toFixed(1)} s`);

    let duckdbSeconds: number | undefined;
    try {
      const duck = await import('@duckdb/node-api');
      const db = await duck.DuckDBInstance.create(':memory:', { threads: '1' });
      const c = await db.connect();
      const t2 = performance.now();
      await c.run(`CREATE TABLE ev AS SELECT * FROM read_json_auto('${ndjsonFile}', format = 'newline_delimited', union_by_name = true)`);
      await c.run(`CREATE VIEW page_view AS SELECT * FROM ev WHERE type = 'page_view'`);
      await c.run(`CREATE VIEW trade AS SELECT * FROM ev WHERE type = 'trade'`);
      for (const q of QUERIES) await c.runAndReadAll(q((t) => (t === 'events' ? 'ev' : t)));
      duckdbSeconds = (performance.now() - t2) / 1000;
      c.closeSync();
      db.closeSync();
    } catch {
      duckdbSeconds = undefined;
    }
    return {
      events,
      archiveEventsPerS: events / archiveSeconds,
      archiveBytes,
      historyEventsPerS: events / historySeconds,
      historySeconds,
      duckdbEventsPerS: duckdbSeconds === undefined ? undefined : events / duckdbSeconds,
      duckdbSeconds,
    };
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export interface ArchiveLiveResult {
  /** Ingest over HTTP with the archive writing a file per partition every second. */
  ingestPerS: number;
  /** Records not yet in a committed file, sampled every 500 ms during the load: the most, and at its end. */
  maxLag: number;
  endLag: number;
  /** From the load's end until every record is in a committed file. */
  catchUpSeconds: number;
}

/**
 * The archive under full ingest: a halflife server (defaults, the archive on) with `archive.rollSeconds` 1 so that
 * its lag shows what it cannot write rather than what it waits to write (with the default 60 s a partition holds up
 * to a minute of records by design), driven as hard as `concurrency` connections go for `seconds`.
 */
export async function archiveLive(bodies: readonly Buffer[], eventsPerBody: number, seconds: number, concurrency: number): Promise<ArchiveLiveResult> {
  const { startHalflife, drive } = await import('./http-load.js');
  const target = await startHalflife('interval', [], false, { HALFLIFE_ARCHIVE_ROLL_SECONDS: '1' });
  try {
    const lag = async () => {
      const a = (await (await fetch(`${target.url}/v1/archive`)).json()) as { lagRecords: number | null };
      return a.lagRecords ?? 0;
    };
    let maxLag = 0;
    let going = true;
    const sampler = (async () => {
      while (going) {
        maxLag = Math.max(maxLag, await lag());
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const load = await drive(target, bodies, eventsPerBody, seconds, concurrency);
    going = false;
    await sampler;
    const endLag = await lag();
    maxLag = Math.max(maxLag, endLag);
    const t0 = performance.now();
    const deadline = t0 + 300_000;
    while ((await lag()) > 0) {
      if (performance.now() > deadline) throw new Error('the archive did not catch up within 5 minutes of the load');
      await new Promise((r) => setTimeout(r, 100));
    }
    return { ingestPerS: load.eventsPerS, maxLag, endLag, catchUpSeconds: (performance.now() - t0) / 1000 };
  } finally {
    await target.stop();
  }
}

const progress = (s: string) => process.stderr.write(`archive bench: ${s}\n`);

async function folderBytes(dir: string): Promise<number> {
  const { readdir } = await import('node:fs/promises');
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

// Run alone: node --expose-gc --import tsx bench/archive-bench.ts [events]
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await archiveBench(Number(process.argv[2] ?? 1_000_000));
  console.log(JSON.stringify(r, null, 2));
}
