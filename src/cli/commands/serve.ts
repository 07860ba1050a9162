import { loadConfig } from '../../config/index.js';
import { HalflifeError } from '../../core/index.js';
import { HalflifeServer, probeListen } from '../../server/index.js';
import type { Io } from '../output.js';

export interface ServeFlags {
  config?: string | undefined;
  data?: string | undefined;
  host?: string | undefined;
  port?: string | undefined;
  /** NATS server URLs (comma-separated): the log and the shared state on JetStream. */
  nats?: string | undefined;
  /** What this process runs in a cluster (`cluster.role`). */
  role?: string | undefined;
}

/**
 * Runs the server until SIGINT/SIGTERM. The first signal closes gracefully (503 to new requests, in-flight ones
 * finish and are made durable, logs synced) within server.shutdownTimeoutMs; a second signal exits at once, which
 * is still safe: every acknowledged event was written before its acknowledgement.
 *
 * A failure to start (port in use, data folder locked or not writable, config unreadable or invalid) closes
 * whatever was opened, prints one line and returns 2: a half-started server must never hang on its threads.
 */
export async function serve(flags: ServeFlags, io: Io): Promise<number> {
  const port = flags.port === undefined ? undefined : Number(flags.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    io.err(`halflife: --port must be an integer from 0 to 65535 (got ${flags.port})\n`);
    return 2;
  }
  let server: HalflifeServer | undefined;
  let started = false;
  let address: string;
  try {
    const { config, file } = loadConfig({
      file: flags.config,
      flags: { dataDir: flags.data, 'server.host': flags.host, 'server.port': port, ...(flags.nats === undefined ? {} : { 'nats.servers': flags.nats, 'log.backend': 'nats' }), ...(flags.role === undefined ? {} : { 'cluster.role': flags.role }) },
    });
    await probeListen(config.server.host, config.server.port);
    // Every file the server creates (segments, dead letters with raw payloads, alert rules with webhook secrets) is
    // its owner's alone: 0600, folders 0700. The process is the server's, so its umask is ours to set.
    process.umask(0o077);
    server = new HalflifeServer({ config });
    if (file !== undefined) server.logger.info({ file }, 'config loaded');
    await server.start();
    started = true;
    address = await server.listen();
  } catch (err) {
    // start() closes what it opened when it fails; after a failed listen the started server must be closed here.
    if (started) await server?.close().catch(() => {});
    const repairHint = err instanceof HalflifeError && err.code === 'SEGMENT_CORRUPT' ? ` (here: halflife repair --data ${JSON.stringify(server?.config.dataDir ?? flags.data ?? '')} --dry-run)` : '';
    io.err(`halflife: ${startFailure(err)}${repairHint}\n`);
    // Not one of ours (a bug, or a library's failure we do not name yet): where it came from, for the report.
    if (!(err instanceof HalflifeError)) server?.logger.error({ err }, 'start-up failed');
    return 2;
  }
  const config = server.config;
  // A plain banner on stderr whatever the log level, for people and for scripts waiting on start-up.
  const where = config.log.backend === 'nats' ? `log: NATS JetStream at ${config.nats.servers}` : `fsync: ${config.log.fsync}`;
  io.err(`halflife listening on ${address} (data: ${config.dataDir}, ${where})\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        server.logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      server.logger.info({ signal, timeoutMs: config.server.shutdownTimeoutMs }, 'shutting down');
      const timer = setTimeout(() => {
        server.logger.error({ timeoutMs: config.server.shutdownTimeoutMs }, 'shutdown timed out: exiting');
        process.exit(1);
      }, config.server.shutdownTimeoutMs);
      timer.unref();
      server.close().then(
        () => resolve(0),
        (err: unknown) => {
          server.logger.error({ err }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}

/** The one message a failed start prints: our code and sentence, or the system's sentence, never a stack. */
function startFailure(err: unknown): string {
  if (err instanceof HalflifeError) return `${err.code}: ${err.message}`;
  const e = err as NodeJS.ErrnoException;
  const text = e instanceof Error ? e.message : String(err);
  return `cannot start: ${text.split('\n')[0]}`;
}
