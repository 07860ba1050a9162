import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileKvStore } from '../core/index.js';
import { ViewDefinitions } from './view-definitions.js';
import { tempDir } from '../../test/helpers/tmp.js';

test('view definitions: an earlier views folder is imported once; changes made by another process reach this one, its own do not echo', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const views = join(dir, 'views');
    await mkdir(join(views, 'a'), { recursive: true });
    await writeFile(join(views, 'a', 'view.sql'), 'CREATE VIEW a AS SELECT COUNT(*) AS n FROM e');
    await writeFile(join(views, 'a', 'checkpoint.bin'), 'kept');
    await mkdir(join(views, 'half-dropped'), { recursive: true });
    const kv = new FileKvStore(join(dir, 'state'));
    const one = new ViewDefinitions({ kv, importDir: views });
    const seenByOne: [string, string | undefined][] = [];
    await one.start((name, sql) => seenByOne.push([name, sql]));
    assert.deepEqual(one.list(), [{ name: 'a', sql: 'CREATE VIEW a AS SELECT COUNT(*) AS n FROM e' }]);
    assert.deepEqual((await readdir(join(views, 'a'))).sort(), ['checkpoint.bin', 'view.sql.imported']);

    const two = new ViewDefinitions({ kv, importDir: views });
    const seenByTwo: [string, string | undefined][] = [];
    await two.start((name, sql) => seenByTwo.push([name, sql]));
    assert.deepEqual(two.list(), one.list(), 'the second reads the store, it imports nothing');

    await one.create('b', 'CREATE VIEW b AS SELECT 1');
    await assert.rejects(two.create('b', 'CREATE VIEW b AS SELECT 2'), { code: 'VIEW_EXISTS' });
    assert.equal(two.has('b'), true, 'the loser knows the winner\'s view (from the watch)');
    await two.put('b', 'CREATE OR REPLACE VIEW b AS SELECT 3');
    await one.remove('a');
    assert.deepEqual(seenByOne, [['b', 'CREATE OR REPLACE VIEW b AS SELECT 3']]);
    assert.deepEqual(seenByTwo, [['b', 'CREATE VIEW b AS SELECT 1'], ['a', undefined]]);
    assert.deepEqual(one.list(), two.list());
    await one.close();
    await two.close();

    // A restart reads the store; the renamed file is not imported again.
    const again = new ViewDefinitions({ kv: new FileKvStore(join(dir, 'state')), importDir: views });
    await again.start(() => {});
    assert.deepEqual(again.list(), [{ name: 'b', sql: 'CREATE OR REPLACE VIEW b AS SELECT 3' }]);
    await again.close();
  } finally {
    await cleanup();
  }
});

test('view definitions: a process that loses a create race to the same SQL still runs the view (its echo was taken for its own)', async () => {
  const kv = new FileKvStore();
  const one = new ViewDefinitions({ kv });
  const two = new ViewDefinitions({ kv });
  const seenByTwo: [string, string | undefined][] = [];
  await one.start(() => {});
  await two.start((name, sql) => seenByTwo.push([name, sql]));
  // Both create the same view at once (a deploy script run against two nodes).
  const results = await Promise.allSettled([one.create('v', 'CREATE VIEW v AS SELECT 1'), two.create('v', 'CREATE VIEW v AS SELECT 1')]);
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const loser = results[0].status === 'rejected' ? one : two;
  assert.equal(loser.has('v'), true, 'the loser knows the view');
  if (loser === two) assert.deepEqual(seenByTwo, [['v', 'CREATE VIEW v AS SELECT 1']], 'and runs it');
  await one.close();
  await two.close();
});
