/** The wire contract of the halflife HTTP API (v1). This module imports nothing. */

/** An event as sent to POST /v1/events. */
export interface EventEnvelope {
  /** Event type; validated against the latest schema registered for it. */
  type: string;
  /** The payload; its fields are what schemas validate and views query. */
  data: Record<string, unknown>;
  /** Idempotency id: a repeat within the dedup window (default 10 min) is acknowledged but not stored. */
  id?: string;
  /** Partition key: events with the same key keep their order. */
  key?: string;
  /** Event time, epoch ms or ISO-8601. */
  ts?: number | string;
}

export interface EventError {
  index: number;
  code: string;
  message: string;
  path: string;
}

export interface IngestResponse {
  accepted: number;
  rejected: number;
  duplicates: number;
  /** Events shed by overload (code OVERLOADED in `errors`): not stored; send them again after Retry-After. */
  shed: number;
  /** The first 100 errors, by index; `errorsOmitted` counts the rest (absent when none were left out). */
  errors: EventError[];
  errorsOmitted?: number;
  /** Rejected events whose dead letter was not kept (the sender is past its dead-letter budget). */
  deadLettersDropped?: number;
}

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

export interface SchemaSummary {
  type: string;
  latestVersion: number;
  versions: number;
  compatibility: 'backward' | 'none';
}

export interface SchemaVersion {
  type: string;
  version: number;
  schema: unknown;
  registeredAt: string;
}

export interface SchemaDetail extends SchemaVersion {
  compatibility: 'backward' | 'none';
  versions: number[];
}

export interface RegisterResponse {
  type: string;
  version: number;
  created: boolean;
}

export interface PartitionStats {
  partition: number;
  firstOffset: number;
  nextOffset: number;
  records: number;
  bytes: number;
}

export interface StreamStats {
  records: number;
  bytes: number;
  partitions: readonly PartitionStats[];
}

/** `GET /v1/cluster`: the processes, the log's partitions and (on NATS) the servers behind them, with warnings. */
export interface ClusterStatus {
  backend: 'files' | 'nats';
  node: string;
  nodes: readonly { id: string; host: string; pid: number; version: string; role: string; startedAt: string; heartbeatAgeMs: number }[];
  nats?: {
    servers: string;
    serverVersion: string;
    features: Record<string, boolean>;
    stream: { name: string; replicas: number; messages: number; bytes: number; cluster: string | null; leader: string | null; peers: readonly { name: string; current: boolean; lagMessages: number; offline: boolean }[] };
  };
  /** `owner`: the process running the partition (null while it moves); on NATS with its lease's token and age. */
  partitions: readonly { partition: number; firstOffset: number; nextOffset: number; records: number; owner: string | null; leaseToken?: number; leaseAgeMs?: number; lag: Record<string, number> }[];
  warnings: readonly string[];
}

/** A stored event as read back from the log. */
export interface StoredEvent {
  partition: number;
  offset: number;
  type: string;
  data: Record<string, unknown>;
  id?: string;
  key?: string;
  event_time?: number;
  received_at: number;
  schema_version: number;
  /** Set on events appended by a dead-letter replay: the dead letter's id. */
  replay_of?: number;
}

export interface EventsPage {
  records: StoredEvent[];
  /** Cursor to pass as `cursor` to continue. */
  next: string;
}

export interface DeadLetter {
  id: number;
  raw: string;
  raw_truncated: boolean;
  code: string;
  message: string;
  path: string;
  type: string | null;
  schema_version: number | null;
  received_at: number;
  source: { address: string };
  replayed: boolean;
}

export interface DeadLettersPage {
  deadletters: DeadLetter[];
  next: number | null;
}

export interface ReplayResponse {
  replayed: number;
  failed: number;
  skipped: number;
  /** Letters whose event the key that sent it may not write: never stored by a replay. */
  refused: number;
}

export interface DeadLetterQuery {
  /** received_at as epoch ms (default) or an ISO-8601 string. */
  time?: TimeFormat;
  type?: string;
  code?: string;
  /** Epoch ms or ISO-8601. */
  since?: number | string;
  limit?: number;
  from?: number;
}

/** Times in answers: epoch ms (the default) or ISO-8601 strings (`time: 'iso'`). */
export type TimeFormat = 'ms' | 'iso';

export interface EventsQuery {
  /** received_at and event_time as epoch ms (default) or ISO-8601 strings. */
  time?: TimeFormat;
  partition?: number;
  from?: number;
  since?: number | string;
  cursor?: string;
  type?: string;
  limit?: number;
}

export interface ViewInfo {
  name: string;
  sql: string;
  source: string;
  window: { kind: 'none' } | { kind: 'tumble'; sizeMs: number } | { kind: 'hop'; slideMs: number; sizeMs: number } | { kind: 'session'; gapMs: number };
  time: 'received_at' | 'event_time';
  columns: readonly string[];
  rows: number;
  memoryBytes: number;
  /** Records of the log not yet applied. */
  lag: number;
  /** 0..1: share of the backfill done. */
  progress: number;
  watermark: number | null;
  lateEvents: number;
  lastCheckpointMs: number | null;
  memoryBudgetBytes: number;
  /** Closed rows dropped to stay within the memory budget. */
  evictedRows: number;
  /** Next offset the view applies, per partition. */
  offsets: readonly number[];
}

export interface ViewRowsQuery {
  /** Time columns (window_start, window_end, …) as epoch ms (default) or ISO-8601 strings. */
  time?: TimeFormat;
  /** Key column filters, e.g. { article_id: 'a1' }. */
  keys?: Record<string, string>;
  from?: number | string;
  to?: number | string;
  latest?: boolean;
  /** A column, `-` prefixed (or ` desc` suffixed) for descending. */
  order?: string;
  limit?: number;
}

export interface QueryResponse {
  columns: string[];
  rows: Record<string, unknown>[];
}

/** The answer of SQL over history (POST /v1/sql). */
export interface SqlResponse {
  /** Names and DuckDB types, in the order of each row's values. */
  columns: { name: string; type: string }[];
  rows: unknown[][];
  /** More rows than history.maxRows: the first ones are given. */
  truncated: boolean;
  /** Events read from the log for the query (not archived yet), and archive files read. */
  tailEvents: number;
  files: number;
}

/** What an API key may do: `write` ingests, `read` reads, `admin` does everything. */
export type KeyScope = 'write' | 'read' | 'admin';

/** An API key as listed (never its secret). */
export interface ApiKeyInfo {
  id: string;
  name: string;
  scopes: KeyScope[];
  /** Event types a write key may send (null: any). */
  types: string[] | null;
  /** Browser origins a write key may be used from (null: any). */
  origins: string[] | null;
  /** The key's own rate limit, events/s and burst (null: the server's default). */
  eventsPerS: number | null;
  burstEvents: number | null;
  createdAt: string;
}

export interface NewApiKey {
  name?: string;
  scopes: KeyScope[];
  types?: string[];
  origins?: string[];
  eventsPerS?: number;
  burstEvents?: number;
}

/** A created key: `key` is shown this once. */
export interface CreatedApiKey extends ApiKeyInfo {
  key: string;
}
