/** Messages between the server thread and the engine worker thread. */
import type { LogReply, LogRequest, PartitionStatsWire } from '../log/index.js';

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
  /** The view definitions (the host keeps them in the shared state). */
  readonly views: { name: string; sql: string }[];
  readonly checkpointIntervalMs: number;
  readonly queryTimeoutMs: number;
}

export type ToWorker =
  | { type: 'rpc'; id: number; method: string; args: unknown[] }
  | LogReply
  | { type: 'catalog'; catalog: CatalogSnapshot };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'rpc-result'; id: number; result?: unknown; error?: { code: string; message: string; details: Record<string, unknown> } }
  | LogRequest
  | { type: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; obj: Record<string, unknown>; msg: string | undefined };
