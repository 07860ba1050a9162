import type { WorkerLogLine } from '../core/index.js';
import type { LogReply, LogRequest, PartitionStatsWire } from '../log/index.js';

/** What the archive worker starts with. */
export interface ArchiveWorkerInit {
  readonly dir: string;
  readonly rollSeconds: number;
  readonly rollBytes: number;
  readonly retentionDays: number;
  readonly compactFiles: number;
  readonly partitions: number;
  readonly stats: PartitionStatsWire[];
  readonly endsSeenLocally: boolean;
  /** The current schema of each type. */
  readonly schemas: Record<string, unknown>;
}

export type ToArchiveWorker = LogReply | { type: 'schema'; eventType: string; schema: unknown } | { type: 'start' } | { type: 'close' };

export type FromArchiveWorker =
  | { type: 'ready' }
  | LogRequest
  | { type: 'status'; archived: number; lag: Record<number, number> }
  | WorkerLogLine;
