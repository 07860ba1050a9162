import { availableParallelism, totalmem } from 'node:os';
/** The configuration: one schema, one `defaultConfig()`. Every duration carries its unit in its name. */

export type FsyncPolicy = 'always' | 'interval' | 'never';
export type Compatibility = 'backward' | 'none';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/**
 * `auto`: API keys are required once one exists; with none, the server listens on loopback only. `on`: keys are
 * always required. `off`: no authentication (for a server behind a proxy that does it).
 */
export type AuthMode = 'auto' | 'on' | 'off';

export interface ServerConfig {
  host: string;
  port: number;
  /** Graceful shutdown waits at most this long for in-flight work before exiting. */
  shutdownTimeoutMs: number;
  /** PEM files for HTTPS (both or neither; null: plain HTTP, e.g. behind a TLS-terminating proxy). */
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** Live view streams (SSE) open at once; more get 503. */
  maxLiveStreams: number;
  /** A request (headers and body) must arrive within this; slow clients (slowloris) are cut off. */
  requestTimeoutMs: number;
}

export interface LogConfig {
  /** Where the event log lives: `files` (embedded segment files, the default) or `nats` (NATS JetStream, see `nats`). */
  backend: 'files' | 'nats';
  partitions: number;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  segmentBytes: number;
  indexIntervalBytes: number;
  retention: { maxAgeMs: number; maxBytesPerPartition: number };
  /** key -> partition that the key owns alone. */
  pinnedKeys: Record<string, number>;
}

export interface IngestConfig {
  maxBodyBytes: number;
  maxEventBytes: number;
  maxDepth: number;
  /** Schema nodes one event's validation may evaluate, when its schema is metered; past it the event is refused (SCHEMA_TOO_COSTLY). */
  maxValidationSteps: number;
  /** …and how long it may take. */
  maxValidationMs: number;
  /** Events in one request at most; more is refused whole (413 TOO_MANY_EVENTS) before any is checked. */
  maxEventsPerRequest: number;
  /** An event's `ts` may be at most this far ahead of the server's clock (else EVENT_TIME_OUT_OF_RANGE). */
  maxEventTimeAheadMs: number;
  /** …and at most this far behind it. */
  maxEventTimeBehindMs: number;
  unknownTypes: 'reject' | 'accept';
  dedupWindowMs: number;
  dedupMaxIds: number;
  deadLetterRawBytes: number;
  /** Dead-letter bytes each sender (API key, or client address without one) may write per second, in the long run; 0: no bound. */
  deadLetterBytesPerS: number;
  /** …and at once (the bucket's size). */
  deadLetterBurstBytes: number;
  /** Worker threads that parse and check large request bodies (0: the server thread does). */
  workers: number;
  /** A request still being checked on a worker after this fails (503 INGEST_WORKER_FAILED, retryable); the worker is replaced. */
  workerTimeoutMs: number;
  /** Event type -> priority under overload (types not listed are `normal`). */
  priorities: Record<string, Priority>;
}

/** Under overload `low` events are shed first, then `normal`; `high` ones are refused only at the hard memory bound. */
export type Priority = 'high' | 'normal' | 'low';

export interface OverloadConfig {
  /** Hard bound on the process's resident memory: at it every request is refused (503) and /readyz is unready. */
  memoryBudgetBytes: number;
  /**
   * Request bodies being received or checked at once (declared length, plus 4 KiB per request for what else it
   * holds); a request that would pass it is refused (503) on arrival. Work a client has sent and halflife has not yet
   * answered: open-loop traffic beyond capacity piles up here, a closed loop of clients holds at most one request each.
   */
  maxInflightBytes: number;
  /** Appends waiting for the log's group commit. */
  maxQueuedBytes: number;
  /** Records live views are behind the log (views still backfilling do not count). */
  maxEngineLagEvents: number;
  /**
   * Pressure (the largest of the ratios to the bounds above) from which low-priority events are shed... Every bound
   * measures work halflife holds, none the time it takes: a slow event loop on a busy machine sheds nothing.
   */
  shedLowAt: number;
  /** ...and from which normal-priority ones are too. */
  shedNormalAt: number;
}

/** The archive of every event to Parquet (docs/archive.md). */
export interface ArchiveConfig {
  enabled: boolean;
  /** null: `<dataDir>/archive`. */
  dir: string | null;
  /** A partition's buffered events are written once the oldest waited this long… */
  rollSeconds: number;
  /** …or once they hold this many bytes. */
  rollBytes: number;
  /** Date folders older than this many days are removed; 0 keeps everything. */
  retentionDays: number;
  /** A folder's files of one partition are merged into one once there are this many. */
  compactFiles: number;
}

/** SQL over history: the archive and the log's unarchived tail (docs/archive.md). */
export interface HistoryConfig {
  /** A query running longer is cancelled (SQL_TIMEOUT). */
  queryTimeoutMs: number;
  /** Rows returned at most (`truncated: true` past it). */
  maxRows: number;
  /** DuckDB memory per query. */
  memoryLimitMb: number;
}

export interface AlertsConfig {
  /** How often every rule is evaluated. */
  evaluationIntervalMs: number;
  /** Rules by name (see docs/alerts.md); more can be added through PUT /v1/alerts/:name. */
  rules: Record<string, unknown>;
  /**
   * Host names webhooks may be sent to (`hooks.example.com`, or `*.example.com` for its subdomains); null: any. Set it
   * wherever an admin key's holder must not be able to make the server call internal addresses.
   */
  allowedWebhookHosts: string[] | null;
}

/** Constant labels on every metric series (GET /metrics). */
export interface MetricsConfig {
  environment: string;
  service: string;
  team: string;
  /** null: halflife's own version. */
  version: string | null;
}

export interface RateLimitsConfig {
  /** Default token bucket of an API key, in events per second and burst events (0: no limit); a key may set its own. */
  keyEventsPerS: number;
  keyBurstEvents: number;
  /** Token bucket per partition key: a hot key's excess goes to `overflowPartition` instead of its own (0: off). */
  hotKeyEventsPerS: number;
  hotKeyBurstEvents: number;
  /** The partition that takes hot keys' excess (null: hot keys are not limited). */
  overflowPartition: number | null;
}

export interface SchemasConfig {
  /** Folder of `<type>.json` schemas registered at start (null = none). */
  dir: string | null;
  compatibility: Compatibility;
}

export interface EngineConfig {
  /** View state and offsets are saved together this often; a crash replays at most this much of the log. */
  checkpointIntervalMs: number;
  /** Engine worker threads, each consuming a share of the partitions; partial aggregates merge at read time. */
  workers: number;
  /** A query over a view (POST /v1/query, alert rules) running longer than this is stopped with SQL_TIMEOUT. */
  queryTimeoutMs: number;
}

/** The NATS JetStream cluster that holds the log and the shared state when `log.backend` is `nats`. */
export interface NatsConfig {
  /** Server URLs, comma-separated (`nats://h1:4222,nats://h2:4222`); also HALFLIFE_NATS or `serve --nats`. */
  servers: string | null;
  /** The event log's stream; dead letters and replays get streams named after it (`_DEADLETTERS`, `_REPLAYED`). */
  stream: string;
  /** Subjects of the event log: `<subjectPrefix>.<partition>`. */
  subjectPrefix: string;
  /** Copies of every stream and bucket (3 survives losing a server; 1 for a single server). */
  replicas: number;
  /** KV buckets: `<bucketPrefix>_state` (schemas, alerts) and `<bucketPrefix>_offsets`. */
  bucketPrefix: string;
  /** How event batches are stored in the streams: `deflate` (default, ~5× fewer bytes to store and copy) or `none`. */
  compression: 'deflate' | 'none';
}

/** What a process of a cluster on NATS runs (`log.backend: nats`); one process on the embedded log runs everything. */
export interface ClusterConfig {
  /**
   * `all` (default): ingestion, views and queries. `ingest`: accepts events, owns no partitions. `worker`: runs the
   * views of the partitions it holds leases on, accepts no events. `query`: answers view queries (asking the workers),
   * accepts no events and owns no partitions. Every role answers view queries.
   */
  role: 'all' | 'ingest' | 'worker' | 'query';
  /** A worker's lease on a partition lasts this long unless renewed (every third of it): how soon a dead worker's partitions move. */
  leaseMs: number;
}

export interface HalflifeConfig {
  dataDir: string;
  logLevel: LogLevel;
  auth: AuthMode;
  server: ServerConfig;
  log: LogConfig;
  nats: NatsConfig;
  cluster: ClusterConfig;
  ingest: IngestConfig;
  schemas: SchemasConfig;
  engine: EngineConfig;
  overload: OverloadConfig;
  rateLimits: RateLimitsConfig;
  metrics: MetricsConfig;
  alerts: AlertsConfig;
  archive: ArchiveConfig;
  history: HistoryConfig;
}

export function defaultConfig(): HalflifeConfig {
  return {
    dataDir: './halflife-data',
    logLevel: 'info',
    auth: 'auto',
    server: { host: '127.0.0.1', port: 7070, shutdownTimeoutMs: 10_000, tlsCertFile: null, tlsKeyFile: null, maxLiveStreams: 1000, requestTimeoutMs: 30_000 },
    log: {
      backend: 'files',
      partitions: 8,
      fsync: 'interval',
      fsyncIntervalMs: 100,
      segmentBytes: 64 * 1024 * 1024,
      indexIntervalBytes: 4096,
      retention: { maxAgeMs: 7 * 24 * 3600 * 1000, maxBytesPerPartition: 0 },
      pinnedKeys: {},
    },
    ingest: {
      maxBodyBytes: 10 * 1024 * 1024,
      maxEventBytes: 256 * 1024,
      maxDepth: 32,
      maxValidationSteps: 1_000_000,
      maxValidationMs: 100,
      maxEventsPerRequest: 10_000,
      maxEventTimeAheadMs: 24 * 3600 * 1000,
      maxEventTimeBehindMs: 30 * 24 * 3600 * 1000,
      unknownTypes: 'reject',
      dedupWindowMs: 10 * 60 * 1000,
      dedupMaxIds: 1_000_000,
      deadLetterRawBytes: 16 * 1024,
      deadLetterBytesPerS: 1024 * 1024,
      deadLetterBurstBytes: 64 * 1024 * 1024,
      // One per core, at most four: parsing is the largest cost and the server thread has little else to do.
      workers: Math.max(1, Math.min(4, availableParallelism())),
      workerTimeoutMs: 10_000,
      priorities: {},
    },
    schemas: { dir: null, compatibility: 'backward' },
    engine: { checkpointIntervalMs: 5000, workers: 1, queryTimeoutMs: 10_000 },
    overload: {
      // Half the machine's memory, at most 4 GiB: what one halflife may hold before it refuses everything.
      memoryBudgetBytes: Math.min(4 * 2 ** 30, Math.floor(totalmem() / 2)),
      maxInflightBytes: 256 * 2 ** 20,
      maxQueuedBytes: 64 * 2 ** 20,
      maxEngineLagEvents: 5_000_000,
      shedLowAt: 0.6,
      shedNormalAt: 0.8,
    },
    rateLimits: { keyEventsPerS: 0, keyBurstEvents: 0, hotKeyEventsPerS: 0, hotKeyBurstEvents: 0, overflowPartition: null },
    metrics: { environment: 'development', service: 'halflife', team: 'unassigned', version: null },
    alerts: { evaluationIntervalMs: 15_000, rules: {}, allowedWebhookHosts: null },
    archive: { enabled: true, dir: null, rollSeconds: 60, rollBytes: 64 * 1024 * 1024, retentionDays: 0, compactFiles: 24 },
    history: { queryTimeoutMs: 30_000, maxRows: 100_000, memoryLimitMb: 1024 },
    nats: { servers: null, stream: 'HALFLIFE_EVENTS', subjectPrefix: 'halflife.events', replicas: 3, bucketPrefix: 'halflife', compression: 'deflate' },
    cluster: { role: 'all', leaseMs: 10_000 },
  };
}

const int = (minimum: number, maximum = Number.MAX_SAFE_INTEGER) => ({ type: 'integer', minimum, maximum });

/** JSON Schema of the config file; unknown keys are refused everywhere. */
export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dataDir: { type: 'string', minLength: 1 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    auth: { enum: ['auto', 'on', 'off'] },
    server: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: int(0, 65535),
        shutdownTimeoutMs: int(0),
        tlsCertFile: { type: ['string', 'null'] },
        tlsKeyFile: { type: ['string', 'null'] },
        maxLiveStreams: int(1),
        requestTimeoutMs: int(100, 3_600_000),
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: {
        backend: { enum: ['files', 'nats'] },
        partitions: int(1, 1024),
        fsync: { enum: ['always', 'interval', 'never'] },
        fsyncIntervalMs: int(1, 60_000),
        segmentBytes: int(1024, 2 ** 31),
        indexIntervalBytes: int(64),
        retention: {
          type: 'object',
          additionalProperties: false,
          properties: { maxAgeMs: int(0), maxBytesPerPartition: int(0) },
        },
        pinnedKeys: { type: 'object', additionalProperties: int(0, 1023) },
      },
    },
    ingest: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxBodyBytes: int(1024),
        maxEventBytes: int(64),
        maxDepth: int(1, 1000),
        maxValidationSteps: int(1000, 1_000_000_000),
        maxValidationMs: int(1, 60_000),
        maxEventsPerRequest: int(1, 1_000_000),
        maxEventTimeAheadMs: int(0),
        maxEventTimeBehindMs: int(0),
        unknownTypes: { enum: ['reject', 'accept'] },
        dedupWindowMs: int(0),
        dedupMaxIds: int(0),
        deadLetterRawBytes: int(0),
        deadLetterBytesPerS: int(0),
        deadLetterBurstBytes: int(1024),
        workers: int(0, 64),
        workerTimeoutMs: int(100, 600_000),
        priorities: { type: 'object', additionalProperties: { enum: ['high', 'normal', 'low'] } },
      },
    },
    schemas: {
      type: 'object',
      additionalProperties: false,
      properties: {
        dir: { type: ['string', 'null'] },
        compatibility: { enum: ['backward', 'none'] },
      },
    },
    overload: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memoryBudgetBytes: int(64 * 2 ** 20),
        maxInflightBytes: int(1024),
        maxQueuedBytes: int(1024),
        maxEngineLagEvents: int(1),
        shedLowAt: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        shedNormalAt: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      },
    },
    nats: {
      type: 'object',
      additionalProperties: false,
      properties: {
        servers: { anyOf: [{ type: 'null' }, { type: 'string', pattern: '^\\s*(nats|tls|wss?)://[^,\\s]+(\\s*,\\s*(nats|tls|wss?)://[^,\\s]+)*\\s*$' }] },
        stream: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
        subjectPrefix: { type: 'string', pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$' },
        replicas: int(1, 5),
        bucketPrefix: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,48}$' },
        compression: { enum: ['deflate', 'none'] },
      },
    },
    cluster: {
      type: 'object',
      additionalProperties: false,
      properties: {
        role: { enum: ['all', 'ingest', 'worker', 'query'] },
        leaseMs: int(1000, 600_000),
      },
    },
    alerts: {
      type: 'object',
      additionalProperties: false,
      properties: {
        evaluationIntervalMs: int(10, 3_600_000),
        rules: { type: 'object', additionalProperties: { type: 'object' } },
        allowedWebhookHosts: { anyOf: [{ type: 'null' }, { type: 'array', items: { type: 'string', minLength: 1, pattern: '^(\\*\\.)?[A-Za-z0-9._\\[\\]:-]+$' } }] },
      },
    },
    history: {
      type: 'object',
      additionalProperties: false,
      properties: { queryTimeoutMs: int(10, 3_600_000), maxRows: int(1, 10_000_000), memoryLimitMb: int(64, 1_048_576) },
    },
    archive: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        dir: { anyOf: [{ type: 'null' }, { type: 'string', minLength: 1 }] },
        rollSeconds: int(1, 86_400),
        rollBytes: int(1024, 2 ** 40),
        retentionDays: int(0, 100_000),
        compactFiles: int(2, 100_000),
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: {
        environment: { type: 'string', minLength: 1 },
        service: { type: 'string', minLength: 1 },
        team: { type: 'string', minLength: 1 },
        version: { type: ['string', 'null'], minLength: 1 },
      },
    },
    rateLimits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        keyEventsPerS: int(0),
        keyBurstEvents: int(0),
        hotKeyEventsPerS: int(0),
        hotKeyBurstEvents: int(0),
        overflowPartition: { type: ['integer', 'null'], minimum: 0, maximum: 1023 },
      },
    },
    engine: {
      type: 'object',
      additionalProperties: false,
      properties: { checkpointIntervalMs: int(50, 3_600_000), workers: int(1, 64), queryTimeoutMs: int(100, 600_000) },
    },
  },
} as const;
