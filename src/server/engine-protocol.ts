/** Messages between the server thread and the engine worker thread. */

/** A batch of log records copied into one transferable buffer. */
export interface RecordBatch {
  readonly buffer: ArrayBuffer;
  readonly offsets: Float64Array;
  readonly timestamps: Float64Array;
  /** Byte start of each record's value in `buffer`; the last entry is the end. */
  readonly bounds: Uint32Array;
  readonly keys: (string | undefined)[];
}

export interface PartitionStatsWire {
  partition: number;
  firstOffset: number;
  nextOffset: number;
  records: number;
  bytes: number;
}

/** The schemas the planner checks columns against, by stream. */
export type CatalogSnapshot = Record<string, unknown>;

export interface WorkerInit {
  readonly dataDir: string;
  readonly partitions: number;
  readonly stats: PartitionStatsWire[];
  readonly catalog: CatalogSnapshot;
  readonly checkpointIntervalMs: number;
}

export type ToWorker =
  | { type: 'rpc'; id: number; method: string; args: unknown[] }
  | { type: 'read-result'; id: number; batch?: RecordBatch; error?: string }
  | { type: 'commit-result'; id: number; error?: string }
  | { type: 'stats'; stats: PartitionStatsWire[] }
  | { type: 'catalog'; catalog: CatalogSnapshot };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'rpc-result'; id: number; result?: unknown; error?: { code: string; message: string; details: Record<string, unknown> } }
  | { type: 'read'; id: number; partition: number; from: number; maxRecords: number; maxBytes: number }
  | { type: 'commit'; id: number; consumer: string; offsets: Record<number, number> }
  | { type: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; obj: Record<string, unknown>; msg: string | undefined };
