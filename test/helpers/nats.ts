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
  /** What it printed (cluster nodes), for a failing test's message. */
  readonly output?: readonly string[];
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

export interface NatsCluster {
  readonly nodes: NatsServer[];
  readonly names: string[];
  /** Every node's client URL, comma-separated (what `nats.servers` takes). */
  readonly servers: string;
  stop(): Promise<void>;
}

/** `n` distinct free ports: every probe socket stays open until all are chosen. */
async function freePorts(n: number): Promise<number[]> {
  const { createServer } = await import('node:net');
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * A JetStream cluster of `n` nats-servers of its own (loopback, free ports, storage in temporary folders), ready once
 * every node listens and knows the cluster's JetStream metadata leader; killed when the test ends (and when it fails
 * to start). A node's `stop()` kills it with SIGKILL, as a crash would. `names[i]` is node i's server name (what
 * stream info calls the leader).
 */
export async function startNatsCluster(n = 3): Promise<NatsCluster> {
  const { writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const ports = await freePorts(2 * n);
  const clientPorts = ports.slice(0, n);
  const routePorts = ports.slice(n);
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
  const started = await Promise.allSettled(
    clientPorts.map(async (port, i): Promise<NatsServer & { leaderKnown: Promise<void> }> => {
      const { dir, cleanup } = await tempDir('halflife-natsc-');
      const conf = join(dir, 'nats.conf');
      await writeFile(conf, `server_name: n${i}\nlisten: 127.0.0.1:${port}\njetstream { store_dir: "${join(dir, 'js')}" }\ncluster { name: halflife_test, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes}] }\n`);
      const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = supervise(child);
      const output: string[] = [];
      let leaderSeen: () => void = () => {};
      const leaderKnown = new Promise<void>((resolve) => (leaderSeen = resolve));
      const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
        await cleanup();
      };
      try {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`nats-server n${i} did not start within 30 s:\n${output.join('\n')}`)), 30_000);
          void exited.then(({ code, signal }) => {
            clearTimeout(timer);
            reject(new Error(`nats-server n${i} exited (${code ?? signal}):\n${output.join('\n')}`));
          });
          for (const stream of [child.stdout!, child.stderr!]) {
            createInterface({ input: stream }).on('line', (line) => {
              output.push(line);
              if (/metadata leader/.test(line)) leaderSeen();
              if (/Server is ready/.test(line)) {
                clearTimeout(timer);
                resolve();
              }
            });
          }
        });
      } catch (err) {
        await stop();
        throw err;
      }
      return { url: `nats://127.0.0.1:${port}`, pid: child.pid!, stop, leaderKnown, output };
    }),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stopAll = async () => {
    for (const x of nodes) await x.stop();
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await stopAll();
    throw failed.reason;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([Promise.all(nodes.map((x) => x.leaderKnown)), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the NATS cluster elected no JetStream metadata leader within 60 s')), 60_000)))]);
  } catch (err) {
    await stopAll();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    nodes,
    names: nodes.map((_x, i) => `n${i}`),
    servers: nodes.map((x) => x.url).join(','),
    stop: stopAll,
  };
}
