import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './helpers/server.js';

/** Dead letters keep what was sent, and a replay stays within what the sender could write (issue #11 item 10). */
test('input that is not UTF-8 is kept as its bytes and never replayed; a replay keeps to the sending key’s types', async () => {
  const t = await startServer();
  try {
    const call = async (method: 'GET' | 'PUT' | 'POST', url: string, payload?: string | Buffer, headers: Record<string, string> = {}) => {
      const res = await t.server.app.inject({ method, url, payload, headers: { 'content-type': 'application/json', ...headers } });
      return { status: res.statusCode, body: res.json() as any };
    };
    await call('PUT', '/v1/schemas/pub', JSON.stringify({ type: 'object' }));
    await call('PUT', '/v1/schemas/secret', JSON.stringify({ type: 'object', properties: { n: { type: 'integer' } } }));
    const { key } = await t.server.keys.create({ scopes: ['write'], types: ['pub'] });
    const { key: admin } = await t.server.keys.create({ scopes: ['admin'] });
    // A line whose invalid byte would decode to U+FFFD inside a string: as text it is valid JSON of a type the key
    // may not write.
    const line = Buffer.concat([Buffer.from('{"type":"secret","data":{"s":"'), Buffer.from([0xff]), Buffer.from('"}}')]);
    // As a JSON body it is refused whole (MALFORMED_JSON) and dead-lettered before its type could be checked.
    const sent = await call('POST', '/v1/events', line, { authorization: `Bearer ${key}` });
    assert.equal(sent.status, 400, JSON.stringify(sent.body));
    assert.equal(sent.body.error.code, 'MALFORMED_JSON');
    const letters = (await call('GET', '/v1/deadletters', undefined, { authorization: `Bearer ${admin}` })).body.deadletters;
    assert.equal(letters.length, 1);
    assert.equal(letters[0].raw_encoding, 'base64');
    assert.deepEqual(Buffer.from(letters[0].raw, 'base64'), line, 'the bytes as sent');
    assert.equal(letters[0].source.key, key.slice(3, 15));
    assert.deepEqual(letters[0].source.types, ['pub']);
    // A letter of a type outside its key's types (here one the key sent as a bad event of an allowed shape).
    const bad = await call('POST', '/v1/events', JSON.stringify([{ type: 'pub', data: {}, extra: 1 }]), { authorization: `Bearer ${key}` });
    assert.equal(bad.body.rejected, 1);
    const replay = await call('POST', '/v1/deadletters/replay', '{}', { authorization: `Bearer ${admin}` });
    assert.deepEqual(replay.body, { replayed: 0, failed: 2, skipped: 0, refused: 0 });
    const stored = (await call('GET', '/v1/events?type=secret', undefined, { authorization: `Bearer ${admin}` })).body.records ?? [];
    assert.equal(stored.length, 0, 'nothing of type secret was stored');
  } finally {
    await t.cleanup();
  }
});

test('a replay refuses letters whose type the sending key may not write', async () => {
  const t = await startServer();
  try {
    await t.server.registry.register('secret', { type: 'object' });
    // What an older halflife could have stored: a letter from a key limited to `pub`, holding a valid `secret` event.
    await t.server.deadLetters.add([
      { raw: '{"type":"secret","data":{}}', raw_truncated: false, code: 'MALFORMED_JSON', message: 'x', path: '$', type: null, schema_version: null, received_at: Date.now(), source: { address: '127.0.0.1', key: 'abc', types: ['pub'] } },
      { raw: '{"type":"secret","data":{}}', raw_truncated: false, code: 'MALFORMED_JSON', message: 'x', path: '$', type: null, schema_version: null, received_at: Date.now(), source: { address: '127.0.0.1' } },
    ]);
    const res = await t.server.app.inject({ method: 'POST', url: '/v1/deadletters/replay', payload: {} });
    assert.deepEqual(res.json(), { replayed: 1, failed: 0, skipped: 0, refused: 1 });
  } finally {
    await t.cleanup();
  }
});
