import { availableParallelism } from 'node:os';
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
}

export interface LogConfig {
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
  unknownTypes: 'reject' | 'accept';
  dedupWindowMs: number;
  dedupMaxIds: number;
  deadLetterRawBytes: number;
  /** Worker threads that parse and check large request bodies (0: the server thread does). */
  workers: number;
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
}

export interface HalflifeConfig {
  dataDir: string;
  logLevel: LogLevel;
  auth: AuthMode;
  server: ServerConfig;
  log: LogConfig;
  ingest: IngestConfig;
  schemas: SchemasConfig;
  engine: EngineConfig;
}

export function defaultConfig(): HalflifeConfig {
  return {
    dataDir: './halflife-data',
    logLevel: 'info',
    auth: 'auto',
    server: { host: '127.0.0.1', port: 7070, shutdownTimeoutMs: 10_000, tlsCertFile: null, tlsKeyFile: null },
    log: {
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
      unknownTypes: 'reject',
      dedupWindowMs: 10 * 60 * 1000,
      dedupMaxIds: 1_000_000,
      deadLetterRawBytes: 16 * 1024,
      // One per core, at most four: parsing is the largest cost and the server thread has little else to do.
      workers: Math.max(1, Math.min(4, availableParallelism())),
    },
    schemas: { dir: null, compatibility: 'backward' },
    engine: { checkpointIntervalMs: 5000, workers: 1 },
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
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: {
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
        unknownTypes: { enum: ['reject', 'accept'] },
        dedupWindowMs: int(0),
        dedupMaxIds: int(0),
        deadLetterRawBytes: int(0),
        workers: int(0, 64),
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
    engine: {
      type: 'object',
      additionalProperties: false,
      properties: { checkpointIntervalMs: int(50, 3_600_000), workers: int(1, 64) },
    },
  },
} as const;
