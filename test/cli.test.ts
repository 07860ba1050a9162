import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/output.js';
import { caughtUp, startServer, type TestServer } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

function capture(): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    isTTY: false,
    out(t: string) {
      io.stdout += t;
    },
    err(t: string) {
      io.stderr += t;
    },
  };
  return io;
}

async function cli(...argv: string[]) {
  const io = capture();
  const code = await main(argv, io);
  return { code, out: io.stdout, err: io.stderr };
}

describe('halflife CLI against a running server', () => {
  let t: TestServer;
  let url: string;
  let dir: string;
  let cleanupDir: () => Promise<void>;
  before(async () => {
    t = await startServer();
    url = await t.server.listen();
    ({ dir, cleanup: cleanupDir } = await tempDir());
  });
  after(async () => {
    await t.cleanup();
    await cleanupDir();
  });

  test('init writes a config the server accepts, a schema and example events', async () => {
    const { code, out } = await cli('init', dir);
    assert.equal(code, 0);
    assert.match(out, /wrote .*halflife\.yaml/);
    const again = await cli('init', dir);
    assert.match(again.out, /kept .*halflife\.yaml/);
    const { loadConfig } = await import('../src/config/index.js');
    const { config } = loadConfig({ cwd: dir, env: {} });
    assert.equal(config.schemas.dir, join(dir, 'schemas'));
    assert.equal(config.dataDir, join(dir, 'halflife-data'));
  });

  test('schema add, list and show', async () => {
    const add = await cli('schema', 'add', 'page_view', join(dir, 'schemas', 'page_view.json'), '--url', url);
    assert.equal(add.code, 0, add.err);
    assert.equal(add.out, 'registered page_view version 1\n');
    assert.equal((await cli('schema', 'add', 'page_view', join(dir, 'schemas', 'page_view.json'), '--url', url)).out, 'page_view is unchanged (version 1)\n');
    const list = await cli('schema', 'list', '--url', url);
    assert.match(list.out, /page_view\s+1\s+1\s+backward/);
    const show = await cli('schema', 'show', 'page_view', '--url', url, '--json');
    assert.equal(JSON.parse(show.out).version, 1);
  });

  test('an incompatible schema is refused with its reasons and exit code 1', async () => {
    const stricter = join(dir, 'stricter.json');
    const schema = JSON.parse(await readFile(join(dir, 'schemas', 'page_view.json'), 'utf8'));
    schema.required.push('user_id');
    await writeFile(stricter, JSON.stringify(schema));
    const res = await cli('schema', 'add', 'page_view', stricter, '--url', url);
    assert.equal(res.code, 1);
    assert.match(res.err, /SCHEMA_INCOMPATIBLE/);
    assert.match(res.err, /new required field "user_id"/);
  });

  test('send reports accepted, rejected and duplicates; dlq list and replay work', async () => {
    const file = join(dir, 'events.ndjson');
    const lines = [
      ...Array.from({ length: 25 }, (_, i) => JSON.stringify({ type: 'page_view', id: `e${i}`, data: { article_id: `a${i % 3}`, user_id: `u${i}` } })),
      JSON.stringify({ type: 'page_view', id: 'e0', data: { article_id: 'a0' } }),
      JSON.stringify({ type: 'page_view', data: { user_id: 'no-article' } }),
      '{broken',
    ];
    await writeFile(file, lines.join('\n') + '\n');
    const res = await cli('send', file, '--url', url, '--batch', '10', '--json');
    assert.equal(res.code, 0, res.err);
    const summary = JSON.parse(res.out);
    assert.deepEqual([summary.sent, summary.accepted, summary.rejected, summary.duplicates, summary.requests], [28, 25, 2, 1, 3]);
    const human = await cli('send', file, '--url', url);
    assert.match(human.out, /0 accepted, 2 rejected, 26 duplicates/);
    assert.match(human.out, /SCHEMA_VALIDATION/);

    const dlq = await cli('dlq', 'list', '--url', url, '--code', 'SCHEMA_VALIDATION');
    assert.match(dlq.out, /SCHEMA_VALIDATION\s+page_view\s+\$\.data\.article_id/);
    const replay = await cli('dlq', 'replay', '--url', url);
    assert.equal(replay.out, 'replayed 0, still failing 4, skipped 0 (replayed before)\n');
  });

  test('streams and tail show what was stored', async () => {
    const s = await cli('streams', '--url', url);
    assert.match(s.out, /total: 25 records/);
    const io = capture();
    const { tail } = await import('../src/cli/commands/client-commands.js');
    const { HalflifeClient } = await import('../sdk/index.js');
    await tail(new HalflifeClient({ url }), { fromBeginning: true, follow: false }, io);
    const records = io.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(records.length, 25);
    assert.ok(records.every((r) => r.type === 'page_view' && typeof r.offset === 'number'));
  });

  test('view create, list, query and drop', async () => {
    const sqlFile = join(dir, 'by_article.sql');
    await writeFile(sqlFile, 'CREATE VIEW by_article AS SELECT article_id, COUNT(*) AS views FROM page_view GROUP BY article_id');
    const created = await cli('view', 'create', 'by_article', '-f', sqlFile, '--url', url);
    assert.equal(created.code, 0, created.err);
    assert.match(created.out, /created view by_article over page_view: columns window_start, window_end, article_id, views/);
    await caughtUp(t, 'by_article');
    assert.match((await cli('view', 'list', '--url', url)).out, /by_article\s+page_view\s+none\s+3/);
    const q = await cli('query', 'SELECT article_id, views FROM by_article ORDER BY article_id', '--url', url);
    assert.equal(q.code, 0, q.err);
    assert.match(q.out, /article_id\s+views\na0\s+9\na1\s+8\na2\s+8\n\(3 rows\)/);
    const bad = await cli('query', 'SELECT nope FROM by_article', '--url', url);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /SQL_PLAN/);
    assert.equal((await cli('view', 'drop', 'by_article', '--url', url)).out, 'dropped view by_article\n');
    assert.equal((await cli('view', 'create', 'x', '--url', url)).code, 2);
  });

  test('usage errors exit 2 with the usage text; an unreachable server exits 1', async () => {
    const bad = await cli('frobnicate');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown command "frobnicate"/);
    assert.equal((await cli('send')).code, 2);
    const down = await cli('streams', '--url', 'http://127.0.0.1:1');
    assert.equal(down.code, 1);
    assert.match(down.err, /NETWORK: cannot reach/);
  });
});

test('serve refuses a bad config with the key path and exit code 2', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(join(dir, 'bad.yaml'), 'server:\n  prot: 1\n');
    const res = await cli('serve', '--config', join(dir, 'bad.yaml'));
    assert.equal(res.code, 2);
    assert.match(res.err, /CONFIG_INVALID/);
    assert.match(res.err, /server\.prot: unknown key \(did you mean port\?\)/);
  } finally {
    await cleanup();
  }
});
