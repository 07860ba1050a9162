import { loadConfig } from '../../config/index.js';
import { HalflifeServer } from '../../server/index.js';
import type { Io } from '../output.js';

export interface ServeFlags {
  config?: string | undefined;
  data?: string | undefined;
  host?: string | undefined;
  port?: string | undefined;
}

/**
 * Runs the server until SIGINT/SIGTERM. The first signal closes gracefully (503 to new requests, in-flight ones
 * finish and are made durable, logs synced) within server.shutdownTimeoutMs; a second signal exits at once, which
 * is still safe: every acknowledged event was written before its acknowledgement.
 */
export async function serve(flags: ServeFlags, io: Io): Promise<number> {
  const port = flags.port === undefined ? undefined : Number(flags.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    io.err(`halflife: --port must be an integer from 0 to 65535 (got ${flags.port})\n`);
    return 2;
  }
  const { config, file } = loadConfig({
    file: flags.config,
    flags: { dataDir: flags.data, 'server.host': flags.host, 'server.port': port },
  });
  const server = new HalflifeServer({ config });
  if (file !== undefined) server.logger.info({ file }, 'config loaded');
  await server.start();
  const address = await server.listen();
  // A plain banner on stderr whatever the log level, for people and for scripts waiting on start-up.
  io.err(`halflife listening on ${address} (data: ${config.dataDir}, fsync: ${config.log.fsync})\n`);
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
