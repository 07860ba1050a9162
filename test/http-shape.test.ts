import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startServer, inject } from './helpers/server.js';

/** Sends raw bytes and returns the raw answer (the connection is closed by the server or after 10 s). */
function raw(address: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('close', () => resolve(out));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy());
  });
}

const body = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string; details: object } };

/** Every error in the documented shape, never a 500 for user input (issue #11 item 14). */
test('errors before routing, repeated parameters, long names, deep and oddly keyed tables answer 4xx in the one shape', async () => {
  const t = await startServer();
  try {
    const address = await t.server.app.listen({ port: 0, host: '127.0.0.1' });
    // Headers too large (Node's parser, before Fastify) and a bad Content-Length.
    const big = await raw(address, `GET /v1/views HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431 /);
    assert.equal(body(big).error.code, 'HEADERS_TOO_LARGE');
    const length = await raw(address, 'POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n');
    assert.match(length, /^HTTP\/1\.1 400 /);
    assert.equal(body(length).error.code, 'INVALID_REQUEST');

    await inject(t, 'PUT', '/v1/schemas/pv', JSON.stringify({ type: 'object', properties: { article_id: { type: 'string' } } }));
    await inject(t, 'PUT', '/v1/views/readers', JSON.stringify({ sql: 'CREATE VIEW readers AS SELECT article_id, COUNT(*) AS n FROM pv GROUP BY article_id' }));
    const twice = await inject(t, 'GET', '/v1/views/readers?article_id=a1&article_id=a2');
    assert.equal(twice.status, 400);
    assert.equal(twice.body.error.code, 'INVALID_QUERY');
    assert.match(twice.body.error.message, /article_id is invalid: given 2 times; give it once/);

    // A percentile of a string column is refused when the view is created, not answered with a number.
    const pct = await inject(t, 'PUT', '/v1/views/pct', JSON.stringify({ sql: 'SELECT APPROX_PERCENTILE(article_id, 0.5) AS p FROM pv' }));
    assert.equal(pct.status, 400);
    assert.equal(pct.body.error.code, 'SQL_PLAN');
    assert.match(pct.body.error.message, /APPROX_PERCENTILE needs a number, but article_id is string/);

    // Names of up to 128 characters are valid, as documented.
    const name = `v${'x'.repeat(127)}`;
    const long = await inject(t, 'PUT', `/v1/views/${name}`, JSON.stringify({ sql: `CREATE VIEW ${name} AS SELECT COUNT(*) AS n FROM pv` }));
    assert.equal(long.status, 201, JSON.stringify(long.body));
    assert.equal((await inject(t, 'GET', `/v1/views/${name}`)).status, 200);
    const tooLong = await inject(t, 'GET', `/v1/views/${'y'.repeat(600)}`);
    assert.ok(tooLong.status >= 400 && tooLong.status < 500 && typeof tooLong.body.error.code === 'string', JSON.stringify(tooLong));

    // A table row nested 200,000 levels deep.
    const deep = await inject(t, 'PUT', '/v1/tables/deep?key=id', `[{"id": 1, "v": ${'['.repeat(200_000)}${']'.repeat(200_000)}}]`);
    assert.equal(deep.status, 400);
    assert.equal(deep.body.error.code, 'INVALID_TABLE');
    assert.match(deep.body.error.message, /row 0 nests deeper than 32 levels/);

    // Rows that are not objects.
    for (const rows of ['[null]', '[1]', '[[1]]', '["x"]']) {
      const res = await inject(t, 'PUT', '/v1/tables/odd', rows);
      assert.equal(res.status, 400, rows);
      assert.equal(res.body.error.code, 'INVALID_TABLE');
    }
    // Tables keyed by names every object inherits, as JSON and as CSV.
    for (const key of ['__proto__', 'constructor', 'toString']) {
      const rows = `[{"${key}": "a", "x": 1}, {"${key}": "b", "x": 2}]`;
      const put = await inject(t, 'PUT', `/v1/tables/t_${key.replace(/_/g, '')}?key=${key}`, rows);
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.rows, 2, key);
      const csv = await inject(t, 'PUT', `/v1/tables/c_${key.replace(/_/g, '')}?key=${key}`, `${key},x\na,1\nb,2\n`, 'text/csv');
      assert.equal(csv.status, 200, JSON.stringify(csv.body));
      assert.equal(csv.body.rows, 2, key);
      const read = await inject(t, 'GET', `/v1/tables/c_${key.replace(/_/g, '')}`);
      assert.deepEqual(read.body.data.map((r: Record<string, unknown>) => Object.hasOwn(r, key) && r[key]), ['a', 'b']);
    }
  } finally {
    await t.cleanup();
  }
});

test('a replay body that is not an object of string or number filters is INVALID_REQUEST, never a 500', async () => {
  const t = await startServer();
  try {
    for (const body of [`${'['.repeat(3000)}${']'.repeat(3000)}`, '[1]', '{"type": {"a": 1}}', '"x"']) {
      const res = await inject(t, 'POST', '/v1/deadletters/replay', body);
      assert.equal(res.status, 400, body.slice(0, 40));
      assert.equal(res.body.error.code, 'INVALID_REQUEST');
    }
    assert.equal((await inject(t, 'POST', '/v1/deadletters/replay', '{"type": "x"}')).status, 200);
  } finally {
    await t.cleanup();
  }
});
