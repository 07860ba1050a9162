import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnServer } from './helpers/child-server.js';
import { tempDir } from './helpers/tmp.js';

/** Every folder and file under `dir` with group or other permission bits, as "path mode". */
async function exposed(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const s = await stat(d);
    if ((s.mode & 0o077) !== 0) out.push(`${d} ${(s.mode & 0o777).toString(8)}`);
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if ((await stat(p)).mode & 0o077) out.push(`${p} ${((await stat(p)).mode & 0o777).toString(8)}`);
    }
  };
  await walk(dir);
  return out;
}

/**
 * The data folder holds raw payloads and client addresses (dead letters), webhook secrets (alert rules) and key
 * hashes: only its owner may read it (issue #11 item 13). A folder left 0755 by an older version is tightened.
 */
test('halflife serve keeps its data folder 0700 and creates its files 0600', async () => {
  const { dir, cleanup } = await tempDir();
  const dataDir = join(dir, 'data');
  await mkdir(dataDir, { mode: 0o755 });
  const server = await spawnServer(dataDir);
  try {
    const call = async (method: string, path: string, body: unknown) => {
      const res = await fetch(`${server.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as any };
    };
    assert.equal((await call('PUT', '/v1/schemas/e', { type: 'object', properties: { n: { type: 'number' } } })).status, 201);
    const sent = await call('POST', '/v1/events', [{ type: 'e', data: { n: 1 } }, { type: 'e', data: { n: 'bad' } }]);
    assert.deepEqual([sent.body.accepted, sent.body.rejected], [1, 1]);
    assert.equal((await call('PUT', '/v1/views/c', { sql: 'CREATE VIEW c AS SELECT COUNT(*) AS n FROM e' })).status, 201);
    const alert = await call('PUT', '/v1/alerts/a', { sql: 'SELECT n FROM c WHERE n > 100', webhook: { url: 'http://127.0.0.1:9/hook?token=secret' } });
    assert.ok(alert.status < 300, JSON.stringify(alert.body));
    assert.equal((await call('PUT', '/v1/tables/t?key=id', [{ id: 1 }])).status, 200);
    assert.ok(server.output.some((l) => /data folder was readable by others; now 0700/.test(l)), server.output.join('\n'));
    assert.deepEqual(await exposed(dataDir), []);
  } finally {
    server.child.kill('SIGKILL');
    await server.exited;
    await cleanup();
  }
});
