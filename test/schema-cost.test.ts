import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inject, startServer } from './helpers/server.js';

/**
 * A schema whose validation is exponential in the event's depth (issue #11 item 7): each level tries the subtree
 * twice (anyOf), so an event 30 levels deep would take minutes to check.
 */
const EXPONENTIAL = (() => {
  const ref = { properties: { x: { $ref: '#/$defs/n' } } };
  return { $defs: { n: { anyOf: [{ allOf: [ref, { required: ['never'] }] }, ref] } }, $ref: '#/$defs/n' };
})();

function nested(depth: number): unknown {
  let deep: unknown = {};
  for (let i = 0; i < depth; i++) deep = { x: deep };
  return deep;
}

test('an event whose validation would take minutes is refused with SCHEMA_TOO_COSTLY and dead-lettered; shallow ones pass', async () => {
  for (const workers of [1, 0]) {
    const t = await startServer({ ingest: { workers, maxDepth: 40 } });
    try {
      assert.equal((await inject(t, 'PUT', '/v1/schemas/slow', EXPONENTIAL)).status, 201);
      const sent = await inject(t, 'POST', '/v1/events', [{ type: 'slow', data: nested(30) }, { type: 'slow', data: nested(5) }]);
      assert.equal(sent.status, 200);
      assert.equal(sent.body.accepted, 1, JSON.stringify(sent.body));
      assert.deepEqual(sent.body.errors.map((e: { index: number; code: string; path: string }) => [e.index, e.code, e.path]), [[0, 'SCHEMA_TOO_COSTLY', '$.data']]);
      assert.match(sent.body.errors[0].message, /validating it (evaluated more than 1000000 schema nodes \(ingest\.maxValidationSteps\)|took longer than 100 ms \(ingest\.maxValidationMs\))/);
      const letters = (await inject(t, 'GET', '/v1/deadletters?code=SCHEMA_TOO_COSTLY')).body.deadletters;
      assert.equal(letters.length, 1, `workers: ${workers}`);
      assert.equal((await inject(t, 'GET', '/healthz')).body.status, 'ok');
    } finally {
      await t.cleanup();
    }
  }
});

test('a large costly event is dead-lettered whole and replays once the schema is simplified', async () => {
  const t = await startServer({ ingest: { maxDepth: 40 } });
  try {
    await inject(t, 'PUT', '/v1/schemas/slow', EXPONENTIAL);
    const data = { ...(nested(30) as object), pad: 'z'.repeat(20_000) };
    const sent = await inject(t, 'POST', '/v1/events', [{ type: 'slow', id: 'big-1', data }]);
    assert.equal(sent.body.errors[0].code, 'SCHEMA_TOO_COSTLY');
    const letters = (await inject(t, 'GET', '/v1/deadletters?code=SCHEMA_TOO_COSTLY')).body.deadletters;
    assert.equal(letters[0].raw_truncated, false);
    assert.equal(JSON.parse(letters[0].raw).data.pad.length, 20_000);
    assert.equal((await inject(t, 'PUT', '/v1/schemas/slow/config', { compatibility: 'none' })).status, 200);
    assert.equal((await inject(t, 'PUT', '/v1/schemas/slow', { type: 'object', properties: { pad: { type: 'string' } } })).status, 201);
    const replay = await inject(t, 'POST', '/v1/deadletters/replay', { code: 'SCHEMA_TOO_COSTLY' });
    assert.deepEqual(replay.body, { replayed: 1, failed: 0, skipped: 0, refused: 0 });
  } finally {
    await t.cleanup();
  }
});

test('/healthz says degraded while an ingest worker is past half its time budget, and ok again once it is replaced', async () => {
  // A step budget so high that the time budget stops the check (2^27 references, about 15 s).
  const t = await startServer({ ingest: { workers: 1, workerTimeoutMs: 2000, maxValidationSteps: 1_000_000_000, maxValidationMs: 60_000, maxDepth: 40 } });
  try {
    assert.deepEqual((await inject(t, 'GET', '/healthz')).body, { status: 'ok' });
    await inject(t, 'PUT', '/v1/schemas/slow', EXPONENTIAL);
    const stuck = inject(t, 'POST', '/v1/events', [{ type: 'slow', data: nested(27) }]);
    let health: { status: string; reasons?: string[] } = { status: 'ok' };
    for (let i = 0; i < 1000 && health.status === 'ok'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      health = (await inject(t, 'GET', '/healthz')).body;
    }
    assert.equal(health.status, 'degraded');
    assert.match(health.reasons!.join('; '), /an ingest worker has been checking one request for \d+ ms \(ingest\.workerTimeoutMs 2000; it is replaced then\)/);
    const answer = await stuck;
    assert.equal(answer.status, 503);
    assert.equal(answer.body.error.code, 'INGEST_WORKER_FAILED');
    // While it is replaced (and once it is, ok again).
    const reasons = new Set<string>();
    for (let i = 0; i < 1000 && health.status !== 'ok'; i++) {
      health = (await inject(t, 'GET', '/healthz')).body;
      for (const r of health.reasons ?? []) reasons.add(r.replace(/\d+ ms/, 'N ms'));
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(health.status, 'ok');
    assert.ok([...reasons].some((r) => /^0 of 1 ingest workers running \(a stopped one is being replaced\)$/.test(r)), [...reasons].join('; '));
  } finally {
    await t.cleanup();
  }
});
