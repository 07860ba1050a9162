// The layering rule of ARCHITECTURE.md, enforced: a room imports only the rooms below it, and only through
// their index.ts (its public surface).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ALLOWED: Record<string, string[]> = {
  core: [],
  config: ['core'],
  log: ['core'],
  sketch: ['core'],
  sql: ['core'],
  schema: ['core', 'config'],
  engine: ['core', 'config', 'log', 'sketch', 'sql'],
  ingest: ['core', 'config', 'log', 'schema'],
  query: ['core', 'config', 'engine', 'log', 'sketch', 'sql'],
  sinks: ['core', 'config', 'log', 'schema'],
  history: ['core', 'config', 'log', 'schema', 'sinks'],
  alerts: ['core', 'config', 'query', 'sinks'],
  cluster: ['core', 'config', 'log', 'engine', 'schema'],
  server: ['core', 'config', 'log', 'sketch', 'sql', 'schema', 'engine', 'ingest', 'query', 'sinks', 'history', 'alerts', 'cluster'],
  cli: ['core', 'config', 'server', 'sdk'],
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

test('rooms import only the rooms below them, through index.ts; the SDK imports nothing of ours', () => {
  const root = new URL('..', import.meta.url).pathname;
  const problems: string[] = [];
  for (const file of files(join(root, 'src'))) {
    const room = relative(join(root, 'src'), file).split('/')[0];
    assert.ok(room in ALLOWED, `unknown room ${room} (add it to the layering table)`);
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s+'(\.\.?\/[^']+)'/g)) {
      const target = relative(root, join(file, '..', m[1]));
      const parts = target.split('/');
      if (parts[0] === 'sdk') {
        if (!ALLOWED[room].includes('sdk')) problems.push(`${relative(root, file)} imports the SDK`);
        continue;
      }
      const other = parts[1];
      if (other === room) continue;
      if (!ALLOWED[room].includes(other)) problems.push(`${relative(root, file)}: ${room} may not import ${other}`);
      else if (parts[parts.length - 1] !== 'index.js') problems.push(`${relative(root, file)}: import ${other} through its index.ts, not ${m[1]}`);
    }
  }
  for (const file of files(join(root, 'sdk'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/from\s+'(\.\.[^']*)'/g)) problems.push(`${relative(root, file)} imports ${m[1]}`);
  }
  assert.deepEqual(problems, []);
});
