import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './helpers/server.js';

/** A tiny request must not cost gigabytes (issue #11 item 6). */
test('a request over ingest.maxEventsPerRequest is refused whole (413 TOO_MANY_EVENTS); an answer lists at most 100 errors', async () => {
  const t = await startServer({ ingest: { maxEventsPerRequest: 1000 } });
  try {
    const post = async (payload: string, contentType: string) => {
      const res = await t.server.app.inject({ method: 'POST', url: '/v1/events', payload, headers: { 'content-type': contentType } });
      return { status: res.statusCode, body: res.json() as any, bytes: res.body.length };
    };
    const letters = () => Object.values(t.server.ingestor.deadLetterCounts()).reduce((a, b) => a + b, 0);
    // 1,001 lines of {} (blank lines do not count), and a JSON array of 1,001.
    const ndjson = await post('{}\n\n'.repeat(1001), 'application/x-ndjson');
    assert.equal(ndjson.status, 413);
    assert.equal(ndjson.body.error.code, 'TOO_MANY_EVENTS');
    assert.match(ndjson.body.error.message, /holds 1001 events, over the limit of 1000 per request/);
    const array = await post(JSON.stringify(Array.from({ length: 1001 }, () => ({}))), 'application/json');
    assert.equal(array.status, 413);
    assert.equal(array.body.error.code, 'TOO_MANY_EVENTS');
    assert.equal(letters(), 0, 'nothing dead-lettered');
    // At the limit: every event is checked; the answer lists the first 100 errors and counts the rest.
    const bad = await post('{}\n'.repeat(1000), 'application/x-ndjson');
    assert.equal(bad.status, 200);
    assert.equal(bad.body.rejected, 1000);
    assert.equal(bad.body.errors.length, 100);
    assert.deepEqual(bad.body.errors.map((e: { index: number }) => e.index), Array.from({ length: 100 }, (_, i) => i));
    assert.equal(bad.body.errorsOmitted, 900);
    assert.equal(letters(), 1000, 'every rejected event is dead-lettered, listed or not');
    const fine = await post('{"type": "x", "data": {}}', 'application/json');
    assert.equal(fine.body.errorsOmitted, undefined);
  } finally {
    await t.cleanup();
  }
});
