import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { allErrorCodes } from '../src/core/index.js';
import '../src/config/index.js';
import '../src/log/index.js';
import '../src/schema/index.js';
import '../src/ingest/index.js';
import '../src/sql/index.js';
import '../src/engine/index.js';
import '../src/server/index.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const sections = new Map<string, string>();
for (const m of doc.matchAll(/^### ([A-Z_]+)\n([\s\S]*?)(?=^##|$(?![\s\S]))/gm)) sections.set(m[1], m[2]);

test('every error code in the tables is documented in docs/errors.md, and nothing else is', () => {
  const codes = [...allErrorCodes().keys()].sort();
  assert.deepEqual([...sections.keys()].sort(), codes);
});

test('the documented HTTP status matches the table', () => {
  for (const [code, spec] of allErrorCodes()) {
    const m = /^HTTP (\d{3})/.exec(sections.get(code)!.trim());
    if (m) assert.equal(Number(m[1]), spec.status, `${code}: docs say ${m[1]}, table says ${spec.status}`);
    else assert.match(sections.get(code)!, /^(Start-up|Not an error)/m, `${code} needs an HTTP status or a context`);
  }
});

test('every config key is documented in docs/configuration.md', async () => {
  const { envLeaves } = await import('../src/config/index.js');
  const conf = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  for (const path of envLeaves().values()) assert.ok(conf.includes(`| \`${path.join('.')}\` |`), `${path.join('.')} is not documented`);
});
