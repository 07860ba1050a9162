/** Messages between the server thread and ingest worker threads. */
import type { SchemaVersion } from '../schema/index.js';
import type { BodyFormat, CheckedEvents, CheckLimits, ShedLevel } from './event-checker.js';

export interface IngestWorkerInit {
  readonly limits: CheckLimits;
  /** The latest version of every type when the worker starts; later ones arrive as `schema` messages. */
  readonly schemas: readonly SchemaVersion[];
}

export type ToIngestWorker =
  | { type: 'schema'; version: SchemaVersion }
  | { type: 'check'; id: number; body: ArrayBuffer; byteOffset: number; byteLength: number; format: BodyFormat; receivedAt: number; allowedTypes: readonly string[] | null; shed: ShedLevel };

export type FromIngestWorker =
  | { type: 'ready' }
  | ({
      type: 'checked';
      id: number;
      /** The accepted records, back to back, in a transferred ArrayBuffer. */
      records: ArrayBuffer;
      byteOffset: number;
      byteLength: number;
      ends: Int32Array;
    } & Omit<CheckedEvents, 'records' | 'ends'>)
  | { type: 'failed'; id: number; message: string };
