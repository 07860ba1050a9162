import { connect, type NatsConnection } from '@nats-io/transport-node';
import { HalflifeError, LifecycleState, silentLogger, type Logger } from '../core/index.js';
import './errors.js';

/** What a server version can do that durability or the cluster relies on (detected at start, never assumed). */
export interface NatsFeatures {
  /** nats-server ≥ 2.10.23: the releases before lost whole streams on process crashes (Jepsen, 2025). */
  readonly crashSafeStreams: boolean;
  /** nats-server ≥ 2.11: a TTL per KV key (2.9/2.10 silently ignore one). */
  readonly perKeyTtl: boolean;
  /** nats-server ≥ 2.12: atomic batch publish. */
  readonly atomicBatch: boolean;
}

/** Compares dotted versions numerically: a < b → negative. */
export function compareVersions(a: string, b: string): number {
  const pa = a.replace(/^v/, '').split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.replace(/^v/, '').split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

export function featuresOf(version: string): NatsFeatures {
  return {
    crashSafeStreams: compareVersions(version, '2.10.23') >= 0,
    perKeyTtl: compareVersions(version, '2.11.0') >= 0,
    atomicBatch: compareVersions(version, '2.12.0') >= 0,
  };
}

export interface NatsConnectorOptions {
  /** Server URLs, comma-separated. */
  readonly servers: string;
  /** The connection's name as servers show it. */
  readonly name?: string;
  readonly logger?: Logger;
}

/**
 * The one NATS connection of a process, shared by its JetStream log and KV buckets. Refuses a server without
 * JetStream, and reads the server's version so that newer features are used only where present.
 */
export class NatsConnector {
  readonly #o: NatsConnectorOptions;
  readonly #state = new LifecycleState('nats');
  readonly #logger: Logger;
  #nc: NatsConnection | undefined;

  constructor(options: NatsConnectorOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  get connection(): NatsConnection {
    if (this.#nc === undefined) throw new HalflifeError('NATS_UNAVAILABLE', { servers: this.#o.servers, reason: 'not connected yet' });
    return this.#nc;
  }

  /** The version of the server this process is connected to now. */
  get serverVersion(): string {
    return this.#nc?.info?.version ?? 'unknown';
  }

  get features(): NatsFeatures {
    return featuresOf(this.serverVersion);
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    const servers = this.#o.servers.split(',').map((s) => s.trim()).filter((s) => s !== '');
    try {
      // Reconnect for ever: a server restarting, or a leader moving, must not stop the process.
      // noAsyncTraces: the client otherwise makes an Error (a stack trace) up front for every request and subscription
      // timer, in case it fails; that was ~4 % of the main thread's time under R3 ingest (every publish and direct get
      // is a request). The errors keep their names, messages and causes (timeouts are still told apart); their stacks
      // no longer show where the request was made.
      this.#nc = await connect({ servers, name: this.#o.name ?? 'halflife', maxReconnectAttempts: -1, reconnectTimeWait: 1000, timeout: 10_000, noAsyncTraces: true });
    } catch (err) {
      throw new HalflifeError('NATS_UNAVAILABLE', { servers: this.#o.servers, reason: (err as Error).message }, { cause: err });
    }
    const info = this.#nc.info;
    if (info?.jetstream !== true) {
      await this.#nc.close();
      throw new HalflifeError('NATS_UNAVAILABLE', { servers: this.#o.servers, reason: 'JetStream is not enabled on the server (start it with -js, or jetstream {} in its config)' });
    }
    const version = info.version;
    const f = featuresOf(version);
    this.#logger.info({ servers, version, features: f }, `connected to nats-server ${version}`);
    if (!f.crashSafeStreams) {
      this.#logger.warn({ version }, `nats-server ${version} is older than 2.10.23: releases before it could lose whole streams when a server process crashed; upgrade (docs/scale-out.md)`);
    }
  }

  /** Drains the connection: publishes in flight are finished first. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      await this.#nc?.drain().catch(() => this.#nc?.close());
    });
  }
}

/** Whether a NATS failure is a request that got no answer in time (a JetStream leader being elected drops requests). */
export function isNatsTimeout(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string } | undefined;
  return e?.name === 'TimeoutError' || e?.message === 'timeout';
}

/**
 * Runs a JetStream API call again while it times out, up to `deadlineMs` (default 60 s): right after a server of the
 * cluster dies, requests sent while its successor is elected are lost and only time out; the next one is answered.
 * Only for calls that are safe to repeat (reads, and setup that checks what is there).
 */
export async function retryingTimeouts<T>(work: () => Promise<T>, deadlineMs = 60_000): Promise<T> {
  const end = performance.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!isNatsTimeout(err) || performance.now() > end) throw err;
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
  }
}
