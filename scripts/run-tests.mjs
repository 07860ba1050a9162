// Finds the test files (Node 20's --test does not expand globs) and runs them with node's test runner.
// In CI a focused test (`.only`) fails the run, and a test file that leaks a handle (and so never exits) is
// stopped by the overall time limit instead of hanging CI; nothing the run started outlives it.
import { spawn } from 'node:child_process';
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
const LIMIT_MS = 30 * 60 * 1000;
// The runner leads a process group of its own, so that at the time limit (or a Ctrl-C / SIGTERM to this script) the
// whole group is signalled: the runner, every test file's process and every server a test started, not only the
// runner (its children would run on, orphaned). SIGTERM first (test processes kill their servers on it), SIGKILL
// for whatever is left 10 s later.
const runner = spawn(process.execPath, [...args, ...files], { stdio: 'inherit', detached: true });
let stopping;
const stop = (why) => {
  if (stopping !== undefined) return;
  console.error(`test run stopped: ${why}`);
  const group = (signal) => {
    try {
      process.kill(-runner.pid, signal);
    } catch {
      // The group is gone.
    }
  };
  group('SIGTERM');
  stopping = setTimeout(() => group('SIGKILL'), 10_000);
};
const limit = setTimeout(() => stop(`over the time limit of ${LIMIT_MS / 60_000} minutes`), LIMIT_MS);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => stop(`${signal} received`));
runner.on('exit', (code) => {
  clearTimeout(limit);
  clearTimeout(stopping);
  // Whatever the runner left behind in its group (nothing, normally).
  try {
    process.kill(-runner.pid, 'SIGKILL');
  } catch {
    // Nothing left.
  }
  process.exit(code ?? 1);
});
