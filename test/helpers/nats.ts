import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { supervise } from './child-server.js';
import { tempDir } from './tmp.js';

/** Whether Debian's nats-server is installed; CI requires it (.ci/run installs it), elsewhere its tests skip loudly. */
export const hasNatsServer = spawnSync('nats-server', ['--version']).status === 0;
if (!hasNatsServer) {
  if (process.env.CI) throw new Error('nats-server is required in CI (Debian package nats-server; .ci/run installs it)');
  console.warn('\n*** nats-server not found: the NATS JetStream tests are SKIPPED (apt-get install nats-server) ***\n');
}

export interface NatsServer {
  readonly url: string;
  readonly pid: number;
  /** Stops the server (SIGKILL: as a crash would) and removes its storage. */
  stop(): Promise<void>;
}

/** A JetStream nats-server of its own: loopback, a free port, storage in a temporary folder; killed when the test ends. */
export async function startNats(): Promise<NatsServer> {
  const { dir, cleanup } = await tempDir('halflife-nats-');
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', '-1', '-sd', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = supervise(child);
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nats-server did not start within 30 s:\n${output.join('\n')}`));
    }, 30_000);
    void exited.then(({ code, signal }) => reject(new Error(`nats-server exited (${code ?? signal}):\n${output.join('\n')}`)));
    let address: string | undefined;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        const m = /Listening for client connections on (\S+:\d+)/.exec(line);
        if (m) address = m[1];
        if (/Server is ready/.test(line) && address !== undefined) {
          clearTimeout(timer);
          resolve(`nats://${address}`);
        }
      });
    }
  });
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await cleanup();
    },
  };
}
