// Finds the test files (Node 20's --test does not expand globs) and runs them with node's test runner.
// In CI a focused test (`.only`) fails the run, and a test file that leaks a handle (and so never exits) is
// stopped by the overall time limit instead of hanging CI.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function find(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) find(path, out);
    else if (entry.name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : [...find('src', []), ...find('test', [])].sort();

if (process.env.CI) {
  const focused = files.filter((f) => /\b(?:test|describe|it)\.only\(|\{\s*only:\s*true/.test(readFileSync(f, 'utf8')));
  if (focused.length > 0) {
    console.error(`focused tests (.only) are not allowed in CI: ${focused.join(', ')}`);
    process.exit(1);
  }
}

const args = ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000'];
const result = spawnSync(process.execPath, [...args, ...files], { stdio: 'inherit', timeout: 30 * 60 * 1000 });
if (result.error) console.error(`test run stopped: ${result.error.message}`);
process.exit(result.status ?? 1);
