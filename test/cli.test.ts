import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { main } from '../src/cli/main.js';
import { capture } from './helpers/io.js';
import { caughtUp, startServer, type TestServer } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

/** The CLI from source in a child process, its stdout as lines; `kill` ends it (by pid) and waits for the exit. */
function spawnCli(argv: string[]) {
  const entry = fileURLToPath(new URL('./helpers/cli-entry.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters) w();
  });
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => {
    for (const w of waiters) w();
  });
  return {
    exitCode: () => child.exitCode,
    /** Resolves with the lines so far once `ok` holds; rejects if the child exits first or after `timeoutMs`. */
    waitFor(ok: (lines: string[]) => boolean, timeoutMs = 60_000): Promise<string[]> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (ok(lines)) return finish(() => resolve([...lines]));
          if (child.exitCode !== null || child.signalCode !== null) finish(() => reject(new Error(`exited (${child.exitCode}): ${stderr}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out; output:\n${lines.join('\n')}\n${stderr}`))), timeoutMs);
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
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
    assert.equal(res.code, 1, 'rejected events make the exit code 1');
    const summary = JSON.parse(res.out);
    assert.deepEqual([summary.sent, summary.accepted, summary.rejected, summary.duplicates, summary.requests], [28, 25, 2, 1, 3]);
    // The first rejections, with their codes and lines (line 28 is the broken one, line 27 lacks article_id).
    assert.match(res.err, /2 event\(s\) rejected/);
    assert.match(res.err, /line 27: SCHEMA_VALIDATION at \$\.data\.article_id: /);
    assert.match(res.err, /line 28: MALFORMED_JSON/);
    const human = await cli('send', file, '--url', url);
    assert.equal(human.code, 1);
    assert.match(human.out, /0 accepted, 2 rejected, 26 duplicates/);
    assert.match(human.err, /SCHEMA_VALIDATION/);
    // A JSON array file is sent element by element; every event accepted (here: all duplicates) is exit 0.
    const arrayFile = join(dir, 'events.json');
    await writeFile(arrayFile, JSON.stringify(lines.slice(0, 25).map((l) => JSON.parse(l)), null, 2));
    const arr = await cli('send', arrayFile, '--url', url, '--batch', '7', '--json');
    assert.equal(arr.code, 0, arr.err);
    assert.deepEqual(JSON.parse(arr.out), { ...JSON.parse(arr.out), sent: 25, accepted: 0, rejected: 0, duplicates: 25, requests: 4 });

    const dlq = await cli('dlq', 'list', '--url', url, '--code', 'SCHEMA_VALIDATION');
    assert.match(dlq.out, /SCHEMA_VALIDATION\s+page_view\s+\$\.data\.article_id/);
    const replay = await cli('dlq', 'replay', '--url', url);
    assert.equal(replay.out, 'replayed 0, still failing 4, skipped 0 (replayed before)\n');
  });

  test('streams and tail show what was stored', async () => {
    const s = await cli('streams', '--url', url);
    assert.match(s.out, /total: 25 records/);
    // tail prints what is stored and exits.
    const res = await cli('tail', '--url', url);
    assert.equal(res.code, 0, res.err);
    const records = res.out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(records.length, 25);
    assert.ok(records.every((r) => r.type === 'page_view' && typeof r.offset === 'number' && typeof r.received_at === 'number'));
    // --iso: the same records with their times as ISO-8601.
    const iso = (await cli('tail', '--url', url, '--iso')).out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(iso, records.map((r) => ({ ...r, received_at: new Date(r.received_at).toISOString() })));
    assert.equal((await cli('tail', '--url', url, '--type', 'nothing_of_this_type')).out, '');
  });

  test('tail --follow prints events sent after it started, until killed', async () => {
    const child = spawnCli(['tail', '--follow', '--url', url]);
    try {
      const firstLines = await child.waitFor((lines) => lines.length >= 25);
      assert.equal(firstLines.length, 25);
      // Another type, so the views of the next tests see only page_view.
      const { HalflifeClient } = await import('../sdk/index.js');
      const c = new HalflifeClient({ url });
      await c.registerSchema('follow_evt', { type: 'object' });
      const marker = `follow-${process.pid}`;
      const r = await c.sendEvents({ type: 'follow_evt', id: marker, data: { n: 1 } });
      assert.equal(r.accepted, 1);
      const lines = await child.waitFor((ls) => ls.some((l) => l.includes(marker)));
      const got = JSON.parse(lines.find((l) => l.includes(marker))!);
      assert.deepEqual([got.type, got.id, got.data], ['follow_evt', marker, { n: 1 }]);
      assert.equal(child.exitCode(), null, 'tail --follow must keep running');
    } finally {
      await child.kill();
    }
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

  test('schema config shows and sets the compatibility', async () => {
    assert.deepEqual(await cli('schema', 'config', 'page_view', '--url', url), { code: 0, out: 'page_view: compatibility backward\n', err: '' });
    const stricter = join(dir, 'stricter.json');
    assert.equal((await cli('schema', 'add', 'page_view', stricter, '--url', url)).code, 1); // refused under backward
    assert.deepEqual(await cli('schema', 'config', 'page_view', '--compatibility', 'none', '--url', url), { code: 0, out: 'page_view: compatibility set to none\n', err: '' });
    assert.equal((await cli('schema', 'config', 'page_view', '--url', url, '--json')).out, '{"type":"page_view","compatibility":"none"}\n');
    const list = await cli('schema', 'list', '--url', url);
    assert.match(list.out, /page_view\s+1\s+1\s+none/);
    assert.deepEqual(await cli('schema', 'config', 'page_view', '--compatibility', 'backward', '--url', url), { code: 0, out: 'page_view: compatibility set to backward\n', err: '' });
    const bad = await cli('schema', 'config', 'page_view', '--compatibility', 'forward', '--url', url);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--compatibility is none or backward \(got forward\)/);
  });

  test('?time=iso gives ISO-8601 times on every read route; the default stays epoch ms; a bad value is INVALID_QUERY', async () => {
    const sql = 'CREATE VIEW per_minute AS SELECT article_id, COUNT(*) AS views FROM page_view GROUP BY article_id, TUMBLE(received_at, INTERVAL \'1\' MINUTE)';
    assert.equal((await cli('view', 'create', 'per_minute', '--sql', sql, '--url', url)).code, 0);
    await caughtUp(t, 'per_minute');
    const get = async (path: string) => {
      const res = await t.server.app.inject({ method: 'GET', url: path });
      return { status: res.statusCode, body: res.json() };
    };
    const post = async (path: string, sqlText: string) => {
      const res = await t.server.app.inject({ method: 'POST', url: path, payload: { sql: sqlText } });
      return { status: res.statusCode, body: res.json() };
    };
    // The oracle: each time column of the ISO answer parses back to the number of the default answer; every
    // other column is the same.
    const sameButIso = (msRows: Record<string, unknown>[], isoRows: Record<string, unknown>[], timeCols: string[]) => {
      assert.equal(isoRows.length, msRows.length);
      assert.ok(msRows.length > 0);
      for (let i = 0; i < msRows.length; i++) {
        assert.deepEqual(Object.keys(isoRows[i]), Object.keys(msRows[i]));
        for (const [k, v] of Object.entries(msRows[i])) {
          if (timeCols.includes(k) && typeof v === 'number') {
            assert.match(String(isoRows[i][k]), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
            assert.equal(Date.parse(isoRows[i][k] as string), v, k);
          } else assert.deepEqual(isoRows[i][k], v, k);
        }
      }
    };
    const cols = ['window_start', 'window_end', 'received_at', 'event_time'];
    const view = await get('/v1/views/per_minute?order=article_id');
    assert.equal(typeof view.body.rows[0].window_start, 'number');
    sameButIso(view.body.rows, (await get('/v1/views/per_minute?order=article_id&time=iso')).body.rows, cols);
    assert.deepEqual((await get('/v1/views/per_minute?order=article_id&time=ms')).body, view.body);
    const q = 'SELECT window_start, window_end, article_id, views FROM per_minute ORDER BY article_id';
    const ms = await post('/v1/query', q);
    sameButIso(ms.body.rows, (await post('/v1/query?time=iso', q)).body.rows, cols);
    const events = await get('/v1/events?limit=30');
    sameButIso(events.body.records, (await get('/v1/events?limit=30&time=iso')).body.records, cols);
    const dlq = await get('/v1/deadletters');
    sameButIso(dlq.body.deadletters, (await get('/v1/deadletters?time=iso')).body.deadletters, cols);
    for (const path of ['/v1/views/per_minute?time=ISO', '/v1/events?time=seconds', '/v1/deadletters?time=1', '/v1/views/per_minute/live?time=x']) {
      const res = await get(path);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.error.code, 'INVALID_QUERY');
      assert.match(res.body.error.message, /query parameter time is invalid: expected ms \(epoch milliseconds, the default\) or iso/);
    }
    const badQuery = await post('/v1/query?time=local', q);
    assert.equal(badQuery.body.error.code, 'INVALID_QUERY');
    // The CLI's --iso.
    const plain = await cli('query', q, '--url', url);
    const iso = await cli('query', q, '--url', url, '--iso');
    assert.equal(iso.code, 0, iso.err);
    const start = new Date(ms.body.rows[0].window_start as number).toISOString();
    assert.ok(iso.out.includes(start), iso.out);
    assert.ok(plain.out.includes(String(ms.body.rows[0].window_start)));
    const json = JSON.parse((await cli('query', q, '--url', url, '--iso', '--json')).out);
    sameButIso(ms.body.rows, json.rows, cols);
    assert.equal((await cli('view', 'drop', 'per_minute', '--url', url)).code, 0);
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

test('--help and -h on every command print its usage and exit 0, doing nothing else', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const commands = ['serve', 'init', 'send', 'schema', 'dlq', 'tail', 'streams', 'view', 'query', 'keys'];
    for (const cmd of commands) {
      for (const flag of ['--help', '-h']) {
        // A server URL nobody answers at, and a folder init would write into: help must touch neither.
        const res = await cli(cmd, flag, '--url', 'http://127.0.0.1:1', join(dir, 'x'));
        assert.equal(res.code, 0, `${cmd} ${flag}: ${res.err}`);
        assert.equal(res.err, '', `${cmd} ${flag}`);
        assert.match(res.out, new RegExp(`^Usage:\\nhalflife ${cmd}\\b`), `${cmd} ${flag}`);
        assert.match(res.out, /Exit codes: 0 ok, 1 failed, 2 bad usage/);
      }
    }
    for (const sub of [['schema', 'add'], ['dlq', 'list'], ['view', 'create'], ['keys', 'create']]) {
      const res = await cli(...sub, '--help');
      assert.equal(res.code, 0);
      assert.match(res.out, new RegExp(`halflife ${sub.join(' ')}`));
    }
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(dir), []);
    // The global usage names every command.
    const all = await cli('--help');
    for (const cmd of commands) assert.match(all.out, new RegExp(`^  halflife ${cmd}\\b`, 'm'));
    // Unknown options say so in our words, with the command's usage.
    const bad = await cli('init', '--bogus');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^halflife: init has no option --bogus\n\nUsage:\nhalflife init /);
    assert.doesNotMatch(bad.err, /To specify a positional argument/);
    const tooMany = await cli('streams', 'extra');
    assert.equal(tooMany.code, 2);
    assert.match(tooMany.err, /streams takes no argument "extra"/);
  } finally {
    await cleanup();
  }
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

/** Runs the CLI from source in a child process; killed if it has not exited within `timeoutMs`. */
async function cliChild(argv: string[], opts: { timeoutMs?: number; uid?: number; env?: Record<string, string> } = {}) {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const entry = fileURLToPath(new URL('./helpers/cli-entry.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...argv], {
    env: { ...process.env, HALFLIFE_LOG_LEVEL: 'silent', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid }),
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
    return { code, signal, out, err };
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** One line on stderr, no stack trace, exit code 2. */
function assertStartFailure(res: { code: number | null; signal: string | null; err: string }, message: RegExp) {
  assert.equal(res.signal, null, `killed (hung): ${res.err}`);
  assert.equal(res.code, 2, res.err);
  const lines = res.err.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `expected one line, got:\n${res.err}`);
  assert.match(lines[0], message);
  assert.doesNotMatch(res.err, /^\s+at /m);
}

describe('serve start-up failures exit 2 at once with one clear line', () => {
  // Permission tests need a user the folder's mode applies to: as root, the child runs as nobody.
  const asOther = process.getuid?.() === 0 ? 65534 : undefined;

  test('the port is in use', async () => {
    const { createServer } = await import('node:net');
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as { port: number }).port;
    const { dir, cleanup } = await tempDir();
    try {
      const res = await cliChild(['serve', '--data', dir, '--host', '127.0.0.1', '--port', String(port)]);
      assertStartFailure(res, new RegExp(`^halflife: PORT_IN_USE: port ${port} is in use \\(is another halflife running\\?\\)$`));
    } finally {
      holder.close();
      await cleanup();
    }
  });

  test('the port is taken after the probe: listen itself reports PORT_IN_USE', async () => {
    const { createServer } = await import('node:net');
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as { port: number }).port;
    const t = await startServer({ server: { host: '127.0.0.1', port } } as never);
    try {
      await assert.rejects(t.server.listen(), (err: { code?: string; message?: string }) => err.code === 'PORT_IN_USE' && err.message === `port ${port} is in use (is another halflife running?)`);
    } finally {
      holder.close();
      await t.cleanup();
    }
  });

  test('the data folder is locked by another halflife', async () => {
    const t = await startServer(); // holds the lock with this process's pid
    try {
      const res = await cliChild(['serve', '--data', t.dir, '--port', '0']);
      assertStartFailure(res, /^halflife: DATA_DIR_LOCKED: data folder .* is in use by another halflife process \(pid \d+\)/);
    } finally {
      await t.cleanup();
    }
  });

  test('the config cannot be read', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { mkdir, chmod } = await import('node:fs/promises');
      await mkdir(join(dir, 'folder.yaml'));
      const res = await cliChild(['serve', '--config', join(dir, 'folder.yaml'), '--data', join(dir, 'd'), '--port', '0']);
      assertStartFailure(res, /^halflife: CONFIG_INVALID: cannot read config file .*folder\.yaml: it is a folder \(EISDIR\)$/);
      await writeFile(join(dir, 'secret.yaml'), 'logLevel: info\n');
      await chmod(join(dir, 'secret.yaml'), 0o000);
      await chmod(dir, 0o755);
      const denied = await cliChild(['serve', '--config', join(dir, 'secret.yaml'), '--data', join(dir, 'd'), '--port', '0'], { uid: asOther });
      assertStartFailure(denied, /^halflife: CONFIG_INVALID: cannot read config file .*secret\.yaml: permission denied \(EACCES\)$/);
    } finally {
      await cleanup();
    }
  });

  test('no permission on the data folder, or a file in its way', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { mkdir, chmod } = await import('node:fs/promises');
      await mkdir(join(dir, 'readonly'));
      await chmod(join(dir, 'readonly'), 0o555);
      await chmod(dir, 0o755);
      const res = await cliChild(['serve', '--data', join(dir, 'readonly'), '--port', '0'], { uid: asOther });
      assertStartFailure(res, /^halflife: DATA_DIR_UNUSABLE: cannot use data folder .*readonly: permission denied \(EACCES\) on .*readonly/);
      await writeFile(join(dir, 'file'), '');
      const blocked = await cliChild(['serve', '--data', join(dir, 'file', 'data'), '--port', '0']);
      assertStartFailure(blocked, /^halflife: DATA_DIR_UNUSABLE: cannot use data folder .*: a part of the path is not a folder \(ENOTDIR\)/);
    } finally {
      await cleanup();
    }
  });
});

describe('send retries only network errors, 429 and 5xx', () => {
  /** A scripted server: each request gets the next answer (status, headers, body); 'drop' destroys the socket. */
  async function scripted(answers: ({ status: number; headers?: Record<string, string>; body?: unknown } | 'drop')[]) {
    const { createServer } = await import('node:http');
    const seen: { at: number; body: string }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        seen.push({ at: Date.now(), body });
        const a = answers[Math.min(seen.length - 1, answers.length - 1)];
        if (a === 'drop') return req.socket.destroy();
        res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
        res.end(JSON.stringify(a.body ?? {}));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    return { url, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
  }
  const ok = (n: number) => ({ status: 200, body: { accepted: n, rejected: 0, duplicates: 0, shed: 0, errors: [] } });
  const error = (status: number, code: string) => ({ status, body: { error: { code, message: `${code} happened`, details: {} } } });

  async function run(url: string, flags: Record<string, number> = {}) {
    const { dir, cleanup } = await tempDir();
    try {
      const file = join(dir, 'e.ndjson');
      await writeFile(file, '{"type":"t","data":{}}\n{"type":"t","data":{}}\n');
      const { send } = await import('../src/cli/commands/send.js');
      const { HalflifeClient } = await import('../sdk/index.js');
      const io = capture();
      const code = await send(new HalflifeClient({ url }), file, { retryBaseMs: 1, ...flags }, io);
      return { code, out: io.stdout, err: io.stderr };
    } finally {
      await cleanup();
    }
  }

  for (const [status, code] of [[413, 'BODY_TOO_LARGE'], [400, 'MALFORMED_JSON'], [401, 'UNAUTHENTICATED'], [403, 'FORBIDDEN'], [415, 'UNSUPPORTED_MEDIA_TYPE']] as const) {
    test(`${status} is not retried: one request, exit 1 with the code`, async () => {
      const s = await scripted([error(status, code), ok(2)]);
      try {
        const res = await run(s.url);
        assert.equal(s.seen.length, 1);
        assert.equal(res.code, 1);
        assert.match(res.err, new RegExp(`1 request\\(s\\) failed: ${code}: ${code} happened`));
      } finally {
        await s.close();
      }
    });
  }

  test('429, 5xx and a dropped connection are retried until accepted, honouring Retry-After', async () => {
    const s = await scripted([error(429, 'RATE_LIMITED'), error(500, 'INTERNAL'), 'drop', { ...error(503, 'OVERLOADED'), headers: { 'retry-after': '1' } }, error(502, 'HTTP_502'), ok(2)]);
    try {
      const res = await run(s.url);
      assert.equal(res.code, 0, res.err);
      assert.equal(s.seen.length, 6);
      assert.ok(s.seen.every((r) => r.body === s.seen[0].body), 'the same batch each time');
      assert.ok(s.seen[4].at - s.seen[3].at >= 950, `Retry-After: 1 honoured (waited ${s.seen[4].at - s.seen[3].at} ms)`);
      assert.match(res.out, /2 accepted, 0 rejected, 0 duplicates, 5 retries/);
    } finally {
      await s.close();
    }
  });

  test('retries are bounded: at most MAX_ATTEMPTS requests, and a long Retry-After is cut to maxRetryWaitMs', async () => {
    const { MAX_ATTEMPTS } = await import('../src/cli/commands/send.js');
    const s = await scripted([{ ...error(503, 'OVERLOADED'), headers: { 'retry-after': '3600' } }]);
    try {
      const started = Date.now();
      const res = await run(s.url, { maxRetryWaitMs: 50 });
      assert.equal(s.seen.length, MAX_ATTEMPTS);
      assert.equal(res.code, 1);
      assert.match(res.err, /OVERLOADED/);
      assert.ok(Date.now() - started < 30_000);
    } finally {
      await s.close();
    }
  });

  test('an unreadable input or a broken JSON array exits 2 before sending', async () => {
    const s = await scripted([ok(1)]);
    const { dir, cleanup } = await tempDir();
    try {
      const missing = await cli('send', join(dir, 'nope.ndjson'), '--url', s.url);
      assert.equal(missing.code, 2);
      assert.match(missing.err, /^halflife: cannot read .*nope\.ndjson: no such file\n$/);
      await writeFile(join(dir, 'bad.json'), '[{"type":"t","data":{}},');
      const bad = await cli('send', join(dir, 'bad.json'), '--url', s.url);
      assert.equal(bad.code, 2);
      assert.match(bad.err, /bad\.json starts with "\[" but is not a valid JSON array/);
      assert.equal(s.seen.length, 0);
    } finally {
      await s.close();
      await cleanup();
    }
  });
});
