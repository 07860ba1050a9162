import { LifecycleState, SupervisedWorker, silentLogger, type Logger } from '../core/index.js';
import { LogPort, statsWire, watchLog, type Log } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import type { ArchiveWorkerInit, FromArchiveWorker, ToArchiveWorker } from './archive-protocol.js';

export interface ArchiveHostOptions {
  readonly log: Log;
  readonly registry: SchemaRegistry;
  readonly dir: string;
  readonly rollSeconds: number;
  readonly rollBytes: number;
  readonly retentionDays?: number;
  readonly compactFiles?: number;
  readonly logger?: Logger;
}

/** What the archive has done, as last told by its thread (at most a second old). */
export interface ArchiveStatus {
  readonly running: boolean;
  /** Events written to Parquet since this process started. */
  readonly archived: number;
  /** Records per partition not archived yet; null until the archive's thread has started and said so. */
  readonly lag: Record<number, number> | null;
  readonly restarts: number;
}

/**
 * Runs the archive (see `Archive`) on a thread of its own, supervised: it reads the log through this thread, learns of
 * new schemas as they are registered, and is started again from its committed positions if it dies.
 */
export class ArchiveHost {
  readonly #o: ArchiveHostOptions;
  readonly #logger: Logger;
  readonly #state = new LifecycleState('archive');
  readonly #watch = new AbortController();
  readonly #worker: SupervisedWorker<ArchiveWorkerInit, FromArchiveWorker>;
  #port: LogPort | undefined;
  #status: { archived: number; lag: Record<number, number> | null } = { archived: 0, lag: null };
  /** Events the threads before this one wrote. */
  #before = 0;

  constructor(options: ArchiveHostOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#worker = new SupervisedWorker<ArchiveWorkerInit, FromArchiveWorker>({
      name: 'archive worker',
      module: 'archive-worker',
      callerUrl: import.meta.url,
      logger: this.#logger,
      init: () => ({
        dir: this.#o.dir,
        rollSeconds: this.#o.rollSeconds,
        rollBytes: this.#o.rollBytes,
        retentionDays: this.#o.retentionDays ?? 0,
        compactFiles: this.#o.compactFiles ?? 24,
        partitions: this.#o.log.partitionCount,
        stats: statsWire(this.#o.log),
        endsSeenLocally: this.#o.log.endsSeenLocally === true,
        schemas: Object.fromEntries(this.#o.registry.latestVersions().map((v) => [v.type, v.schema])),
      }),
      onReady: (worker, init) => {
        // A new thread has not said anything yet: its lag is unknown (not 0) until it does; it counts from 0.
        this.#before += this.#status.archived;
        this.#status = { archived: 0, lag: null };
        // Replies go to this thread only: a read finishing after it died must not reach its successor.
        this.#port = new LogPort(this.#o.log, (m, transfer) => worker.postMessage(m, transfer));
        // Appends while it started were reported to nobody: its tails wait on what it knows of the log's ends.
        this.#send({ type: 'log-stats', stats: statsWire(this.#o.log) });
        for (const v of this.#o.registry.latestVersions()) {
          if (init.schemas[v.type] !== v.schema) this.#send({ type: 'schema', eventType: v.type, schema: v.schema });
        }
        this.#send({ type: 'start' });
      },
      onMessage: (m, worker) => {
        switch (m.type) {
          case 'log-read':
          case 'log-commit':
          case 'log-committed':
            // Before `ready` (recovery reads its committed positions) the port is not set yet: serve from a new one.
            (this.#worker.worker === worker && this.#port !== undefined ? this.#port : new LogPort(this.#o.log, (r, t) => worker.postMessage(r, t))).handle(m);
            break;
          case 'status':
            this.#status = { archived: m.archived, lag: m.lag };
            break;
          case 'log':
            this.#logger[m.level]({ ...m.obj, component: 'archive' }, m.msg);
            break;
        }
      },
    });
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    this.#o.registry.onRegistered((v) => this.#send({ type: 'schema', eventType: v.type, schema: v.schema }));
    watchLog(this.#o.log, () => this.#send({ type: 'log-stats', stats: statsWire(this.#o.log) }), this.#watch.signal);
    await this.#worker.start();
  }

  #send(m: ToArchiveWorker): void {
    this.#worker.worker?.postMessage(m);
  }

  status(): ArchiveStatus {
    return { running: this.#worker.worker !== undefined, archived: this.#before + this.#status.archived, lag: this.#status.lag, restarts: this.#worker.restarts };
  }

  /** Stops its thread as a crash would (tests); it is started again. */
  terminate(): Promise<void> {
    return this.#worker.terminate();
  }

  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#watch.abort();
      await this.#worker.close({ type: 'close' } satisfies ToArchiveWorker);
    });
  }
}
