import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeEventRecord, HalflifeError, ManualClock } from '../src/core/index.js';
import { MemoryLog } from '../src/log/index.js';
import { schemaCatalog } from '../src/sql/index.js';
import { Engine, MemoryViewStore, Tables } from '../src/engine/index.js';
import { runQuery } from '../src/query/index.js';

/**
 * Names that every plain JavaScript object inherits (`toString`, `constructor`, `__proto__`, …) are not columns,
 * fields, functions, types or options: looked up as inherited properties they answered functions, counted every event
 * and crashed the engine (issue #11 item 1).
 */
const INHERITED = Object.getOwnPropertyNames(Object.prototype);

async function engineWith(): Promise<{ engine: Engine; log: MemoryLog }> {
  const catalog = () =>
    schemaCatalog({
      // (JSON.parse: in an object literal `__proto__: …` would set the prototype instead of declaring a field.)
      typed: JSON.parse('{"type": "object", "properties": {"k": {"type": "string"}, "n": {"type": "number"}, "__proto__": {"type": "string"}}}'),
      open: { type: 'object' },
    });
  const log = new MemoryLog(1);
  const engine = new Engine({ log, store: new MemoryViewStore(), tables: new Tables(), catalog, clock: new ManualClock(0) });
  await engine.start(false);
  const data = JSON.parse('{"k": "a", "n": 1, "__proto__": "p"}') as Record<string, unknown>;
  await log.append([
    { timestampMs: 0, partition: 0, value: encodeEventRecord({ receivedAt: 0, schemaVersion: 1, type: 'typed', data }) },
    { timestampMs: 0, partition: 0, value: encodeEventRecord({ receivedAt: 0, schemaVersion: 1, type: 'open', data: { k: 'b', nested: { x: 1 } } }) },
  ]);
  return { engine, log };
}

async function refusedAsync(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(fn, (err: HalflifeError) => {
    assert.equal(err.code, 'SQL_PLAN', err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test('inherited object names are unknown columns, functions, types and options; in schemaless events they are absent fields', async () => {
  const { engine } = await engineWith();
  try {
    await engine.createView('v', 'CREATE VIEW v AS SELECT k, COUNT(*) AS n FROM typed GROUP BY k');
    while ((await engine.step()) > 0);
    for (const name of INHERITED) {
      // (typed declares a field named __proto__: that one is a column.)
      if (name !== '__proto__') await assert.rejects(engine.createView('w', `CREATE VIEW w AS SELECT COUNT(*) AS c FROM typed WHERE ${name} IS NOT NULL`), /unknown column/, name);
      await refusedAsync(() => runQuery(engine, `SELECT ${name} FROM v`), /unknown column/);
      await refusedAsync(() => runQuery(engine, `SELECT k FROM v WHERE ${name} IS NULL`), /unknown column/);
      await assert.rejects(engine.createView('w', `CREATE VIEW w AS SELECT ${name}(k) AS c, COUNT(*) AS n FROM typed GROUP BY ${name}(k)`), /unknown function/, name);
      await assert.rejects(engine.createView('w', `CREATE VIEW w AS SELECT CAST(n AS ${name}) AS c, COUNT(*) AS n FROM typed GROUP BY CAST(n AS ${name})`), /unknown type|expected/i, name);
      await assert.rejects(engine.createView('w', `CREATE VIEW w WITH (${name} = '1s') AS SELECT COUNT(*) AS n FROM typed`), /option/i, name);
      // A schemaless type has no declared fields: an inherited name is a field no event has.
      await engine.createView('w', `CREATE VIEW w AS SELECT data.${name} AS f, nested.${name} AS g, COUNT(*) AS c FROM open WHERE ${name} IS NULL GROUP BY data.${name}, nested.${name}`);
      while ((await engine.step()) > 0);
      assert.deepEqual(engine.rows('w').map((r) => [r.f, r.g, r.c]), [[null, null, 1]], name);
      await engine.dropView('w');
      await engine.createView('w', `CREATE VIEW w AS SELECT DATE_TRUNC('${name}', received_at) AS t, COUNT(*) AS c FROM open GROUP BY DATE_TRUNC('${name}', received_at)`);
      while ((await engine.step()) > 0);
      assert.deepEqual(engine.rows('w').map((r) => [r.t, r.c]), [[null, 1]], name);
      await engine.dropView('w');
    }
    // A declared field named __proto__ is a field like any other.
    await engine.createView('p', 'CREATE VIEW p AS SELECT __proto__ AS p, COUNT(*) AS c FROM typed GROUP BY __proto__');
    while ((await engine.step()) > 0);
    assert.deepEqual(engine.rows('p').map((r) => [r.p, r.c]), [['p', 1]]);
  } finally {
    await engine.close();
  }
});
