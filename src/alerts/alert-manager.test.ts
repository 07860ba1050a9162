import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { FileKvStore, ManualClock } from '../core/index.js';
import { WebhookSender } from '../sinks/index.js';
import { tempDir } from '../../test/helpers/tmp.js';
import { AlertManager, type AlertNotification } from './alert-manager.js';

/** A webhook receiver answering `status()` for each delivery; `got` holds every attempt's body. */
async function receiver(status: () => number = () => 200) {
  const got: AlertNotification[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      got.push(JSON.parse(body) as AlertNotification);
      res.statusCode = status();
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/hook`, got, close: () => new Promise((r) => server.close(r)) };
}

async function manager(rows: () => Record<string, unknown>[], opts: { metric?: () => { labels: Record<string, string>; value: number }[] } = {}) {
  const { dir, cleanup } = await tempDir();
  const clock = new ManualClock(1_800_000_000_000);
  const m = new AlertManager({
    kv: new FileKvStore(dir),
    configRules: {},
    runSql: async () => ({ columns: ['version', 'rate'], rows: rows() }),
    metricSamples: async () => opts.metric?.() ?? [],
    constantLabels: ['environment'],
    webhooks: new WebhookSender(),
    delivery: { attempts: 3, backoffMs: 5, timeoutMs: 1000 },
    clock,
    intervalMs: 3_600_000, // evaluated by hand
  });
  await m.start();
  return { m, clock, dir, async close() { await m.close(); await cleanup(); } };
}

test('a group fires once it has matched for `for`, is notified once, and once resolved; other groups stay apart', async () => {
  const hook = await receiver();
  let rows: Record<string, unknown>[] = [];
  const s = await manager(() => rows);
  try {
    await s.m.put('bad_deploy', { sql: 'SELECT …', for: '1m', severity: 'critical', labels: { team: 'web' }, repeat: 0, webhook: { url: hook.url } });
    rows = [{ version: '1.5.0', rate: 0.2 }];
    await s.m.evaluate();
    assert.equal(s.m.info('bad_deploy').groups[0].state, 'pending');
    s.clock.advance(30_000);
    rows = [{ version: '1.5.0', rate: 0.3 }, { version: '1.4.0', rate: 0.07 }];
    await s.m.evaluate();
    s.clock.advance(30_000);
    await s.m.evaluate();
    for (let i = 0; i < 5; i++) {
      s.clock.advance(30_000);
      await s.m.evaluate();
    }
    rows = [{ version: '1.4.0', rate: 0.08 }];
    await s.m.evaluate();
    await s.m.close();
    const seen = hook.got.map((n) => [n.state, n.labels.version]);
    assert.deepEqual(seen, [['firing', '1.5.0'], ['firing', '1.4.0'], ['resolved', '1.5.0']]);
    const first = hook.got[0];
    assert.deepEqual(first.labels, { alertname: 'bad_deploy', severity: 'critical', team: 'web', version: '1.5.0' });
    assert.deepEqual(first.values, { rate: 0.3 });
    assert.equal(first.started_at, new Date(1_800_000_000_000 + 60_000).toISOString());
    assert.equal(hook.got[2].ended_at, new Date(1_800_000_000_000 + 60_000 + 150_000).toISOString());
    assert.deepEqual(s.m.history().map((h) => [h.state, h.labels.version]), [
      ['pending', '1.5.0'],
      ['pending', '1.4.0'],
      ['firing', '1.5.0'],
      ['firing', '1.4.0'],
      ['resolved', '1.5.0'],
    ]);
  } finally {
    await s.close().catch(() => {});
    await hook.close();
  }
});

test('`for` keeps a blip from notifying: a group that stops matching before it fires is cleared silently', async () => {
  const hook = await receiver();
  let rows: Record<string, unknown>[] = [];
  const s = await manager(() => rows);
  try {
    await s.m.put('flappy', { sql: 'SELECT …', for: '5m', webhook: { url: hook.url } });
    for (let i = 0; i < 10; i++) {
      rows = i % 2 === 0 ? [{ version: '2.0.0', rate: 0.5 }] : [];
      await s.m.evaluate();
      s.clock.advance(60_000);
    }
    await s.m.close();
    assert.deepEqual(hook.got, []);
    assert.deepEqual(new Set(s.m.history().map((h) => h.state)), new Set(['pending', 'cleared']));
  } finally {
    await s.close().catch(() => {});
    await hook.close();
  }
});

test('a firing group is reminded every `repeat`', async () => {
  const hook = await receiver();
  const s = await manager(() => [{ version: '3.0.0', rate: 1 }]);
  try {
    await s.m.put('loud', { sql: 'SELECT …', repeat: '10m', webhook: { url: hook.url } });
    for (let i = 0; i < 25; i++) {
      s.clock.advance(60_000);
      await s.m.evaluate();
    }
    await s.m.close();
    assert.deepEqual(hook.got.map((n) => n.repeated), [false, true, true]);
  } finally {
    await s.close().catch(() => {});
    await hook.close();
  }
});

test('a receiver that fails is retried with backoff, then given up on with a counted failure; a 4xx is not retried', async () => {
  let answer = 503;
  const hook = await receiver(() => answer);
  const s = await manager(() => [{ version: '1.0.0', rate: 1 }]);
  try {
    await s.m.put('down', { sql: 'SELECT …', webhook: { url: hook.url } });
    await s.m.close();
    assert.equal(hook.got.length, 3, 'three attempts');
    assert.deepEqual(s.m.info('down').notifications, { sent: 0, failed: 1 });
    assert.deepEqual(s.m.counts().notifications.filter((n) => n.rule === 'down'), [
      { rule: 'down', result: 'sent', count: 0 },
      { rule: 'down', result: 'failed', count: 1 },
    ]);
  } finally {
    await hook.close();
  }
  answer = 400;
  const refusing = await receiver(() => answer);
  const t = await manager(() => [{ version: '1.0.0', rate: 1 }]);
  try {
    await t.m.put('refused', { sql: 'SELECT …', webhook: { url: refusing.url } });
    await t.m.close();
    assert.equal(refusing.got.length, 1);
    assert.equal(t.m.info('refused').notifications.failed, 1);
  } finally {
    await t.close().catch(() => {});
    await refusing.close();
  }
});

test('metric rules compare every series with the threshold; constant labels are not part of a group', async () => {
  const hook = await receiver();
  let series = [{ labels: { code: 'SCHEMA_VALIDATION', environment: 'prod' }, value: 3 }, { labels: { code: 'TOO_DEEP', environment: 'prod' }, value: 0 }];
  const s = await manager(() => [], { metric: () => series });
  try {
    await s.m.put('dead_letters', { metric: 'halflife_deadletters_total', threshold: 0, webhook: { url: hook.url } });
    series = [{ labels: { code: 'SCHEMA_VALIDATION', environment: 'prod' }, value: 0 }, { labels: { code: 'TOO_DEEP', environment: 'prod' }, value: 0 }];
    await s.m.evaluate();
    await s.m.close();
    assert.deepEqual(hook.got.map((n) => [n.state, n.labels.code, n.labels.environment]), [['firing', 'SCHEMA_VALIDATION', undefined], ['resolved', 'SCHEMA_VALIDATION', undefined]]);
    assert.deepEqual(hook.got[0].values, { value: 3 });
  } finally {
    await s.close().catch(() => {});
    await hook.close();
  }
});

test('rules are validated, persisted across restarts, and deleting a firing rule resolves its groups', async () => {
  const hook = await receiver();
  const { dir, cleanup } = await tempDir();
  const make = () =>
    new AlertManager({
      kv: new FileKvStore(dir),
      configRules: { from_config: { metric: 'x', threshold: 1 } },
      runSql: async () => ({ columns: ['v'], rows: [{ v: 'a' }] }),
      metricSamples: async () => [],
      webhooks: new WebhookSender(),
      clock: new ManualClock(0),
      intervalMs: 3_600_000,
    });
  try {
    const m = make();
    await m.start();
    await assert.rejects(m.put('bad name', { sql: 'x' }), { code: 'ALERT_INVALID' });
    await assert.rejects(m.put('b', { sql: 'x', metric: 'y' }), /either sql/);
    await assert.rejects(m.put('b', { metric: 'y' }), /threshold/);
    await assert.rejects(m.put('b', { sql: 'x', for: 'soon' }), /duration/);
    await assert.rejects(m.put('b', { sql: 'x', webhook: { url: 'ftp://x' } }), /http/);
    await assert.rejects(m.put('b', { sql: 'x', colour: 'red' }), /unknown field "colour"/);
    await m.put('kept', { sql: 'SELECT v FROM t', for: '90s', webhook: { url: hook.url } });
    await m.close();
    const again = make();
    await again.start();
    assert.deepEqual(again.list().map((r) => [r.name, r.source]), [['from_config', 'config'], ['kept', 'api']]);
    await again.put('gone', { sql: 'SELECT v FROM t', webhook: { url: hook.url } });
    await again.delete('gone');
    await assert.rejects(again.delete('gone'), { code: 'ALERT_NOT_FOUND' });
    await again.close();
    assert.deepEqual(hook.got.map((n) => [n.rule, n.state]), [['gone', 'firing'], ['gone', 'resolved']]);
  } finally {
    await hook.close();
    await cleanup();
  }
});

test('closing does not wait for a webhook that hangs longer than the grace', async () => {
  const hanging = createServer(() => {
    // never answers
  });
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hanging.address() as { port: number }).port}/`;
  const s = await manager(() => [{ version: '1.0.0', rate: 1 }]);
  try {
    await s.m.put('stuck', { sql: 'SELECT …', webhook: { url, timeoutMs: 10_000 } });
    const t0 = Date.now();
    await s.m.close(200);
    assert.ok(Date.now() - t0 < 2000, `closed after ${Date.now() - t0} ms`);
  } finally {
    hanging.closeAllConnections();
    await new Promise((r) => hanging.close(r));
    await s.close().catch(() => {});
  }
});

test('rules of an alerts.json of the earlier layout are imported once; a rule saved or deleted on one node applies on another', async () => {
  const { dir, cleanup } = await tempDir();
  const { writeFile, readdir } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const make = (kv: FileKvStore, importFile?: string) =>
    new AlertManager({
      kv,
      ...(importFile === undefined ? {} : { importFile }),
      configRules: {},
      runSql: async () => ({ columns: ['v'], rows: [] }),
      metricSamples: async () => [],
      webhooks: new WebhookSender(),
      clock: new ManualClock(0),
      intervalMs: 3_600_000,
    });
  try {
    const file = join(dir, 'alerts.json');
    await writeFile(file, JSON.stringify({ format: 1, rules: { 'lag.high': { metric: 'halflife_consumer_lag_records', threshold: 5 } } }));
    const kv = new FileKvStore(join(dir, 'state'));
    const a = make(kv, file);
    const b = make(kv);
    await a.start();
    await b.start();
    assert.deepEqual(a.list().map((r) => r.name), ['lag.high']);
    assert.deepEqual(b.list().map((r) => r.name), ['lag.high']);
    assert.deepEqual((await readdir(dir)).sort(), ['alerts.json.imported', 'state']);
    await a.put('errors', { metric: 'halflife_deadletters_total', threshold: 0 });
    assert.equal(b.info('errors').rule.threshold, 0);
    await b.delete('lag.high');
    assert.throws(() => a.info('lag.high'), { code: 'ALERT_NOT_FOUND' });
    await a.close();
    await b.close();
    // And after a restart, what was saved last.
    const c = make(new FileKvStore(join(dir, 'state')), file);
    await c.start();
    assert.deepEqual(c.list().map((r) => r.name), ['errors']);
    await c.close();
  } finally {
    await cleanup();
  }
});
