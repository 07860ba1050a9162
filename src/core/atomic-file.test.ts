import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../../test/helpers/tmp.js';
import { writeFileAtomic } from './atomic-file.js';

test('writeFileAtomic replaces the content whole, leaves no temporary file, and creates files with the mode asked', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'state.json');
    await writeFileAtomic(path, '{"v":1}\n', { mode: 0o600 });
    assert.equal(await readFile(path, 'utf8'), '{"v":1}\n');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    // A temporary file left by a crash is overwritten, never read.
    await writeFile(`${path}.tmp`, 'torn');
    await writeFileAtomic(path, Buffer.from('{"v":2}\n'), { durable: false });
    assert.equal(await readFile(path, 'utf8'), '{"v":2}\n');
    await writeFileAtomic(path, '{"v":3}\n', { tmpSuffix: '.repair' });
    assert.equal(await readFile(path, 'utf8'), '{"v":3}\n');
    assert.deepEqual(await readdir(dir), ['state.json']);
  } finally {
    await cleanup();
  }
});
