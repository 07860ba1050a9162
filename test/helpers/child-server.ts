import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { NO_SHEDDING } from './server.js';

const ENTRY = fileURLToPath(new URL('./cli-entry.ts', import.meta.url));

/**
 * How long a child may take to listen. Only a guard against a server that never starts: on a machine whose cores
 * other programs keep busy, loading the sources through tsx alone takes tens of seconds.
 */
const START_TIMEOUT_MS = 180_000;

export interface ChildServer {
  child: ChildProcess;
  url: string;
  /** Everything the server printed. */
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  /** `off` (the default): overload bounds that shed nothing, so a busy machine cannot fail a test that does not
   * test shedding; `defaults`: the production defaults (with whatever `env` sets), for tests of shedding itself. */
  readonly shedding?: 'off' | 'defaults';
}

/** Children still running, killed when the test that started them ends however it ends, and when this process exits. */
const running = new Set<ChildProcess>();
let exitHooked = false;

function killNow(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.kill('SIGKILL');
  } catch {
    // Already gone.
  }
}

function hookProcessExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // 'exit' handlers run synchronously, which is all kill needs. A signal to this process (the runner's time limit, a
  // Ctrl-C) would end it without them: kill the children, then end as the signal would have.
  process.on('exit', () => running.forEach(killNow));
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      running.forEach(killNow);
      process.kill(process.pid, signal);
    });
  }
}

/** The environment that turns shedding off (each bound far beyond anything a test reaches). */
function noSheddingEnv(): Record<string, string> {
  return {
    HALFLIFE_OVERLOAD_MEMORY_BUDGET_BYTES: String(NO_SHEDDING.memoryBudgetBytes),
    HALFLIFE_OVERLOAD_MAX_INFLIGHT_BYTES: String(NO_SHEDDING.maxInflightBytes),
    HALFLIFE_OVERLOAD_MAX_QUEUED_BYTES: String(NO_SHEDDING.maxQueuedBytes),
    HALFLIFE_OVERLOAD_MAX_ENGINE_LAG_EVENTS: String(NO_SHEDDING.maxEngineLagEvents),
  };
}

/**
 * Kills `child` (SIGKILL) when the test that started it ends however it ends, and when this process exits; resolves
 * when it exits. Every child process a test starts goes through here.
 */
export function supervise(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  running.add(child);
  hookProcessExit();
  // Registered on the running test: node:test runs it when the test passes, fails or times out. Only under the test
  // runner: elsewhere (the benchmarks) it would start a test harness of its own.
  if (process.env.NODE_TEST_CONTEXT !== undefined) after(() => killNow(child));
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
}

/**
 * Starts `halflife serve` in a child process on a free port and waits until it listens. The child is SIGKILLed when
 * the test (or hook) that started it ends, also when that test fails or times out, and when this process exits.
 */
export async function spawnServer(dataDir: string, env: Record<string, string> = {}, nodeArgs: readonly string[] = [], options: SpawnOptions = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', ENTRY, 'serve', '--data', dataDir, '--port', '0', '--host', '127.0.0.1'], {
    env: { ...process.env, HALFLIFE_LOG_LEVEL: 'info', ...(options.shedding === 'defaults' ? {} : noSheddingEnv()), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = supervise(child);
  const output: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => output.push(l));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      killNow(child); // never leave a half-started server behind
      reject(new Error(`server did not start within ${START_TIMEOUT_MS} ms:\n${output.join('\n')}`));
    }, START_TIMEOUT_MS);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      output.push(line);
      const m = /^halflife listening on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output.join('\n')}`));
    });
  });
  return { child, url, output, exited };
}
