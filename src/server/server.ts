import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, sep } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { HalflifeConfig } from '../config/index.js';
import { FileKvStore, HalflifeError, type KvStore, LifecycleState, packageVersion, SystemClock, type Clock, type Logger } from '../core/index.js';
import { DeadLetterStore, Ingestor, IngestWorkers } from '../ingest/index.js';
import { JetStreamLog, KvOffsetStore, NatsConnector, NatsKvStore, SegmentLog, type Log } from '../log/index.js';
import { SchemaRegistry } from '../schema/index.js';
import { buildApp } from './app.js';
import { authRequired, isLoopback } from './auth.js';
import { KeyStore } from './keys.js';
import { OverloadMonitor } from './overload.js';
import { Metrics } from './metrics.js';
import { AlertManager } from '../alerts/index.js';
import { ArchiveHost, WebhookSender } from '../sinks/index.js';
import { History } from '../history/index.js';
import { DataDirLock } from './data-lock.js';
import { EngineHost, TableStore, ViewDefinitions, type CatalogSnapshot } from '../engine/index.js';
import { ClusterCheckpoints, ClusterQueries, FencedStore, LeaseManager, NodeRegistry, PartitionOwnership } from '../cluster/index.js';
import { clusterStatus } from './cluster-status.js';
import { QUERY_EXTENSION, queryOn } from '../query/index.js';

export interface HalflifeServerOptions {
  readonly config: HalflifeConfig;
  readonly clock?: Clock;
  /** A pino logger; by default JSON lines on stdout at `config.logLevel`. */
  readonly logger?: pino.Logger;
}

/**
 * The composition root: builds every component from the config, starts them bottom up (log, schema registry,
 * dead letters, ingest, HTTP) and closes them top down (stop accepting, drain ingest, flush the logs).
 */
export class HalflifeServer {
  readonly config: HalflifeConfig;
  readonly logger: pino.Logger;
  /** The event log: embedded segment files, or NATS JetStream (`log.backend: nats`). */
  readonly log: Log & { readonly queuedBytes: number };
  readonly keys: KeyStore;
  readonly overload: OverloadMonitor;
  readonly metrics: Metrics;
  readonly alerts: AlertManager;
  readonly registry: SchemaRegistry;
  /** Shared state (schemas, alert rules): files under <data>/state, or a JetStream KV bucket. */
  readonly #kv: KvStore;
  /** The NATS connection when the log is on JetStream. */
  readonly #nats: NatsConnector | undefined;
  /** This process in the state store's list of processes (`halflife cluster status`). */
  readonly nodes: NodeRegistry;
  /** On NATS: the partitions this process runs, by lease (none for the roles ingest and query). */
  readonly ownership: PartitionOwnership | undefined;
  readonly #queries: ClusterQueries | undefined;
  readonly ingestor: Ingestor;
  readonly deadLetters: DeadLetterStore;
  readonly engine: EngineHost;
  readonly #deadLetterLog: Log;
  readonly #replayLedger: Log;
  readonly #lock: DataDirLock;
  readonly #ingestWorkers: IngestWorkers | undefined;
  /** Every event to Parquet (archive.enabled; embedded log only for now). */
  readonly archive: ArchiveHost | undefined;
  /** SQL over the archive and the log's unarchived tail. */
  readonly history: History;
  readonly #state = new LifecycleState('server');
  #app: FastifyInstance | undefined;
  #ready = false;
  #closing = false;

  constructor(options: HalflifeServerOptions) {
    const config = options.config;
    const clock = options.clock ?? new SystemClock();
    this.config = config;
    // Keys travel in the Authorization header: never logged, whatever a log line carries.
    this.logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'halflife' }, redact: ['req.headers.authorization', 'headers.authorization', 'authorization', 'key'] });
    const m = config.metrics;
    this.metrics = new Metrics({ environment: m.environment, service: m.service, team: m.team, version: m.version ?? packageVersion() });
    const logger = this.logger as unknown as Logger;
    const data = config.dataDir;
    this.#lock = new DataDirLock(data);
    const nats = config.log.backend === 'nats' ? new NatsConnector({ servers: config.nats.servers ?? '', logger: logger.child({ component: 'nats' }) }) : undefined;
    this.#nats = nats;
    if (nats !== undefined) {
      const n = config.nats;
      const connection = () => nats.connection;
      const stream = (name: string, subjectPrefix: string, partitions: number, offsets: KvOffsetStore, retention: boolean) =>
        new JetStreamLog({
          connection,
          partitions,
          stream: name,
          subjectPrefix,
          replicas: n.replicas,
          compression: n.compression,
          retentionMaxAgeMs: retention ? config.log.retention.maxAgeMs : 0,
          retentionMaxBytes: retention ? config.log.retention.maxBytesPerPartition * partitions : 0,
          pinnedKeys: partitions === config.log.partitions ? config.log.pinnedKeys : undefined,
          offsets,
          logger: logger.child({ component: 'log' }),
        });
      const offsets = new KvOffsetStore(new NatsKvStore(connection, { bucket: `${n.bucketPrefix}_offsets`, replicas: n.replicas }));
      this.log = stream(n.stream, n.subjectPrefix, config.log.partitions, offsets, true);
      // Dead letters are kept until removed by hand, like the embedded ones.
      this.#deadLetterLog = stream(`${n.stream}_DEADLETTERS`, `${n.subjectPrefix}_deadletters`, 1, offsets, false);
      this.#replayLedger = stream(`${n.stream}_REPLAYED`, `${n.subjectPrefix}_replayed`, 1, offsets, false);
      this.#kv = new NatsKvStore(connection, { bucket: `${n.bucketPrefix}_state`, replicas: n.replicas });
    } else {
      this.log = new SegmentLog({
        dir: join(data, 'log', 'events'),
        partitions: config.log.partitions,
        fsync: config.log.fsync,
        fsyncIntervalMs: config.log.fsyncIntervalMs,
        segmentBytes: config.log.segmentBytes,
        indexIntervalBytes: config.log.indexIntervalBytes,
        retentionMaxAgeMs: config.log.retention.maxAgeMs,
        retentionMaxBytesPerPartition: config.log.retention.maxBytesPerPartition,
        // What the archive has not written to Parquet stays in the log, whatever its retention says.
        retentionKeepsFor: config.archive.enabled ? ['archive'] : [],
        pinnedKeys: config.log.pinnedKeys,
        observer: this.metrics.logObserver,
        logger: logger.child({ component: 'log' }),
        clock,
      });
      // Dead letters are rare and precious: never weaker than `interval`, and kept until removed by hand.
      const dlqFsync = config.log.fsync === 'always' ? 'always' : 'interval';
      this.#deadLetterLog = new SegmentLog({ dir: join(data, 'deadletters', 'log'), partitions: 1, fsync: dlqFsync, logger, clock });
      this.#replayLedger = new SegmentLog({ dir: join(data, 'deadletters', 'replayed'), partitions: 1, fsync: 'always', logger, clock });
      this.#kv = new FileKvStore(join(data, 'state'));
    }
    this.registry = new SchemaRegistry({
      kv: this.#kv,
      importDir: join(data, 'schemas'),
      defaultCompatibility: config.schemas.compatibility,
      loadDir: config.schemas.dir,
      logger: logger.child({ component: 'schema' }),
      clock,
      validation: config.ingest,
    });
    this.deadLetters = new DeadLetterStore(this.#deadLetterLog, this.#replayLedger, clock);
    this.#ingestWorkers =
      config.ingest.workers > 0
        ? new IngestWorkers({ count: config.ingest.workers, limits: config.ingest, registry: this.registry, logger: logger.child({ component: 'ingest' }) })
        : undefined;
    this.ingestor = new Ingestor({
      workers: this.#ingestWorkers,
      shedding: () => {
        const s = this.overload.status();
        return { level: s.shed, reason: s.reason };
      },
      hotKeys:
        config.rateLimits.hotKeyEventsPerS > 0 && config.rateLimits.overflowPartition !== null
          ? { eventsPerS: config.rateLimits.hotKeyEventsPerS, burstEvents: config.rateLimits.hotKeyBurstEvents || config.rateLimits.hotKeyEventsPerS, overflowPartition: config.rateLimits.overflowPartition }
          : undefined,
      limits: config.ingest,
      log: this.log,
      registry: this.registry,
      deadLetters: this.deadLetters,
      clock,
      logger: logger.child({ component: 'ingest' }),
    });
    // This process in the list of processes sharing the state (`halflife cluster status`); on NATS, what the others
    // read to share the partitions out (a worker is live while its heartbeat is younger than a lease).
    const role = config.cluster.role;
    this.nodes = new NodeRegistry({
      kv: this.#kv,
      version: packageVersion(),
      role,
      exclusive: nats === undefined,
      heartbeatMs: nats === undefined ? undefined : Math.max(300, Math.floor(config.cluster.leaseMs / 3)),
      logger: logger.child({ component: 'cluster' }),
    });
    let checkpoints: ClusterCheckpoints | undefined;
    if (nats !== undefined) {
      const n = config.nats;
      const connection = () => nats.connection;
      const leases = new NatsKvStore(connection, { bucket: `${n.bucketPrefix}_leases`, replicas: n.replicas, ttlMs: config.cluster.leaseMs });
      this.ownership = new PartitionOwnership({
        leases: new LeaseManager(leases, this.nodes.node.id),
        self: this.nodes.node.id,
        nodes: () => this.nodes.list(),
        partitions: config.log.partitions,
        worker: role === 'worker' || role === 'all',
        leaseMs: config.cluster.leaseMs,
        apply: (partitions, clean) => this.engine.setPartitions(partitions, clean),
        logger: logger.child({ component: 'cluster' }),
      });
      checkpoints = new ClusterCheckpoints(new FencedStore(this.#kv, this.nodes.node.id), this.ownership);
      const ownership = this.ownership;
      this.#queries = new ClusterQueries({
        connection,
        subject: `${n.subjectPrefix}_cluster.partials`,
        self: this.nodes.node.id,
        partitions: config.log.partitions,
        serving: () => ownership.serving(),
        epoch: () => ownership.epoch,
        local: (view, q) => this.engine.localPartials(view, q),
        timeoutMs: config.engine.queryTimeoutMs,
        logger: logger.child({ component: 'cluster' }),
      });
    }
    this.engine = new EngineHost({
      log: this.log,
      dataDir: data,
      catalog: () => this.#catalog(),
      definitions: new ViewDefinitions({ kv: this.#kv, importDir: join(data, 'views'), logger: logger.child({ component: 'engine' }) }),
      tables: new TableStore({ kv: this.#kv, importDir: join(data, 'tables'), logger: logger.child({ component: 'engine' }) }),
      checkpointIntervalMs: config.engine.checkpointIntervalMs,
      queryTimeoutMs: config.engine.queryTimeoutMs,
      workers: Math.min(config.engine.workers, config.log.partitions),
      extensions: [QUERY_EXTENSION],
      // On NATS the leases give this process its partitions (none at start), checkpoints live in the shared state
      // under the leases' fencing tokens, and reads merge what the other processes hold.
      ...(nats === undefined ? {} : { partitions: [], checkpoints, remote: this.#queries }),
      logger: logger.child({ component: 'engine' }),
    });
    // Embedded, keys.json in the data folder (which the CLI edits beside a running server); on NATS, the shared state.
    this.keys = new KeyStore(data, logger.child({ component: 'auth' }), nats === undefined ? undefined : this.#kv);
    this.alerts = new AlertManager({
      kv: this.#kv,
      importFile: join(data, 'alerts.json'),
      configRules: config.alerts.rules,
      runSql: (sql) => queryOn(this.engine, sql),
      metricSamples: (name) => this.metrics.samples(name),
      constantLabels: ['environment', 'service', 'team', 'version'],
      webhooks: new WebhookSender(logger.child({ component: 'alerts' }), { allowedHosts: config.alerts.allowedWebhookHosts }),
      clock,
      logger: logger.child({ component: 'alerts' }),
      intervalMs: config.alerts.evaluationIntervalMs,
    });
    if (config.archive.enabled && nats === undefined) {
      this.archive = new ArchiveHost({
        log: this.log,
        registry: this.registry,
        dir: config.archive.dir ?? join(data, 'archive'),
        rollSeconds: config.archive.rollSeconds,
        rollBytes: config.archive.rollBytes,
        retentionDays: config.archive.retentionDays,
        compactFiles: config.archive.compactFiles,
        logger: logger.child({ component: 'archive' }),
      });
    } else if (config.archive.enabled) {
      // Several processes would each write every partition: the archive needs the leases the engine has (next).
      logger.warn({}, 'the archive does not run on NATS JetStream yet (archive.enabled is ignored)');
    }
    this.history = new History({
      log: this.log,
      archiveDir: config.archive.dir ?? join(data, 'archive'),
      schemaOf: (type) => this.registry.latestVersions().find((v) => v.type === type)?.schema,
      types: () => this.registry.latestVersions().map((v) => v.type),
      tables: () => this.engine.storedTables(),
      timeoutMs: config.history.queryTimeoutMs,
      maxRows: config.history.maxRows,
      memoryLimitMb: config.history.memoryLimitMb,
      tempDir: join(data, 'history-tmp'),
      logger: logger.child({ component: 'history' }),
    });
    this.overload = new OverloadMonitor({ config: config.overload, queuedBytes: () => this.log.queuedBytes, engine: this.engine, logger: logger.child({ component: 'overload' }) });
  }

  /** The HTTP API, built by `start` (tests use `app.inject`). */
  get app(): FastifyInstance {
    if (this.#app === undefined) throw new Error('the server is not started');
    return this.#app;
  }

  /** Opens the data folder and every component; does not listen (see `listen`). */
  async start(): Promise<void> {
    this.#state.assertOpen();
    const dataDir = this.config.dataDir;
    try {
      // The folder holds raw payloads, client addresses and webhook secrets: its owner alone may enter it, which
      // protects every file inside whatever its own mode (serve also creates files 0600 through its umask).
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      const { mode } = await stat(dataDir);
      if ((mode & 0o077) !== 0) {
        const was = (mode & 0o777).toString(8);
        // Only its owner may change it: anyone else learns what they may do from the lock and the writes below.
        await chmod(dataDir, 0o700).then(
          () => this.logger.warn({ dataDir, was }, 'data folder was readable by others; now 0700'),
          (err: NodeJS.ErrnoException) => this.logger.warn({ dataDir, was, code: err.code }, 'data folder is readable by others and could not be made 0700'),
        );
      }
      await this.#lock.acquire();
    } catch (err) {
      throw dataDirError(err, dataDir);
    }
    try {
      await this.#nats?.start();
      await this.log.start();
      await this.#deadLetterLog.start();
      await this.#replayLedger.start();
      await this.registry.start();
      await this.deadLetters.start();
      await this.#ingestWorkers?.start();
      await this.ingestor.start();
      await this.engine.start();
      await this.archive?.start();
      await this.history.start();
      this.overload.start();
      await this.alerts.start();
      await this.nodes.start();
      this.#queries?.start();
      await this.ownership?.start();
      await this.keys.load();
      await this.keys.watch();
      const { tlsCertFile, tlsKeyFile } = this.config.server;
      const tls = tlsCertFile !== null && tlsKeyFile !== null ? { cert: await readFile(tlsCertFile), key: await readFile(tlsKeyFile) } : undefined;
      this.#app = buildApp({
        config: this.config,
        log: this.log,
        registry: this.registry,
        ingestor: this.ingestor,
        deadLetters: this.deadLetters,
        engine: this.engine,
        keys: this.keys,
        overload: this.overload,
        metrics: this.metrics,
        alerts: this.alerts,
        tls,
        logger: this.logger,
        ready: () => this.#ready && !this.#closing,
        closing: () => this.#closing,
        health: () => this.#health(),
        archive: () => this.archive?.status(),
        history: this.history,
        cluster: () =>
          clusterStatus({
            config: this.config,
            log: this.log,
            engine: this.engine,
            nodes: this.nodes,
            ownership: this.ownership,
            nats: this.#nats,
            streamInfo: this.log instanceof JetStreamLog ? () => (this.log as JetStreamLog).streamInfo() : undefined,
          }),
      });
      await this.#app.ready();
    } catch (err) {
      await this.#closeComponents().catch(() => {});
      await this.#lock.release();
      throw dataDirError(err, dataDir);
    }
    this.#ready = true;
  }

  /** Listens on the configured host and port; returns the address (port 0 picks a free one). */
  async listen(): Promise<string> {
    const { host, port } = this.config.server;
    const auth = { keys: this.keys, mode: this.config.auth, host };
    if (this.config.auth === 'auto' && this.keys.size === 0 && !isLoopback(host)) throw new HalflifeError('AUTH_REQUIRED', { host });
    let address: string;
    try {
      address = await this.app.listen({ host, port });
    } catch (err) {
      throw listenError(err, host, port);
    }
    if (this.config.auth === 'off') {
      this.logger.warn({}, 'authentication is off (auth: off): every request is accepted; keep this server behind something that authenticates');
    } else if (!authRequired(auth)) {
      this.logger.warn({}, 'authentication is off: no API key exists, so the server answers loopback only; create one with "halflife keys create --scope admin"');
    }
    const stats = this.log.stats();
    this.logger.info(
      { address, dataDir: this.config.dataDir, partitions: this.log.partitionCount, records: stats.records, fsync: this.config.log.fsync },
      `halflife listening on ${address}`,
    );
    return address;
  }

  /**
   * Graceful stop: new requests get 503 SHUTTING_DOWN, in-flight ones finish and are made durable, then the
   * logs are synced and closed. Idempotent.
   */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#closing = true;
      // Keep-alive connections that were busy when closing began turn idle afterwards, and Node would keep them
      // open until their keep-alive timeout: close them as they go idle (their last answers say Connection: close).
      const app = this.#app;
      const reaper = app === undefined ? undefined : setInterval(() => app.server.closeIdleConnections(), 50);
      try {
        await app?.close();
      } finally {
        clearInterval(reaper);
      }
      this.logger.debug({}, 'shutdown: HTTP closed, in-flight requests answered');
      await this.#closeComponents();
      await this.#lock.release();
      this.logger.info({}, 'halflife stopped');
    });
  }

  /** The latest schema of every stream, for the engine's planner. */
  #catalog(): CatalogSnapshot {
    const out: CatalogSnapshot = {};
    for (const t of this.registry.list()) out[t.type] = this.registry.get(t.type).schema;
    return out;
  }

  /**
   * What /healthz reports beyond "the server thread answers": an engine worker or an ingest worker stopped (being
   * replaced), or an ingest worker still checking a request past half its time budget (it is replaced at the budget).
   */
  #health(): { status: 'ok' | 'degraded'; reasons?: string[] } {
    const reasons: string[] = [];
    if (this.engine.running < this.engine.workers) reasons.push(`${this.engine.running} of ${this.engine.workers} engine workers running (one that exited is being restarted from its checkpoints)`);
    const a = this.archive?.status();
    if (a !== undefined && !a.running) reasons.push('the archive worker is not running (one that exited is being restarted from its committed positions)');
    const w = this.#ingestWorkers?.health();
    if (w !== undefined) {
      if (w.running < w.configured) reasons.push(`${w.running} of ${w.configured} ingest workers running (a stopped one is being replaced)`);
      if (w.oldestCheckMs >= w.budgetMs / 2) reasons.push(`an ingest worker has been checking one request for ${w.oldestCheckMs} ms (ingest.workerTimeoutMs ${w.budgetMs}; it is replaced then)`);
    }
    return reasons.length === 0 ? { status: 'ok' } : { status: 'degraded', reasons };
  }

  async #closeComponents(): Promise<void> {
    this.keys.close();
    // The partitions go to the other workers after a last checkpoint, before this process leaves the list.
    await this.ownership?.close().catch((err: unknown) => this.logger.warn({ err }, 'handing the partitions over failed'));
    this.#queries?.close();
    await this.nodes.close();
    this.overload.close();
    await this.ingestor.close();
    await this.#ingestWorkers?.close();
    this.logger.debug({}, 'shutdown: ingest drained');
    await this.alerts.close();
    await this.engine.close();
    this.logger.debug({}, 'shutdown: engine checkpointed and stopped');
    await this.archive?.close();
    await this.deadLetters.close();
    await this.registry.close();
    await this.#kv.close();
    await this.#replayLedger.close();
    await this.#deadLetterLog.close();
    await this.log.close();
    await this.#nats?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** What a failed system call says in words (start-up messages are read by people, not parsed). */
const ERRNO_WORDS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is not a folder',
  ENOSPC: 'no space left on the device',
  EEXIST: 'a file is in the way',
};

/**
 * A file-system failure inside the data folder at start-up, as DATA_DIR_UNUSABLE naming the path; anything else
 * (our own errors, failures outside the folder) unchanged.
 */
function dataDirError(err: unknown, dataDir: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof HalflifeError || typeof e?.code !== 'string' || typeof e.path !== 'string') return err;
  const inside = e.path === dataDir || e.path.startsWith(dataDir.endsWith(sep) ? dataDir : dataDir + sep);
  if (!inside) return err;
  const words = ERRNO_WORDS[e.code] ?? e.code;
  return new HalflifeError('DATA_DIR_UNUSABLE', { dir: dataDir, reason: `${words} (${e.code}) on ${e.path}`, path: e.path, errno: e.code }, { cause: err });
}

/**
 * Fails fast, before any component starts, when the address cannot be listened on (port taken, not an address of
 * this machine): starting the log, the engine and their threads first would take seconds. `listen` still reports
 * the same failures if the port is taken in between.
 */
export async function probeListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    throw listenError(err, host, port);
  } finally {
    await new Promise<void>((resolve) => (probe.listening ? probe.close(() => resolve()) : resolve()));
  }
}

function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE') return new HalflifeError('PORT_IN_USE', { port, host }, { cause: err });
  if (code === 'EACCES') return new HalflifeError('LISTEN_FAILED', { host, port, reason: 'permission denied (ports below 1024 need privileges)' }, { cause: err });
  if (code === 'EADDRNOTAVAIL') return new HalflifeError('LISTEN_FAILED', { host, port, reason: 'no interface of this machine has that address' }, { cause: err });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new HalflifeError('LISTEN_FAILED', { host, port, reason: 'unknown host name' }, { cause: err });
  return err;
}
