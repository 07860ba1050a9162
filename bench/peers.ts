/**
 * The peers: each does its part of halflife's job on the same events, on the same machine, so the bench can
 * print ratios. Each returns undefined (with a notice) when its server is not reachable.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { WorkloadEvent } from './workload.js';

export interface PeerResult {
  readonly eventsPerS: number;
  readonly note: string;
}

function notice(peer: string, err: unknown): undefined {
  process.stderr.write(`bench: skipping ${peer}: ${(err as Error).message ?? String(err)}\n`);
  return undefined;
}

const FIVE_MIN = 300_000;
const MIN = 60_000;

/**
 * Redis doing the views' job: per event, pipelined PFADD into a per-article 5-minute HyperLogLog and INCR of
 * per-minute counters (pipelines of 1,000 events, ioredis).
 */
export async function redisPeer(events: readonly WorkloadEvent[], startMs: number, perEventMs: number): Promise<PeerResult | undefined> {
  let Redis: typeof import('ioredis').Redis;
  try {
    Redis = (await import('ioredis')).Redis;
  } catch (err) {
    return notice('Redis (ioredis not installed)', err);
  }
  const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    return notice('Redis', err);
  }
  try {
    const prefix = `halflife-bench-${process.pid}`;
    const t0 = performance.now();
    for (let i = 0; i < events.length; i += 1000) {
      const p = redis.pipeline();
      for (let j = i; j < Math.min(events.length, i + 1000); j++) {
        const e = events[j];
        const t = startMs + j * perEventMs;
        const m = Math.floor(t / MIN) * MIN;
        p.incr(`${prefix}:type:${e.type}:${m}`);
        if (e.type === 'page_view') {
          const w = Math.floor(t / FIVE_MIN) * FIVE_MIN;
          p.pfadd(`${prefix}:readers:${String(e.data.article_id)}:${w}`, String(e.data.user_id));
          p.incr(`${prefix}:views:${String(e.data.article_id)}:${w}`);
        } else if (e.type === 'trade') {
          p.incrbyfloat(`${prefix}:volume:${String(e.data.pair)}:${m}`, Number(e.data.qty));
        }
      }
      await p.exec();
    }
    const seconds = (performance.now() - t0) / 1000;
    // Clean up the keys this run made.
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 10_000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    return { eventsPerS: events.length / seconds, note: 'pipelined PFADD + INCR per event, 1,000 per pipeline' };
  } finally {
    redis.disconnect();
  }
}

/**
 * NATS JetStream as the durable log: a Node service publishing each event with acks (256 in flight) to a
 * file-backed stream. Also reports 1,000-event messages.
 */
export async function natsPeer(bodies: readonly string[], perMessage: 'event' | 'batch', count: number): Promise<PeerResult | undefined> {
  let transport: typeof import('@nats-io/transport-node');
  let js: typeof import('@nats-io/jetstream');
  try {
    transport = await import('@nats-io/transport-node');
    js = await import('@nats-io/jetstream');
  } catch (err) {
    return notice('NATS JetStream (client not installed)', err);
  }
  let nc: Awaited<ReturnType<typeof transport.connect>>;
  try {
    nc = await transport.connect({ servers: '127.0.0.1:4222', timeout: 2000 });
  } catch (err) {
    return notice('NATS JetStream', err);
  }
  const stream = `halflife_bench_${process.pid}_${perMessage}`;
  try {
    const jsm = await js.jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: js.StorageType.File });
    const client = js.jetstream(nc);
    const enc = new TextEncoder();
    const t0 = performance.now();
    let events = 0;
    if (perMessage === 'event') {
      const lines = bodies.flatMap((b) => (JSON.parse(b) as unknown[]).map((e) => enc.encode(JSON.stringify(e))));
      const inflight = new Set<Promise<unknown>>();
      for (let i = 0; i < count; i++) {
        const p = client.publish(`${stream}.p${i % 8}`, lines[i % lines.length]).finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= 256) await Promise.race(inflight);
      }
      await Promise.all(inflight);
      events = count;
    } else {
      const payloads = bodies.map((b) => enc.encode(b));
      for (let i = 0; i < count / 1000; i++) {
        await client.publish(`${stream}.p${i % 8}`, payloads[i % payloads.length], { msgID: `b${i}` });
        events += 1000;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    await jsm.streams.delete(stream);
    return { eventsPerS: events / seconds, note: perMessage === 'event' ? 'one message per event, acked, 256 in flight, file storage' : '1,000-event messages, acked, file storage' };
  } catch (err) {
    return notice('NATS JetStream', err);
  } finally {
    await nc.close();
  }
}

/** PostgreSQL: COPY the events into a table, then the views' aggregation with COUNT(DISTINCT). */
export async function postgresPeer(events: readonly WorkloadEvent[], startMs: number, perEventMs: number): Promise<(PeerResult & { copyPerS: number; queryS: number }) | undefined> {
  let pg: typeof import('pg');
  let copyFrom: typeof import('pg-copy-streams').from;
  try {
    pg = (await import('pg')).default as unknown as typeof import('pg');
    copyFrom = (await import('pg-copy-streams')).from;
  } catch (err) {
    return notice('PostgreSQL (pg not installed)', err);
  }
  const client = new pg.Client({ host: '127.0.0.1', port: 5432, database: 'test', user: 'postgres', connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
  } catch (err) {
    return notice('PostgreSQL', err);
  }
  const table = `halflife_bench_${process.pid}`;
  try {
    await client.query(`CREATE UNLOGGED TABLE ${table} (ts timestamptz, type text, article_id text, user_id text, pair text, price double precision)`);
    const esc = (v: unknown) => (v === undefined || v === null ? '\\N' : String(v).replace(/[\\\t\n]/g, ' '));
    const t0 = performance.now();
    const rows = Readable.from(
      (function* () {
        for (let i = 0; i < events.length; i += 1000) {
          let chunk = '';
          for (let j = i; j < Math.min(events.length, i + 1000); j++) {
            const e = events[j];
            const d = e.data;
            chunk += `${new Date(startMs + j * perEventMs).toISOString()}\t${e.type}\t${esc(d.article_id)}\t${esc(d.user_id ?? d.account)}\t${esc(d.pair)}\t${esc(d.price)}\n`;
          }
          yield chunk;
        }
      })(),
    );
    await pipeline(rows, client.query(copyFrom(`COPY ${table} FROM STDIN`)));
    const copied = performance.now();
    await client.query(
      `SELECT article_id, date_trunc('hour', ts) + floor(extract(minute from ts) / 5) * interval '5 minutes' AS w, count(*), count(DISTINCT user_id) FROM ${table} WHERE type = 'page_view' GROUP BY 1, 2`,
    );
    await client.query(`SELECT type, date_trunc('minute', ts), count(*) FROM ${table} GROUP BY 1, 2`);
    await client.query(`SELECT pair, date_trunc('minute', ts), percentile_disc(0.99) WITHIN GROUP (ORDER BY price) FROM ${table} WHERE type = 'trade' GROUP BY 1, 2`);
    const done = performance.now();
    return {
      eventsPerS: events.length / ((done - t0) / 1000),
      copyPerS: events.length / ((copied - t0) / 1000),
      queryS: (done - copied) / 1000,
      note: 'COPY into an unlogged table, then the three aggregations (COUNT(DISTINCT), percentile_disc)',
    };
  } catch (err) {
    return notice('PostgreSQL', err);
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await client.end();
  }
}

/** DuckDB: read the same events as NDJSON and run the aggregations with approx_count_distinct, one thread. */
export async function duckdbPeer(bodies: readonly string[], repeat: number): Promise<PeerResult | undefined> {
  let duck: typeof import('@duckdb/node-api');
  try {
    duck = await import('@duckdb/node-api');
  } catch (err) {
    return notice('DuckDB (@duckdb/node-api not installed)', err);
  }
  const dir = await mkdtemp(join(tmpdir(), 'halflife-bench-duckdb-'));
  try {
    const file = join(dir, 'events.ndjson');
    let lines = '';
    let events = 0;
    for (let r = 0; r < repeat; r++) {
      for (const b of bodies) {
        const list = JSON.parse(b) as { type: string; data: Record<string, unknown> }[];
        for (const e of list) lines += `${JSON.stringify({ type: e.type, ...e.data, n: events++ })}\n`;
      }
    }
    await writeFile(file, lines);
    const db = await duck.DuckDBInstance.create(':memory:', { threads: '1' });
    const c = await db.connect();
    const t0 = performance.now();
    await c.run(`CREATE TABLE ev AS SELECT * FROM read_json_auto('${file}', format = 'newline_delimited', union_by_name = true)`);
    await c.runAndReadAll(`SELECT article_id, n // 6000 AS w, count(*), approx_count_distinct(user_id) FROM ev WHERE type = 'page_view' GROUP BY ALL`);
    await c.runAndReadAll(`SELECT type, n // 1200 AS w, count(*) FROM ev GROUP BY ALL`);
    await c.runAndReadAll(`SELECT pair, n // 1200 AS w, approx_quantile(price, 0.99) FROM ev WHERE type = 'trade' GROUP BY ALL`);
    const seconds = (performance.now() - t0) / 1000;
    c.closeSync();
    return { eventsPerS: events / seconds, note: 'read_json_auto of the NDJSON + the three aggregations, 1 thread' };
  } catch (err) {
    return notice('DuckDB', err);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
