import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileKvStore } from '../core/index.js';
import { TableStore, type StoredTable } from './table-store.js';
import { tempDir } from '../../test/helpers/tmp.js';

async function until(what: string, ok: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    assert.ok(Date.now() - t0 < 30_000, `${what} did not happen`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('tables in the state store: an earlier tables folder is imported once; big tables go in chunks; another process sees puts and drops, its own writes do not echo', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const old = join(dir, 'tables');
    await mkdir(old, { recursive: true });
    await writeFile(join(old, 'articles.json'), JSON.stringify({ keyColumn: 'id', rows: [{ id: 'a1', author: 'ann' }] }));
    const kv = new FileKvStore(join(dir, 'state'));
    const one = new TableStore({ kv, importDir: old });
    const seenByOne: [string, StoredTable | undefined][] = [];
    assert.deepEqual(await one.start((n, t) => seenByOne.push([n, t])), [{ name: 'articles', keyColumn: 'id', rows: [{ id: 'a1', author: 'ann' }] }]);
    assert.deepEqual(await readdir(old), ['articles.json.imported']);

    const two = new TableStore({ kv, importDir: old });
    const seenByTwo: [string, StoredTable | undefined][] = [];
    assert.equal((await two.start((n, t) => seenByTwo.push([n, t]))).length, 1);

    // 3 MB of rows: several chunks, read back whole by the other process.
    const big = Array.from({ length: 20_000 }, (_, i) => ({ id: `k${i}`, text: `${'é'.repeat(70)}${i}` }));
    await one.put('big', 'id', big);
    const chunksOfBig = async () => (await kv.keys('tables')).filter((k) => k.startsWith('tables.big.d')).length;
    assert.ok((await chunksOfBig()) >= 4, 'stored in several chunks');
    await until('the other process seeing the table', () => seenByTwo.length > 0);
    assert.equal(seenByTwo.length, 1);
    assert.equal(seenByTwo[0][0], 'big');
    assert.deepEqual(seenByTwo[0][1]!.rows, big);
    // A second version replaces the first, whose chunks are removed.
    await two.put('big', 'id', big.slice(0, 10));
    await until('the first process seeing the new version', () => seenByOne.length > 0);
    assert.deepEqual(seenByOne.map(([n, t]) => [n, t?.rows.length]), [['big', 10]]);
    assert.equal(await chunksOfBig(), 1, 'the chunks of the version before are removed');
    await one.remove('articles');
    await until('the other process seeing the drop', () => seenByTwo.length > 1);
    assert.deepEqual(seenByTwo.at(-1), ['articles', undefined]);
    assert.equal(seenByOne.length, 1, 'a process is not told of its own writes');
    await one.close();
    await two.close();

    const again = new TableStore({ kv: new FileKvStore(join(dir, 'state')), importDir: old });
    assert.deepEqual((await again.start(() => {})).map((t) => [t.name, t.rows.length]), [['big', 10]]);
    await again.close();
  } finally {
    await cleanup();
  }
});
