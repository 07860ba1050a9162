import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const ENTRY = fileURLToPath(new URL('./cli-entry.ts', import.meta.url));

export interface ChildServer {
  child: ChildProcess;
  url: string;
  /** Everything the server printed. */
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `halflife serve` in a child process on a free port and waits until it listens. */
export async function spawnServer(dataDir: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<ChildServer> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', ENTRY, 'serve', '--data', dataDir, '--port', '0', '--host', '127.0.0.1'], {
    env: { ...process.env, HALFLIFE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  createInterface({ input: child.stdout! }).on('line', (l) => output.push(l));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // never leave a half-started server behind
      reject(new Error(`server did not start:\n${output.join('\n')}`));
    }, 20_000);
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
