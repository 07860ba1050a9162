/**
 * Golden SQL tests. Each `test/sql/<name>.sql` runs over `<name>.input.ndjson` (events with their
 * `received_at`; optional `<name>.tables.json`) and must produce `<name>.expected.json` three ways: straight
 * through; with a checkpoint, more work, a crash and a restore in the middle; and with another partition count.
 * `UPDATE_GOLDEN=1 npm test` rewrites the expected files (review the diff).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeEventRecord, ManualClock } from '../src/core/index.js';
import { Engine, MemoryViewStore, Tables } from '../src/engine/index.js';
import { MemoryLog } from '../src/log/index.js';
import { schemaCatalog, type Catalog } from '../src/sql/index.js';

const DIR = new URL('./sql/', import.meta.url).pathname;

const PAGE_VIEW = {
  type: 'object',
  properties: {
    article_id: { type: 'string' },
    user_id: { type: 'string' },
    section: { type: 'string' },
    read_ms: { type: 'integer' },
    referrer: { type: 'string' },
  },
};

interface InputEvent {
  received_at: number;
  type: string;
  key?: string;
  ts?: number;
  data: Record<string, unknown>;
}

function append(log: MemoryLog, events: InputEvent[]) {
  return log.append(
    events.map((e) => {
      return { key: e.key, timestampMs: e.received_at, value: encodeEventRecord({ receivedAt: e.received_at, schemaVersion: 1, type: e.type, eventTimeMs: e.ts, data: e.data }) };
    }),
  );
}

async function drain(engine: Engine) {
  while ((await engine.step()) > 0);
}

type TablesJson = Record<string, { key: string; rows: Record<string, unknown>[] }>;

/** The static tables, the catalog the planner sees, and a clock at the first event. */
async function fixtures(events: InputEvent[], tablesJson: TablesJson) {
  const tables = new Tables();
  for (const [t, def] of Object.entries(tablesJson)) await tables.put(t, def.key, def.rows, true);
  const catalog = (): Catalog => schemaCatalog({ page_view: PAGE_VIEW }, tables);
  return { tables, catalog, clock: new ManualClock(events[0].received_at) };
}

/** Sorted rows, so runs that apply events in other orders compare equal. */
function sortedRows(engine: Engine, name: string, foreign: Parameters<Engine['rows']>[2] = []) {
  return engine
    .rows(name, { limit: 100_000, order: 'window_start' }, foreign)
    .map((r) => JSON.stringify(r))
    .sort()
    .map((r) => JSON.parse(r) as unknown);
}

/** The same view split over two engines owning alternate partitions, partial rows merged at read time. */
async function runSplit(name: string, sql: string, events: InputEvent[], tablesJson: TablesJson) {
  const log = new MemoryLog(8);
  const { tables, catalog, clock } = await fixtures(events, tablesJson);
  const engines = [[0, 2, 4, 6], [1, 3, 5, 7]].map((owned) => new Engine({ log, store: new MemoryViewStore(), tables, catalog, clock, ownedPartitions: owned }));
  for (const e of engines) {
    await e.start(false);
    await e.createView(name, sql);
  }
  await append(log, events);
  for (const e of engines) await drain(e);
  clock.set(events[events.length - 1].received_at + 3_600_000);
  for (const e of engines) {
    await drain(e);
    await e.step();
  }
  const rows = sortedRows(engines[0], name, [engines[1].partials(name)]);
  return { rows, late: engines.reduce((a, e) => a + e.late(name).count, 0) };
}

async function run(name: string, sql: string, events: InputEvent[], tablesJson: TablesJson, partitions: number, crash: boolean) {
  const log = new MemoryLog(partitions);
  const store = new MemoryViewStore();
  const { tables, catalog, clock } = await fixtures(events, tablesJson);
  const make = () => new Engine({ log, store, tables, catalog, clock });
  let engine = make();
  await engine.start(false);
  await engine.createView(name, sql);
  if (!crash) {
    await append(log, events);
    await drain(engine);
  } else {
    const half = Math.floor(events.length / 2);
    const threeQuarters = Math.floor((events.length * 3) / 4);
    await append(log, events.slice(0, half));
    await drain(engine);
    await engine.checkpoint();
    await append(log, events.slice(half, threeQuarters));
    await drain(engine); // applied, never checkpointed: lost in the crash
    engine = make(); // the crash: the old engine is abandoned without close()
    await engine.start(false);
    await append(log, events.slice(threeQuarters));
    await drain(engine);
  }
  clock.set(events[events.length - 1].received_at + 3_600_000);
  await drain(engine);
  await engine.step();
  return { rows: sortedRows(engine, name), late: engine.late(name).count };
}

const names = readdirSync(DIR).filter((f) => f.endsWith('.sql')).map((f) => f.slice(0, -4)).sort();

for (const file of names) {
  test(`golden SQL ${file}: straight, checkpoint + crash + restore, another partition count, and two engines agree`, async () => {
    const sql = readFileSync(join(DIR, `${file}.sql`), 'utf8');
    const viewName = /CREATE VIEW (\w+)/i.exec(sql)![1];
    const events = readFileSync(join(DIR, `${file}.input.ndjson`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as InputEvent);
    const tablesPath = join(DIR, `${file}.tables.json`);
    const tablesJson = existsSync(tablesPath) ? JSON.parse(readFileSync(tablesPath, 'utf8')) : {};
    const straight = await run(viewName, sql, events, tablesJson, 8, false);
    const expectedPath = join(DIR, `${file}.expected.json`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(expectedPath)) {
      if (process.env.CI) assert.fail(`${expectedPath} is missing`);
      writeFileSync(expectedPath, JSON.stringify(straight, null, 1) + '\n');
    }
    const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
    assert.deepEqual(straight, expected, 'straight through');
    assert.ok(straight.rows.length > 0, 'a golden test must produce rows');
    assert.deepEqual(await run(viewName, sql, events, tablesJson, 8, true), expected, 'with a crash and restore');
    assert.deepEqual(await run(viewName, sql, events, tablesJson, 3, false), expected, 'with 3 partitions');
    assert.deepEqual(await runSplit(viewName, sql, events, tablesJson), expected, 'split over two engines, merged at read time');
  });
}
