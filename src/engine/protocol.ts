import type { WorkerLogLine } from '../core/index.js';
/** The engine's worker threads: what they are told at start, the typed API they serve, and the messages that carry it. */
import type { HistogramSnapshot } from '../core/index.js';
import type { LogReply, LogRequest, PartitionStatsWire } from '../log/index.js';
import type { PartialGroup, RowQuery, ViewInfo, ViewRow } from './engine.js';
import type { TableInfo, TableRow } from './tables.js';
import type { LateEvent } from './view-state.js';

/** The schemas the planner checks columns against, by stream. */
export type CatalogSnapshot = Record<string, unknown>;

export interface WorkerInit {
  /** This worker's place among `workers`; it consumes the partitions p with p % workers === index. */
  readonly index: number;
  readonly workers: number;
  /** The partitions it consumes, when the process owns only some (a cluster); null: p % workers === index. */
  readonly owned: number[] | null;
  /** Checkpoints go to the host (`CheckpointStore`, shared by the cluster's processes), not to the data folder. */
  readonly hostCheckpoints: boolean;
  readonly dataDir: string;
  readonly partitions: number;
  readonly stats: PartitionStatsWire[];
  /** The host's log knows only the ends it has seen (JetStream): see `LogReader.endsSeenLocally`. */
  readonly endsSeenLocally: boolean;
  readonly catalog: CatalogSnapshot;
  /** The view definitions and static tables (the host keeps them in the shared state). */
  readonly views: { name: string; sql: string }[];
  readonly tables: { name: string; keyColumn: string; rows: TableRow[] }[];
  readonly checkpointIntervalMs: number;
  readonly queryTimeoutMs: number;
  /**
   * Modules (URLs) whose `engineMethods(engine, init)` adds methods served next to the `EngineApi`: how rooms above
   * the engine (ad-hoc SELECT in `query`) run code in its thread without the engine importing them.
   */
  readonly extensions: string[];
}

/** What an engine worker serves, method by method: the host calls it with `call(method, ...args)`, checked by type. */
export interface EngineApi {
  checkView(name: string, sql: string): void;
  createView(name: string, sql: string, replace: boolean): ViewInfo;
  dropView(name: string): void;
  names(): string[];
  info(name: string): ViewInfo;
  infos(): ViewInfo[];
  rows(name: string, q: RowQuery, foreign?: PartialGroup[][]): ViewRow[];
  partials(name: string, q: RowQuery): PartialGroup[];
  late(name: string): { count: number; recent: readonly LateEvent[] };
  version(name: string): number;
  refreshMs(name: string): number;
  putTable(name: string, keyColumn: string, rows: TableRow[], replace: boolean): TableInfo;
  dropTable(name: string): void;
  tableNames(): string[];
  tableInfo(name: string): TableInfo;
  tableRows(name: string): TableRow[];
  checkpoint(): void;
  /** Changes the partitions it consumes (see `Engine.own`). */
  own(partitions: number[], clean: boolean): void;
  freshness(): HistogramSnapshot;
  lags(): { name: string; lag: number }[];
  close(): void;
}

/** The worker's implementation of the API: each method may answer at once or later. */
export type EngineApiImpl = { [K in keyof EngineApi]: (...args: Parameters<EngineApi[K]>) => ReturnType<EngineApi[K]> | Promise<ReturnType<EngineApi[K]>> };

/** What an extension module exports: methods run in the engine's thread, by name. */
export type EngineExtension = (engine: import('./engine.js').Engine, init: WorkerInit) => Record<string, (...args: never[]) => unknown>;

export type ToWorker =
  | { type: 'rpc'; id: number; method: keyof EngineApi | `ext:${string}`; args: unknown[] }
  | LogReply
  | { type: 'catalog'; catalog: CatalogSnapshot }
  | { type: 'store-result'; id: number; bytes?: Uint8Array; error?: WireError };

/** An error as it crosses between threads. */
export interface WireError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'rpc-result'; id: number; result?: unknown; error?: WireError }
  | LogRequest
  | { type: 'store'; id: number; op: 'load' | 'save' | 'remove'; name: string; partitions: number[]; bytes?: Uint8Array; live?: number[] }
  | WorkerLogLine;
