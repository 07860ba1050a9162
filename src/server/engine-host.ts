import { Worker } from 'node:worker_threads';
import { HalflifeError, LifecycleState, type Logger } from '../core/index.js';
import type { LateEvent, RowQuery, TableInfo, TableRow, ViewInfo, ViewRow } from '../engine/index.js';
import type { Log } from '../log/index.js';
import type { QueryResult } from '../query/index.js';
import type { CatalogSnapshot, FromWorker, PartitionStatsWire, ToWorker, WireBatch, WorkerInit } from './engine-protocol.js';

import './errors.js';

export interface EngineHostOptions {
  readonly log: Log;
  readonly dataDir: string;
  readonly logger: Logger;
  /** The current schemas by stream, for planning views. */
  readonly catalog: () => CatalogSnapshot;
  readonly checkpointIntervalMs?: number;
  /** How often the worker learns the log's end offsets (default 20 ms). */
  readonly statsIntervalMs?: number;
}

/**
 * Runs the engine in a worker thread and talks to it: the same operations as `Engine`, asynchronous. Serves the
 * worker's log reads (records copied into one transferred buffer per batch) and offset commits. A worker that
 * dies is restarted; it restores its views from their checkpoints.
 */
export class EngineHost {
  readonly #o: EngineHostOptions;
  readonly #state = new LifecycleState('engine');
  #worker: Worker | undefined;
  #next = 1;
  readonly #calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #statsTimer: NodeJS.Timeout | undefined;
  #lastRecords = -1;
  #closing = false;

  constructor(options: EngineHostOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    await this.#spawn();
    this.#statsTimer = setInterval(() => this.#pushStats(), this.#o.statsIntervalMs ?? 20);
    this.#statsTimer.unref();
  }

  #spawn(): Promise<void> {
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const init: WorkerInit = {
      dataDir: this.#o.dataDir,
      partitions: this.#o.log.partitionCount,
      stats: this.#stats(),
      catalog: this.#o.catalog(),
      checkpointIntervalMs: this.#o.checkpointIntervalMs ?? 5000,
    };
    const url = new URL(`./engine-worker${ext}`, import.meta.url);
    // Run from source (tests, tsx), the worker must register the TypeScript loader in its own thread first.
    const worker =
      ext === '.ts'
        ? new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData: init })
        : new Worker(url, { workerData: init });
    this.#worker = worker;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') resolve();
        else this.#onMessage(m);
      });
      worker.on('error', (err) => {
        this.#o.logger.error({ err }, 'engine worker failed');
        reject(err);
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        for (const [id, c] of this.#calls) {
          c.reject(new HalflifeError('ENGINE_UNAVAILABLE', { reason: `worker exited with ${code}` }));
          this.#calls.delete(id);
        }
        reject(new Error(`engine worker exited with ${code} during start`));
        if (!this.#closing) {
          this.#o.logger.error({ code }, 'engine worker exited; restarting it from its checkpoints');
          setTimeout(() => void this.#spawn().catch((err: unknown) => this.#o.logger.error({ err }, 'engine worker restart failed')), 1000).unref();
        }
      });
    });
  }

  #stats(): PartitionStatsWire[] {
    return this.#o.log.stats().partitions.map((p) => ({ partition: p.partition, firstOffset: p.firstOffset, nextOffset: p.nextOffset, records: p.records, bytes: p.bytes }));
  }

  #pushStats(): void {
    const stats = this.#o.log.stats();
    if (stats.records === this.#lastRecords || this.#worker === undefined) return;
    this.#lastRecords = stats.records;
    this.#send({ type: 'stats', stats: this.#stats() });
  }

  #send(m: ToWorker, transfer?: ArrayBuffer[]): void {
    this.#worker?.postMessage(m, transfer);
  }

  #onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'rpc-result': {
        const c = this.#calls.get(m.id);
        this.#calls.delete(m.id);
        if (c === undefined) return;
        if (m.error !== undefined) c.reject(new HalflifeError(m.error.code, m.error.details, { message: m.error.message }));
        else c.resolve(m.result);
        break;
      }
      case 'read':
        this.#o.log.readBatch(m.partition, m.from, { maxRecords: m.maxRecords, maxBytes: m.maxBytes }).then(
          (batch) => {
            if (batch.count === 0) return this.#send({ type: 'read-result', id: m.id });
            // The read buffer is the batch's own: transfer it without a copy when it owns its whole ArrayBuffer
            // (never a slice of Node's shared pool), else copy it into one that can be transferred.
            const bytes = batch.buffer;
            const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length && bytes.length >= 4096;
            const data = owned ? (bytes.buffer as ArrayBuffer) : new Uint8Array(bytes).buffer;
            const wire: WireBatch = {
              buffer: data,
              byteOffset: 0,
              byteLength: bytes.length,
              offsets: batch.offsets,
              timestamps: batch.timestamps,
              valueStarts: batch.valueStarts,
              valueEnds: batch.valueEnds,
              keyStarts: batch.keyStarts,
              keyEnds: batch.keyEnds,
            };
            this.#send({ type: 'read-result', id: m.id, batch: wire }, [data]);
          },
          (err: unknown) => this.#send({ type: 'read-result', id: m.id, error: (err as Error).message }),
        );
        break;
      case 'commit':
        this.#o.log.commitOffsets(m.consumer, m.offsets).then(
          () => this.#send({ type: 'commit-result', id: m.id }),
          (err: unknown) => this.#send({ type: 'commit-result', id: m.id, error: (err as Error).message }),
        );
        break;
      case 'log':
        this.#o.logger[m.level](m.obj, m.msg);
        break;
      case 'ready':
        break;
    }
  }

  #call<T>(method: string, ...args: unknown[]): Promise<T> {
    this.#state.assertOpen();
    if (this.#worker === undefined) return Promise.reject(new HalflifeError('ENGINE_UNAVAILABLE', { reason: 'worker starting' }));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#send({ type: 'rpc', id, method, args });
    });
  }

  createView(name: string, sql: string, replace = false): Promise<ViewInfo> {
    this.#send({ type: 'catalog', catalog: this.#o.catalog() });
    return this.#call('createView', name, sql, replace);
  }
  dropView(name: string): Promise<void> {
    return this.#call('dropView', name);
  }
  names(): Promise<string[]> {
    return this.#call('names');
  }
  info(name: string): Promise<ViewInfo> {
    return this.#call('info', name);
  }
  infos(): Promise<ViewInfo[]> {
    return this.#call('infos');
  }
  rows(name: string, q: RowQuery = {}): Promise<ViewRow[]> {
    return this.#call('rows', name, q);
  }
  late(name: string): Promise<{ count: number; recent: LateEvent[] }> {
    return this.#call('late', name);
  }
  version(name: string): Promise<number> {
    return this.#call('version', name);
  }
  refreshMs(name: string): Promise<number> {
    return this.#call('refreshMs', name);
  }
  query(sql: string): Promise<QueryResult> {
    return this.#call('query', sql);
  }
  putTable(name: string, keyColumn: string, rows: TableRow[], replace: boolean): Promise<TableInfo> {
    return this.#call('putTable', name, keyColumn, rows, replace);
  }
  dropTable(name: string): Promise<void> {
    return this.#call('dropTable', name);
  }
  tableNames(): Promise<string[]> {
    return this.#call('tableNames');
  }
  tableInfo(name: string): Promise<TableInfo> {
    return this.#call('tableInfo', name);
  }
  tableRows(name: string): Promise<TableRow[]> {
    return this.#call('tableRows', name);
  }
  checkpoint(): Promise<void> {
    return this.#call('checkpoint');
  }

  /** Checkpoints every view and stops the worker. */
  close(): Promise<void> {
    const worker = this.#worker;
    const closing = worker === undefined ? Promise.resolve() : this.#call<void>('close');
    return this.#state.close(async () => {
      this.#closing = true;
      clearInterval(this.#statsTimer);
      if (worker === undefined) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      try {
        await closing;
      } catch (err) {
        this.#o.logger.error({ err }, 'engine did not close cleanly');
        await worker.terminate();
      }
      await exited;
    });
  }
}
