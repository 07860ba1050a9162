import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { DuckDBInstance } from '@duckdb/node-api';
import { HalflifeClient, type EventEnvelope } from '../sdk/index.js';
import { spawnServer, type ChildServer } from './helpers/child-server.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The archive in a server process (issue #13): every accepted event in the Parquet files exactly once, counted by
 * DuckDB per type and hour against what the server acknowledged, across kill -9s that land while it flushes (it
 * writes every 1 s here).
 */
const CLIENT_TIMEOUT_MS = 60_000;
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
after(() => {
  con.closeSync();
  db.closeSync();
});

interface ArchiveAnswer {
  enabled: boolean;
  running: boolean;
  archived: number;
  lagRecords: number | null;
}

async function archiveStatus(url: string): Promise<ArchiveAnswer> {
  const res = await fetch(`${url}/v1/archive`);
  return (await res.json()) as ArchiveAnswer;
}

/** Waits until the archive has written every record in the log (its lag is 0) and says so. */
async function caughtUp(server: ChildServer): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const a = await archiveStatus(server.url);
    if (a.running && a.lagRecords === 0) return;
    if (Date.now() > deadline) assert.fail(`the archive did not catch up: ${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('kill -9 while the archive flushes and compacts, three times: every acknowledged event is in the Parquet files exactly once, per type and hour as the server counted them', { timeout: 600_000 }, async () => {
  const { dir, cleanup } = await tempDir('halflife-archive-crash-');
  const env = { HALFLIFE_INGEST_UNKNOWN_TYPES: 'accept', HALFLIFE_ARCHIVE_ROLL_SECONDS: '1', HALFLIFE_ARCHIVE_COMPACT_FILES: '3' };
  let server = await spawnServer(dir, env);
  try {
    const acked = new Map<string, string>();
    let seq = 0;
    for (let round = 0; round < 3; round++) {
      const client = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
      let stop = false;
      const writer = async (w: number) => {
        for (let b = 0; !stop && b < 5000; b++) {
          const batch = Array.from({ length: 20 }, (_, i): EventEnvelope => {
            const n = seq++;
            return { type: n % 3 === 0 ? 'order' : 'click', id: `r${round}-w${w}-${b}-${i}`, key: `k${n % 11}`, data: { n, round, note: n % 5 === 0 ? { deep: [n] } : 'x' } };
          });
          try {
            const res = await client.sendEvents(batch);
            assert.equal(res.accepted + res.duplicates, batch.length);
            for (const e of batch) acked.set(e.id!, e.type);
          } catch {
            return; // the server was killed: what it did not answer may or may not be stored
          }
        }
      };
      const writers = Array.from({ length: 3 }, (_, w) => writer(w));
      // Kill once the archive has written something of this round and while it goes on writing.
      const before = acked.size;
      const start = (await archiveStatus(server.url)).archived;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && (acked.size < before + 2000 || (await archiveStatus(server.url)).archived <= start)) await new Promise((r) => setTimeout(r, 20));
      server.child.kill('SIGKILL');
      assert.equal((await server.exited).signal, 'SIGKILL');
      stop = true;
      await Promise.all(writers);
      server = await spawnServer(dir, env);
    }
    await caughtUp(server);
    // What the log holds (acknowledged events, and unanswered ones that were stored): the files must hold exactly that.
    const client = new HalflifeClient({ url: server.url, timeoutMs: CLIENT_TIMEOUT_MS });
    const stored = new Map<string, { type: string; hour: string }>();
    let cursor: string | undefined;
    for (;;) {
      const page = await client.readEvents({ cursor, limit: 10_000 });
      if (page.records.length === 0) break;
      for (const r of page.records) stored.set(r.id!, { type: r.type, hour: new Date(r.received_at as unknown as string | number).toISOString().slice(0, 13) });
      cursor = page.next;
    }
    for (const id of acked.keys()) assert.ok(stored.has(id), `acknowledged event ${id} is not in the log`);
    const files = `${dir}/archive/*/*/*/*.parquet`;
    const r = await con.runAndReadAll(`SELECT id, type, strftime(received_at, '%Y-%m-%dT%H') AS hour, count(*) AS n FROM read_parquet('${files}', hive_partitioning = true, union_by_name = true) GROUP BY ALL`);
    const archived = new Map<string, { type: string; hour: string; n: number }>();
    for (const [id, type, hour, n] of r.getRows()) archived.set(String(id), { type: String(type), hour: String(hour), n: Number(n) });
    const twice = [...archived].filter(([, a]) => a.n !== 1);
    assert.deepEqual(twice.slice(0, 5), [], `${twice.length} events archived more than once`);
    const missing = [...stored.keys()].filter((id) => !archived.has(id));
    assert.deepEqual(missing.slice(0, 5), [], `${missing.length} stored events not archived`);
    assert.equal(archived.size, stored.size, 'nothing archived that the log does not hold');
    for (const [id, s] of stored) assert.deepEqual({ type: archived.get(id)!.type, hour: archived.get(id)!.hour }, s, `event ${id}: type and hour folder`);
    assert.ok(acked.size >= 6000, `only ${acked.size} events were acknowledged`);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0, 'graceful exit');
  } finally {
    server.child.kill('SIGKILL');
    await cleanup();
  }
});
