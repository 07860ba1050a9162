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

test('each sender has a dead-letter budget (ingest.deadLetterBytesPerS): past it, rejected events are still answered but not kept', async () => {
  const t = await startServer({ ingest: { deadLetterBytesPerS: 1024, deadLetterBurstBytes: 64 * 1024 } });
  try {
    const post = async (payload: string, address: string) => {
      const res = await t.server.app.inject({ method: 'POST', url: '/v1/events', payload, remoteAddress: address, headers: { 'content-type': 'application/x-ndjson' } });
      return res.json() as any;
    };
    const letters = () => Object.values(t.server.ingestor.deadLetterCounts()).reduce((a, b) => a + b, 0);
    // 1,000 bad events of ~1 KB from one client: about 64 KB of letters are kept, the rest dropped.
    const bad = `{"type":"nope","data":{"pad":"${'x'.repeat(1000)}"}}\n`.repeat(1000);
    const first = await post(bad, '10.0.0.1');
    assert.equal(first.rejected, 1000);
    assert.equal(first.errors.length, 100);
    const kept = letters();
    assert.ok(kept > 0 && kept < 100, `${kept} letters kept`);
    assert.equal(first.deadLettersDropped, 1000 - kept);
    assert.equal(t.server.ingestor.deadLettersDropped, 1000 - kept);
    // Another sender has a budget of its own.
    const other = await post(`{"type":"nope","data":{}}\n`, '10.0.0.2');
    assert.equal(other.deadLettersDropped, undefined);
    assert.equal(letters(), kept + 1);
    const metrics = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, new RegExp(`halflife_deadletters_dropped_total\\{[^}]*\\} ${1000 - kept}\\n`));
  } finally {
    await t.cleanup();
  }
});
