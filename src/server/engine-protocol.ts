/** Messages between the server thread and the engine worker thread. */

/** A log batch as it crosses threads: the columns, and the bytes in a transferred ArrayBuffer. */
export interface WireBatch {
  readonly buffer: ArrayBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
  readonly offsets: Float64Array;
  readonly timestamps: Float64Array;
  readonly valueStarts: Uint32Array;
  readonly valueEnds: Uint32Array;
  readonly keyStarts: Int32Array;
  readonly keyEnds: Int32Array;
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
  /** This worker's place among `workers`; it consumes the partitions p with p % workers === index. */
  readonly index: number;
  readonly workers: number;
  readonly dataDir: string;
  readonly partitions: number;
  readonly stats: PartitionStatsWire[];
  readonly catalog: CatalogSnapshot;
  readonly checkpointIntervalMs: number;
  readonly queryTimeoutMs: number;
}

export type ToWorker =
  | { type: 'rpc'; id: number; method: string; args: unknown[] }
  | { type: 'read-result'; id: number; batch?: WireBatch; error?: string }
  | { type: 'commit-result'; id: number; error?: string }
  | { type: 'stats'; stats: PartitionStatsWire[] }
  | { type: 'catalog'; catalog: CatalogSnapshot };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'rpc-result'; id: number; result?: unknown; error?: { code: string; message: string; details: Record<string, unknown> } }
  | { type: 'read'; id: number; partition: number; from: number; maxRecords: number; maxBytes: number }
  | { type: 'commit'; id: number; consumer: string; offsets: Record<number, number> }
  | { type: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; obj: Record<string, unknown>; msg: string | undefined };
