import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { execFileSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { KeyStore } from '../src/server/index.js';
import { main } from '../src/cli/main.js';
import type { Io } from '../src/cli/output.js';
import { startServer, type TestServer } from './helpers/server.js';
import { tempDir } from './helpers/tmp.js';

const pageView = { type: 'object', properties: { article_id: { type: 'string' } }, required: ['article_id'] };

async function call(t: TestServer, method: string, url: string, opts: { key?: string; basic?: string; payload?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.key !== undefined) headers.authorization = `Bearer ${opts.key}`;
  if (opts.basic !== undefined) headers.authorization = `Basic ${Buffer.from(opts.basic).toString('base64')}`;
  const res = await t.server.app.inject({
    method: method as 'GET',
    url,
    headers,
    payload: opts.payload === undefined ? undefined : typeof opts.payload === 'string' ? opts.payload : JSON.stringify(opts.payload),
  });
  return { status: res.statusCode, body: res.body.length > 0 ? (JSON.parse(res.body) as any) : undefined, headers: res.headers };
}

describe('API keys', () => {
  let t: TestServer;
  let admin: string;
  let writer: string;
  let reader: string;
  let typed: string;
  let browser: string;
  before(async () => {
    t = await startServer();
    assert.equal((await call(t, 'PUT', '/v1/schemas/page_view', { payload: pageView })).status, 201, 'no keys yet: open on loopback');
    await t.server.registry.register('click', { type: 'object' });
    admin = (await t.server.keys.create({ name: 'ops', scopes: ['admin'] })).key;
    writer = (await t.server.keys.create({ scopes: ['write'] })).key;
    reader = (await t.server.keys.create({ scopes: ['read'] })).key;
    typed = (await t.server.keys.create({ scopes: ['write'], types: ['click'] })).key;
    browser = (await t.server.keys.create({ name: 'web', scopes: ['write'], origins: ['https://shop.example'] })).key;
  });
  after(() => t.cleanup());

  test('once a key exists, a request without one, or with an unknown, malformed or wrong one, gets the same 401', async () => {
    const forged = writer.slice(0, -4) + 'AAAA';
    const unknown = 'hl_000000000000_' + writer.slice(-43);
    const answers = await Promise.all(
      [undefined, forged, unknown, 'nonsense', 'hl_abc'].map((key) => call(t, 'POST', '/v1/events', { key, payload: { type: 'page_view', data: { article_id: 'a' } } })),
    );
    for (const a of answers) {
      assert.equal(a.status, 401);
      assert.equal(a.body.error.code, 'UNAUTHENTICATED');
      assert.equal(a.headers['www-authenticate'], 'Bearer realm="halflife"');
      assert.deepEqual(a.body, answers[0].body, 'nothing tells which keys exist');
    }
    assert.equal((await call(t, 'GET', '/v1/nope')).status, 401, 'unknown routes are not revealed either');
    assert.equal((await call(t, 'GET', '/healthz')).status, 200);
    assert.equal((await call(t, 'GET', '/readyz')).status, 200);
  });

  test('scopes: write ingests, read reads, admin does everything', async () => {
    const ev = { type: 'page_view', data: { article_id: 'a1' } };
    assert.equal((await call(t, 'POST', '/v1/events', { key: writer, payload: ev })).body.accepted, 1);
    const denied = await call(t, 'GET', '/v1/streams', { key: writer });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'FORBIDDEN');
    assert.match(denied.body.error.message, /needs read/);
    assert.equal((await call(t, 'GET', '/v1/streams', { key: reader })).status, 200);
    assert.equal((await call(t, 'GET', '/v1/events?partition=0', { key: reader })).status, 200);
    assert.equal((await call(t, 'GET', '/v1/deadletters', { key: reader })).status, 200);
    assert.equal((await call(t, 'POST', '/v1/events', { key: reader, payload: ev })).status, 403);
    assert.equal((await call(t, 'PUT', '/v1/schemas/x', { key: reader, payload: { type: 'object' } })).status, 403);
    assert.equal((await call(t, 'POST', '/v1/deadletters/replay', { key: reader })).status, 403);
    assert.equal((await call(t, 'GET', '/v1/keys', { key: reader })).status, 403, 'listing keys is admin');
    assert.equal((await call(t, 'PUT', '/v1/views/v', { key: writer, payload: { sql: 'CREATE VIEW v AS SELECT COUNT(*) AS n FROM page_view' } })).status, 403);
    assert.equal((await call(t, 'PUT', '/v1/views/v', { key: admin, payload: { sql: 'CREATE VIEW v AS SELECT COUNT(*) AS n FROM page_view' } })).status, 201);
    assert.equal((await call(t, 'POST', '/v1/query', { key: reader, payload: { sql: 'SELECT n FROM v' } })).status, 200);
    assert.equal((await call(t, 'POST', '/v1/events', { key: admin, payload: ev })).body.accepted, 1);
    assert.equal((await call(t, 'GET', '/v1/views/v', { key: admin })).status, 200);
  });

  test('HTTP Basic with the key as user name works like Bearer (with or without a password)', async () => {
    const ev = { type: 'page_view', data: { article_id: 'b' } };
    assert.equal((await call(t, 'POST', '/v1/events', { basic: `${writer}:`, payload: ev })).body.accepted, 1);
    assert.equal((await call(t, 'POST', '/v1/events', { basic: writer, payload: ev })).body.accepted, 1);
    assert.equal((await call(t, 'POST', '/v1/events', { basic: `${writer.slice(0, -1)}x:`, payload: ev })).status, 401);
  });

  test('a key limited to event types refuses a request holding another type whole: nothing stored or dead-lettered', async () => {
    const stored = () => t.server.log.stats().records;
    const letters = async () => (await call(t, 'GET', '/v1/deadletters', { key: admin })).body.deadletters.length;
    const before = [stored(), await letters()];
    assert.equal((await call(t, 'POST', '/v1/events', { key: typed, payload: [{ type: 'click', data: {} }] })).body.accepted, 1);
    const mixed = await call(t, 'POST', '/v1/events', { key: typed, payload: [{ type: 'click', data: {} }, { type: 'page_view', data: {} }, { type: 'click', data: 5 }] });
    assert.equal(mixed.status, 403);
    assert.match(mixed.body.error.message, /type page_view/);
    // The same through an ingest worker (a body over 16 KiB).
    const big = Array.from({ length: 600 }, (_, i) => ({ type: i === 599 ? 'page_view' : 'click', data: { i } }));
    assert.equal((await call(t, 'POST', '/v1/events', { key: typed, payload: big })).status, 403);
    const ndjson = '{"type":"click","data":{}}\n{"data":{}}\n';
    assert.equal((await call(t, 'POST', '/v1/events', { key: typed, payload: ndjson, headers: { 'content-type': 'application/x-ndjson' } })).status, 403, 'an event without a type is not an allowed type');
    assert.deepEqual([stored(), await letters()], [before[0] + 1, before[1]]);
  });

  test('browser origins: a key limited to origins works from them, not from others; CORS answers only listed origins', async () => {
    const ev = { type: 'page_view', data: { article_id: 'c' } };
    const ok = await call(t, 'POST', '/v1/events', { key: browser, payload: ev, headers: { origin: 'https://shop.example' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://shop.example');
    const evil = await call(t, 'POST', '/v1/events', { key: browser, payload: ev, headers: { origin: 'https://evil.example' } });
    assert.equal(evil.status, 403);
    assert.match(evil.body.error.message, /origin https:\/\/evil\.example/);
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    assert.equal((await call(t, 'POST', '/v1/events', { key: browser, payload: ev })).status, 200, 'no Origin: not a browser');
    const preflight = (origin: string) =>
      t.server.app.inject({ method: 'OPTIONS', url: '/v1/events', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    const pf = await preflight('https://shop.example');
    assert.equal(pf.statusCode, 204);
    assert.equal(pf.headers['access-control-allow-origin'], 'https://shop.example');
    assert.match(String(pf.headers['access-control-allow-headers']), /authorization/);
    assert.equal((await preflight('https://evil.example')).headers['access-control-allow-origin'], undefined);
  });

  test('keys are listed without secrets, created and revoked through the API; a revoked key gets 401 at once', async () => {
    const created = await call(t, 'POST', '/v1/keys', { key: admin, payload: { name: 'temp', scopes: ['read'] } });
    assert.equal(created.status, 201);
    assert.match(created.body.key, /^hl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const listed = (await call(t, 'GET', '/v1/keys', { key: admin })).body.keys;
    const entry = listed.find((k: { id: string }) => k.id === created.body.id);
    assert.deepEqual(Object.keys(entry).sort(), ['burstEvents', 'createdAt', 'eventsPerS', 'id', 'name', 'origins', 'scopes', 'types']);
    assert.ok(!JSON.stringify(listed).includes(created.body.key.slice(-43)), 'no secret is ever listed');
    assert.equal((await call(t, 'GET', '/v1/streams', { key: created.body.key })).status, 200);
    assert.equal((await call(t, 'DELETE', `/v1/keys/${created.body.id}`, { key: admin })).status, 200);
    assert.equal((await call(t, 'GET', '/v1/streams', { key: created.body.key })).status, 401);
    assert.equal((await call(t, 'DELETE', `/v1/keys/${created.body.id}`, { key: admin })).body.error.code, 'KEY_NOT_FOUND');
    const bad = await call(t, 'POST', '/v1/keys', { key: admin, payload: { scopes: ['read'], types: ['x'] } });
    assert.equal(bad.status, 400, 'types limit write keys only');
  });

  test('a key revoked on the data folder (the CLI, while the server runs) stops working within seconds', async () => {
    const { key, info } = await t.server.keys.create({ scopes: ['read'] });
    assert.equal((await call(t, 'GET', '/v1/streams', { key })).status, 200);
    assert.ok(await new KeyStore(t.dir).revoke(info.id));
    let status = 200;
    for (let i = 0; i < 60 && status === 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await call(t, 'GET', '/v1/streams', { key })).status;
    }
    assert.equal(status, 401);
  });

  test('every verification makes one constant-time comparison of 32-byte digests, whatever the key', () => {
    const store = t.server.keys;
    const sizes: number[] = [];
    const original = crypto.timingSafeEqual;
    crypto.timingSafeEqual = (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      sizes.push(a.byteLength, b.byteLength);
      return original(a, b);
    };
    syncBuiltinESMExports();
    try {
      for (const token of [admin, admin.slice(0, -1) + 'x', 'hl_000000000000_' + admin.slice(-43), 'garbage', '']) {
        sizes.length = 0;
        store.verify(token);
        assert.deepEqual(sizes, [32, 32], `one comparison for ${JSON.stringify(token.slice(0, 20))}`);
      }
    } finally {
      crypto.timingSafeEqual = original;
      syncBuiltinESMExports();
    }
  });
});

describe('starting without keys', () => {
  test('off loopback without keys the server refuses to listen, unless auth is off; with a key it listens', async () => {
    const t = await startServer({ server: { host: '0.0.0.0' } as never });
    try {
      await assert.rejects(t.server.listen(), { code: 'AUTH_REQUIRED' });
      await t.server.keys.create({ scopes: ['admin'] });
      const url = await t.server.listen();
      const res = await fetch(url.replace('0.0.0.0', '127.0.0.1') + '/v1/streams');
      assert.equal(res.status, 401);
    } finally {
      await t.cleanup();
    }
    const off = await startServer({ auth: 'off', server: { host: '0.0.0.0' } as never });
    try {
      const url = await off.server.listen();
      assert.equal((await fetch(url.replace('0.0.0.0', '127.0.0.1') + '/v1/streams')).status, 200);
    } finally {
      await off.cleanup();
    }
  });

  test('auth: on requires a key even while none exists', async () => {
    const t = await startServer({ auth: 'on' });
    try {
      assert.equal((await call(t, 'GET', '/v1/streams')).status, 401);
      assert.equal((await call(t, 'GET', '/healthz')).status, 200);
    } finally {
      await t.cleanup();
    }
  });
});

test('HTTPS with server.tlsCertFile and server.tlsKeyFile', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    const t = await startServer({ server: { tlsCertFile: cert, tlsKeyFile: key } as never });
    try {
      const url = await t.server.listen();
      assert.match(url, /^https:/);
      const body = await new Promise<string>((resolve, reject) => {
        httpsRequest(`${url}/healthz`, { rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c));
          res.on('end', () => resolve(text));
        })
          .on('error', reject)
          .end();
      });
      assert.deepEqual(JSON.parse(body), { status: 'ok' });
    } finally {
      await t.cleanup();
    }
  } finally {
    await cleanup();
  }
});

test('halflife keys create|list|revoke on a data folder: the key alone on the last line, listed without it', async () => {
  const { dir, cleanup } = await tempDir();
  const io = () => {
    const o = { stdout: '', stderr: '', isTTY: false, out: (s: string) => void (o.stdout += s), err: (s: string) => void (o.stderr += s) };
    return o as Io & { stdout: string; stderr: string };
  };
  try {
    const c = io();
    assert.equal(await main(['keys', 'create', '--data', dir, '--scope', 'write', '--types', 'page_view,click', '--name', 'web'], c), 0, c.stderr);
    const lines = c.stdout.trim().split('\n');
    const key = lines.at(-1)!;
    assert.match(key, /^hl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const store = new KeyStore(dir);
    await store.load();
    assert.equal(store.verify(key)?.name, 'web');
    assert.deepEqual(store.verify(key)?.types, ['page_view', 'click']);
    const l = io();
    assert.equal(await main(['keys', 'list', '--data', dir], l), 0);
    assert.match(l.stdout, /web\s+write\s+page_view,click/);
    assert.ok(!l.stdout.includes(key.slice(-43)));
    const id = key.slice(3, 15);
    assert.equal(await main(['keys', 'revoke', id, '--data', dir], io()), 0);
    const after = io();
    assert.equal(await main(['keys', 'revoke', id, '--data', dir], after), 1);
    assert.match(after.stderr, /KEY_NOT_FOUND/);
    const u = io();
    assert.equal(await main(['keys', 'create', '--data', dir], u), 2, 'a scope is required');
  } finally {
    await cleanup();
  }
});

test('halflife keys against a running server (--url with an admin key)', async () => {
  const t = await startServer();
  const io = () => {
    const o = { stdout: '', stderr: '', isTTY: false, out: (s: string) => void (o.stdout += s), err: (s: string) => void (o.stderr += s) };
    return o as Io & { stdout: string; stderr: string };
  };
  try {
    const url = await t.server.listen();
    const admin = (await t.server.keys.create({ scopes: ['admin'] })).key;
    const c = io();
    assert.equal(await main(['keys', 'create', '--url', url, '--key', admin, '--scope', 'write', '--rate', '100', '--burst', '500', '--name', 'app'], c), 0, c.stderr);
    const key = c.stdout.trim().split('\n').at(-1)!;
    assert.equal(t.server.keys.verify(key)?.eventsPerS, 100);
    const l = io();
    assert.equal(await main(['keys', 'list', '--url', url, '--key', admin, '--json'], l), 0);
    assert.ok((JSON.parse(l.stdout) as { name: string }[]).some((k) => k.name === 'app'));
    const denied = io();
    assert.equal(await main(['keys', 'list', '--url', url, '--key', key], denied), 1, 'a write key may not list keys');
    assert.match(denied.stderr, /FORBIDDEN/);
    const anonymous = io();
    assert.equal(await main(['keys', 'list', '--url', url], anonymous), 1);
    assert.match(anonymous.stderr, /UNAUTHENTICATED/);
  } finally {
    await t.cleanup();
  }
});

test('once a key has existed, revoking every key never turns authentication off; the last admin key cannot be revoked', async () => {
  const t = await startServer({ auth: 'auto' });
  try {
    assert.equal((await call(t, 'GET', '/v1/keys')).status, 200, 'no key yet: loopback answers without one');
    const { key: admin, info: adminInfo } = await t.server.keys.create({ scopes: ['admin'] });
    const { info: writer } = await t.server.keys.create({ scopes: ['write'] });
    // The last admin key is refused, through the API and on the folder (what the CLI does).
    const last = await call(t, 'DELETE', `/v1/keys/${adminInfo.id}`, { key: admin });
    assert.equal(last.status, 409);
    assert.equal(last.body.error.code, 'KEY_LAST_ADMIN');
    await assert.rejects(new KeyStore(t.dir).revoke(adminInfo.id), /last admin key/);
    // With a second admin key the first may go; revoking every key leaves authentication on.
    const { info: second } = await t.server.keys.create({ scopes: ['admin'] });
    assert.equal((await call(t, 'DELETE', `/v1/keys/${adminInfo.id}`, { key: admin })).status, 200);
    assert.ok(await t.server.keys.revoke(writer.id));
    const store = new KeyStore(t.dir);
    await store.load();
    await assert.rejects(store.revoke(second.id), /last admin key/);
    // Emptied on the folder by hand (an old keys.json, or an edit): keys.json still says keys are required.
    const file = JSON.parse(await readFile(join(t.dir, 'keys.json'), 'utf8')) as { required: boolean; keys: unknown[] };
    assert.equal(file.required, true);
    await writeFile(join(t.dir, 'keys.json'), JSON.stringify({ ...file, keys: [] }));
    await t.server.keys.load();
    assert.equal(t.server.keys.size, 0);
    assert.equal((await call(t, 'GET', '/v1/keys')).status, 401);
    assert.equal((await call(t, 'POST', '/v1/keys', { payload: { scopes: ['admin'] } })).status, 401);
  } finally {
    await t.cleanup();
  }
});
