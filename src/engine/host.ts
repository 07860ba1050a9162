import type { Worker } from 'node:worker_threads';
import { BucketHistogram, FRESHNESS_BUCKETS_S, HalflifeError, LifecycleState, startModuleWorker, type HistogramSnapshot, type Logger } from '../core/index.js';
import { LogPort, statsWire, watchLog, type Log } from '../log/index.js';
import type { PartialGroup, RowQuery, ViewInfo, ViewRow } from './engine.js';
import './errors.js';
import type { CatalogSnapshot, EngineApi, FromWorker, ToWorker, WireError, WorkerInit } from './protocol.js';
import type { CheckpointStore } from './view-store.js';
import type { TableInfo, TableRow } from './tables.js';
import type { StoredTable, TableStore } from './table-store.js';
import type { ViewDefinitions } from './view-definitions.js';
import type { LateEvent } from './view-state.js';

/** The answer of an API method, as the host receives it. */
type Answer<K extends keyof EngineApi> = Promise<Awaited<ReturnType<EngineApi[K]>>>;

export interface EngineHostOptions {
  readonly log: Log;
  readonly dataDir: string;
  readonly logger: Logger;
  /** The current schemas by stream, for planning views. */
  readonly catalog: () => CatalogSnapshot;
  /** The view definitions and static tables, in the shared state (started by the host). */
  readonly definitions: ViewDefinitions;
  readonly tables: TableStore;
  readonly checkpointIntervalMs?: number;
  readonly queryTimeoutMs?: number;
  /** Engine worker threads; worker i consumes the partitions p with p % workers === i (default 1). */
  readonly workers?: number;
  /** Modules that add methods to the workers (`WorkerInit.extensions`), called with `extension`. */
  readonly extensions?: readonly string[];
  /**
   * The partitions this process consumes at start (default: all). A cluster starts with none and is given its share
   * by its leases (`setPartitions`).
   */
  readonly partitions?: readonly number[];
  /** Where checkpoints go when they must outlive this machine (default: `<dataDir>/views`). */
  readonly checkpoints?: CheckpointStore;
  /** The partial groups other processes hold (a cluster): merged into every read. */
  readonly remote?: RemotePartials;
}

/** Partial groups of a view held by other processes, one list per engine there (see the cluster room). */
export interface RemotePartials {
  /** The other processes' groups, and the epoch of this process's partitions they complement. */
  partials(name: string, q: RowQuery): Promise<{ groups: PartialGroup[][]; epoch: number }>;
  /** Whether this process still runs the partitions of that epoch (its own state read since then fits them). */
  unchanged(epoch: number): boolean;
}

/** One engine worker thread: spawning, restarts, RPC, and serving its log reads and offset commits. */
class WorkerLink {
  readonly #o: EngineHostOptions;
  readonly #index: number;
  readonly #count: number;
  #worker: Worker | undefined;
  /**
   * Set when the worker said it is ready (its views and checkpoints loaded). Until then calls are refused: a
   * restarted worker would answer "no view named …" for views it has not loaded yet.
   */
  #ready = false;
  #next = 1;
  readonly #calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  closing = false;
  #logPort: LogPort | undefined;
  /** Times this worker exited unasked and was started again. */
  restarts = 0;

  readonly #tables: () => StoredTable[];
  /** The partitions it consumes (null: p % workers === index, all of the process's). */
  share: number[] | null;

  constructor(options: EngineHostOptions, index: number, count: number, tables: () => StoredTable[], share: number[] | null) {
    this.#o = options;
    this.#index = index;
    this.#count = count;
    this.#tables = tables;
    this.share = share;
  }

  get running(): boolean {
    return this.#worker !== undefined && this.#ready;
  }

  spawn(): Promise<void> {
    const init: WorkerInit = {
      index: this.#index,
      workers: this.#count,
      owned: this.share,
      hostCheckpoints: this.#o.checkpoints !== undefined,
      dataDir: this.#o.dataDir,
      partitions: this.#o.log.partitionCount,
      stats: statsWire(this.#o.log),
      endsSeenLocally: this.#o.log.endsSeenLocally === true,
      catalog: this.#o.catalog(),
      views: this.#o.definitions.list(),
      tables: this.#tables(),
      checkpointIntervalMs: this.#o.checkpointIntervalMs ?? 5000,
      queryTimeoutMs: this.#o.queryTimeoutMs ?? 10_000,
      extensions: [...(this.#o.extensions ?? [])],
    };
    const worker = startModuleWorker('worker', import.meta.url, init);
    this.#worker = worker;
    // Replies go to this thread only: a read finishing after it died must not reach its successor (their ids restart).
    this.#logPort = new LogPort(this.#o.log, (m, transfer) => worker.postMessage(m, transfer));
    this.#ready = false;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          // Its partitions changed while it loaded (it could not be told): it runs the new ones, dropping what it
          // applied meanwhile (some may have gone to another process), before it serves anything.
          if (init.owned !== this.share && this.#worker === worker) {
            const id = this.#next++;
            this.#calls.set(id, {
              resolve: () => {
                if (this.#worker === worker) this.#ready = true;
                resolve();
              },
              reject: (err: unknown) => {
                // Restarted: it starts again with the current share.
                this.#o.logger.error({ err, worker: this.#index }, 'engine worker could not take its partitions; restarting it');
                void worker.terminate();
              },
            });
            this.send({ type: 'rpc', id, method: 'own', args: [this.share ?? this.#allOfIndex(), false] });
            return;
          }
          if (this.#worker === worker) this.#ready = true;
          resolve();
        } else this.#onMessage(m);
      });
      worker.on('error', (err) => {
        this.#o.logger.error({ err, worker: this.#index }, 'engine worker failed');
        reject(err);
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) {
          this.#worker = undefined;
          this.#ready = false;
        }
        for (const [id, c] of this.#calls) {
          c.reject(new HalflifeError('ENGINE_UNAVAILABLE', { reason: `worker exited with ${code}` }));
          this.#calls.delete(id);
        }
        reject(new Error(`engine worker exited with ${code} during start`));
        if (!this.closing) {
          this.restarts++;
          this.#o.logger.error({ code, worker: this.#index }, 'engine worker exited; restarting it from its checkpoints');
          setTimeout(() => void this.spawn().catch((err: unknown) => this.#o.logger.error({ err }, 'engine worker restart failed')), 1000).unref();
        }
      });
    });
  }

  /** Stops the thread as a crash would (tests); it is restarted. */
  async terminate(): Promise<void> {
    await this.#worker?.terminate();
  }

  send(m: ToWorker, transfer?: ArrayBuffer[]): void {
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
      case 'log-read':
      case 'log-commit':
      case 'log-committed':
        this.#logPort?.handle(m);
        break;
      case 'log':
        this.#o.logger[m.level]({ ...m.obj, worker: this.#index }, m.msg);
        break;
      case 'store':
        this.#store(m);
        break;
      case 'ready':
        break;
    }
  }

  /** A checkpoint read or write of the worker, done by the host's `checkpoints` store; the answer goes to this thread only. */
  #store(m: Extract<FromWorker, { type: 'store' }>): void {
    const worker = this.#worker;
    const store = this.#o.checkpoints;
    const work =
      store === undefined
        ? Promise.reject(new HalflifeError('INTERNAL', { reason: 'no checkpoint store in the host' }))
        : m.op === 'load'
          ? store.load(m.name, m.partitions[0])
          : m.op === 'save'
            ? store.save(m.name, m.partitions[0], m.bytes!, m.live ?? m.partitions).then(() => undefined)
            : store.remove(m.name, m.partitions).then(() => undefined);
    work.then(
      (bytes) => worker?.postMessage({ type: 'store-result', id: m.id, bytes } satisfies ToWorker),
      (err: unknown) => {
        const e = err instanceof HalflifeError ? err : new HalflifeError('INTERNAL', { reason: (err as Error).message });
        const error: WireError = { code: e.code, message: e.message, details: (e.details ?? {}) as Record<string, unknown> };
        worker?.postMessage({ type: 'store-result', id: m.id, error } satisfies ToWorker);
      },
    );
  }

  /** The partitions p % workers === index (the share when the process runs them all). */
  #allOfIndex(): number[] {
    return Array.from({ length: this.#o.log.partitionCount }, (_, p) => p).filter((p) => p % this.#count === this.#index);
  }

  call<K extends keyof EngineApi>(method: K, ...args: Parameters<EngineApi[K]>): Answer<K> {
    return this.#rpc(method, args) as Answer<K>;
  }

  /** A method an extension added (`ext:<name>`). */
  extension(name: string, args: unknown[]): Promise<unknown> {
    return this.#rpc(`ext:${name}`, args);
  }

  #rpc(method: keyof EngineApi | `ext:${string}`, args: unknown[]): Promise<unknown> {
    if (this.#worker === undefined || !this.#ready) return Promise.reject(new HalflifeError('ENGINE_UNAVAILABLE', { reason: 'worker starting' }));
    const id = this.#next++;
    return new Promise<unknown>((resolve, reject) => {
      this.#calls.set(id, { resolve, reject });
      this.send({ type: 'rpc', id, method, args });
    });
  }

  async stop(): Promise<void> {
    this.closing = true;
    const worker = this.#worker;
    if (worker === undefined) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    try {
      await this.call('close');
    } catch (err) {
      this.#o.logger.error({ err, worker: this.#index }, 'engine worker did not close cleanly');
      await worker.terminate();
    }
    await exited;
  }
}

/**
 * Runs the engine in worker threads and talks to them: the same operations as `Engine`, asynchronous. With
 * several workers each owns a share of the partitions and keeps partial aggregates; reads gather the partials of
 * the other workers and the first worker merges them, so a hot key spread over partitions is aggregated in
 * parallel and answered as one. A worker that dies is restarted and restores its views from its checkpoints.
 */
export class EngineHost {
  readonly #o: EngineHostOptions;
  readonly #state = new LifecycleState('engine');
  readonly #links: WorkerLink[];
  readonly #watch = new AbortController();
  /** The static tables as stored (what a worker starting or restarting loads). */
  readonly #tables = new Map<string, StoredTable>();

  /** The partitions this process consumes (undefined: all). */
  #partitions: readonly number[] | undefined;

  constructor(options: EngineHostOptions) {
    this.#o = options;
    const n = Math.max(1, options.workers ?? 1);
    this.#partitions = options.partitions === undefined ? undefined : [...options.partitions].sort((a, b) => a - b);
    this.#links = [];
    for (let i = 0; i < n; i++) this.#links.push(new WorkerLink(options, i, n, () => [...this.#tables.values()], null));
    for (const [i, l] of this.#links.entries()) l.share = this.#shareOf(i, this.#partitions);
  }

  /**
   * Worker i's partitions: a function of the partition alone, so a partition never moves between the threads of a
   * process (they change partitions at once, not one after another). Mixed by a multiplicative hash, since the
   * partitions of a process in a cluster are themselves every k-th (p % threads would put them all on one thread).
   */
  #shareOf(i: number, partitions: readonly number[] | undefined): number[] | null {
    const n = this.#links.length;
    return partitions === undefined ? null : partitions.filter((p) => (Math.imul(p + 1, 0x9e3779b1) >>> 0) % n === i);
  }

  /** The partitions this process consumes, ascending (all when it was given none to keep). */
  get partitions(): number[] {
    return this.#partitions === undefined ? Array.from({ length: this.#o.log.partitionCount }, (_, p) => p) : [...this.#partitions];
  }

  /**
   * Changes the partitions this process consumes (see `Engine.own`). `clean`: a handover, every worker giving some
   * up checkpoints first; not clean: some were taken from it (a lease lost), and what it applied of them since the
   * last checkpoint is dropped. Resolves once every worker runs its new share.
   */
  async setPartitions(partitions: readonly number[], clean: boolean): Promise<void> {
    this.#state.assertOpen();
    const next = [...new Set(partitions)].sort((a, b) => a - b);
    this.#partitions = next;
    await Promise.all(
      this.#links.map(async (l, i) => {
        const share = this.#shareOf(i, next)!;
        const before = l.share ?? Array.from({ length: this.#o.log.partitionCount }, (_, p) => p).filter((p) => p % this.#links.length === i);
        if (share.length === before.length && share.every((p, j) => p === before[j])) return;
        // A worker starting (or restarting) takes the new share once it is ready (see `spawn`).
        if (!l.running) {
          l.share = share;
          return;
        }
        await l.call('own', share, clean);
        // Only once it runs them: a change that failed (a checkpoint refused) is tried again by the next call.
        l.share = share;
      }),
    );
  }

  /** Worker threads running the engine. */
  /** The static tables as they are now (SQL over history joins them). */
  storedTables(): StoredTable[] {
    return [...this.#tables.values()];
  }

  get workers(): number {
    return this.#links.length;
  }

  /** Engine worker threads running now (fewer while one that exited is restarted). */
  get running(): number {
    return this.#links.filter((l) => l.running).length;
  }

  /** Times an engine worker exited unasked (a crash) and was restarted, since start. */
  get restarts(): number {
    return this.#links.reduce((n, l) => n + l.restarts, 0);
  }

  /** Stops engine worker `i` as a crash would (tests); it is restarted from its checkpoints. */
  terminateWorker(i: number): Promise<void> {
    return this.#links[i]?.terminate() ?? Promise.resolve();
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    // A view created, replaced or dropped by another process sharing the state: the same here.
    await this.#o.definitions.start((name, sql) => {
      const catalog = this.#o.catalog();
      for (const l of this.#links) l.send({ type: 'catalog', catalog });
      const work = sql === undefined ? Promise.all(this.#links.map((l) => l.call('dropView', name).catch(() => {}))) : Promise.all(this.#links.map((l) => l.call('createView', name, sql, true)));
      work.then(
        () => this.#o.logger.info({ view: name }, sql === undefined ? 'view dropped elsewhere: dropped here' : 'view defined elsewhere: running it here'),
        (err: unknown) => this.#o.logger.error({ err, view: name }, 'a view defined elsewhere cannot run here'),
      );
    });
    // A table put or dropped by another process: the same here.
    for (const t of await this.#o.tables.start((name, table) => {
      if (table === undefined) this.#tables.delete(name);
      else this.#tables.set(name, table);
      const work = table === undefined ? Promise.all(this.#links.map((l) => l.call('dropTable', name).catch(() => {}))) : Promise.all(this.#links.map((l) => l.call('putTable', name, table.keyColumn, table.rows, true)));
      work.then(
        () => this.#o.logger.info({ table: name }, table === undefined ? 'table dropped elsewhere: dropped here' : 'table put elsewhere: in force here'),
        (err: unknown) => this.#o.logger.error({ err, table: name }, 'a table changed elsewhere could not be applied here'),
      );
    })) {
      this.#tables.set(t.name, t);
    }
    // The workers learn of new records as they are appended (they wait on them with `tail`): watched before they
    // start, so nothing appended while they load their views goes unreported.
    watchLog(
      this.#o.log,
      () => {
        const stats = statsWire(this.#o.log);
        for (const l of this.#links) l.send({ type: 'log-stats', stats });
      },
      this.#watch.signal,
    );
    await Promise.all(this.#links.map((l) => l.spawn()));
  }

  get #first(): WorkerLink {
    return this.#links[0];
  }

  #all<K extends keyof EngineApi>(method: K, ...args: Parameters<EngineApi[K]>): Promise<Awaited<ReturnType<EngineApi[K]>>[]> {
    this.#state.assertOpen();
    return Promise.all(this.#links.map((l) => l.call(method, ...args)));
  }

  /** Whether reads merge partial groups (several workers, or other processes): else the first worker answers alone. */
  get distributed(): boolean {
    return this.#links.length > 1 || this.#o.remote !== undefined;
  }

  /**
   * Runs `use` with the partial groups of a view from every worker but the first, and from the other processes of a
   * cluster (what the first merges with its own). In a cluster, again if this process's partitions changed
   * meanwhile: its own state must be read for the partitions the other processes' answers complement.
   */
  async withForeign<T>(name: string, q: RowQuery, use: (foreign: PartialGroup[][]) => Promise<T>): Promise<T> {
    const partialQuery: RowQuery = { keys: q.keys, fromMs: q.fromMs, toMs: q.toMs };
    const others = () => Promise.all(this.#links.slice(1).map((l) => l.call('partials', name, partialQuery)));
    const remote = this.#o.remote;
    if (remote === undefined) return use(await others());
    for (let attempt = 0; ; attempt++) {
      const { groups, epoch } = await remote.partials(name, partialQuery);
      const out = await use([...(await others()), ...groups]);
      if (remote.unchanged(epoch)) return out;
      if (attempt >= 20) throw new HalflifeError('ENGINE_UNAVAILABLE', { reason: 'the partitions of this process kept moving during the read; retry shortly' });
    }
  }

  /** This process's partial groups of a view, one list per worker (what other processes of a cluster merge). */
  localPartials(name: string, q: RowQuery = {}): Promise<PartialGroup[][]> {
    this.#state.assertOpen();
    const partialQuery: RowQuery = { keys: q.keys, fromMs: q.fromMs, toMs: q.toMs };
    return Promise.all(this.#links.map((l) => l.call('partials', name, partialQuery)));
  }

  /** Calls a method an extension added, on the first worker (which merges what `foreign` gathers). */
  extension(name: string, ...args: unknown[]): Promise<unknown> {
    this.#state.assertOpen();
    return this.#first.extension(name, args);
  }

  async createView(name: string, sql: string, replace = false): Promise<ViewInfo> {
    this.#state.assertOpen();
    const catalog = this.#o.catalog();
    for (const l of this.#links) l.send({ type: 'catalog', catalog });
    // The first worker checks the name and plans the SQL; the definition goes to the shared state (where a second
    // process creating the same name loses with VIEW_EXISTS), then every worker runs it.
    await this.#first.call('checkView', name, sql);
    const defs = this.#o.definitions;
    const replacing = replace || /^\s*create\s+or\s+replace/i.test(sql);
    if (defs.has(name) && !replacing) throw new HalflifeError('VIEW_EXISTS', { name });
    if (replacing) await defs.put(name, sql);
    else await defs.create(name, sql);
    await Promise.all(this.#links.map((l) => l.call('createView', name, sql, true)));
    return this.info(name);
  }

  async dropView(name: string): Promise<void> {
    this.#state.assertOpen();
    if (!this.#o.definitions.has(name)) throw new HalflifeError('VIEW_NOT_FOUND', { name });
    await this.#o.definitions.remove(name);
    await Promise.all(this.#links.map((l) => l.call('dropView', name).catch(() => {})));
  }

  names(): Promise<string[]> {
    this.#state.assertOpen();
    return this.#first.call('names');
  }

  /** A view's figures summed over the workers (rows counts partial rows; offsets come from each partition's owner). */
  async info(name: string): Promise<ViewInfo> {
    return this.#mergeInfo(await this.#all('info', name));
  }

  /** Every view's lag summed over the workers. */
  async lags(): Promise<{ name: string; lag: number }[]> {
    const per = await this.#all('lags');
    const sums = new Map<string, number>();
    for (const list of per) for (const v of list) sums.set(v.name, (sums.get(v.name) ?? 0) + v.lag);
    return [...sums].map(([name, lag]) => ({ name, lag }));
  }

  /** Arrival-to-visible times (seconds) summed over the workers. */
  async freshness(): Promise<HistogramSnapshot> {
    return BucketHistogram.merge(await this.#all('freshness'), FRESHNESS_BUCKETS_S);
  }

  async infos(): Promise<ViewInfo[]> {
    const per = await this.#all('infos');
    return per[0].map((v, i) => this.#mergeInfo(per.map((list) => list.find((x) => x.name === v.name) ?? list[i])));
  }

  #mergeInfo(parts: ViewInfo[]): ViewInfo {
    if (parts.length === 1) return parts[0];
    const n = this.#links.length;
    const sum = (f: (v: ViewInfo) => number) => parts.reduce((a, v) => a + f(v), 0);
    const watermarks = parts.map((v) => v.watermark).filter((w): w is number => w !== null);
    const checkpoints = parts.map((v) => v.lastCheckpointMs).filter((c): c is number => c !== null);
    return {
      ...parts[0],
      rows: sum((v) => v.rows),
      memoryBytes: sum((v) => v.memoryBytes),
      lag: sum((v) => v.lag),
      progress: Math.min(...parts.map((v) => v.progress)),
      watermark: watermarks.length === parts.length ? Math.min(...watermarks) : null,
      lateEvents: sum((v) => v.lateEvents),
      lastCheckpointMs: checkpoints.length === parts.length ? Math.min(...checkpoints) : null,
      lastCheckpointDurationMs: Math.max(...parts.map((v) => v.lastCheckpointDurationMs ?? 0)),
      appliedRecords: sum((v) => v.appliedRecords),
      evictedRows: sum((v) => v.evictedRows),
      offsets: parts[0].offsets.map((_, p) => parts[p % n].offsets[p]),
    };
  }

  async rows(name: string, q: RowQuery = {}): Promise<ViewRow[]> {
    this.#state.assertOpen();
    if (!this.distributed) return this.#first.call('rows', name, q);
    return this.withForeign(name, q, (foreign) => this.#first.call('rows', name, { ...q, sinceVersion: undefined }, foreign));
  }

  async late(name: string): Promise<{ count: number; recent: LateEvent[] }> {
    const parts = await this.#all('late', name);
    const recent = parts.flatMap((p) => p.recent).sort((a, b) => a.received_at - b.received_at).slice(-1000);
    return { count: parts.reduce((a, p) => a + p.count, 0), recent };
  }

  /**
   * Rises whenever any worker's state of the view changes. In a cluster (changes elsewhere are not seen here) it
   * rises at every call: a live stream sends the current rows at every refresh.
   */
  async version(name: string): Promise<number> {
    const local = (await this.#all('version', name)).reduce((a, v) => a + v, 0);
    return this.#o.remote === undefined ? local : local + ++this.#calls;
  }

  #calls = 0;

  refreshMs(name: string): Promise<number> {
    this.#state.assertOpen();
    return this.#first.call('refreshMs', name);
  }

  async putTable(name: string, keyColumn: string, rows: TableRow[], replace: boolean): Promise<TableInfo> {
    this.#state.assertOpen();
    // The first worker checks the rows and merges them (PATCH upserts into what it holds); the whole table goes to the
    // shared state, then to the other workers.
    const info = await this.#first.call('putTable', name, keyColumn, rows, replace);
    const full = await this.#first.call('tableRows', name);
    await this.#o.tables.put(name, info.keyColumn, full);
    this.#tables.set(name, { name, keyColumn: info.keyColumn, rows: full });
    await Promise.all(this.#links.slice(1).map((l) => l.call('putTable', name, info.keyColumn, full, true)));
    return info;
  }

  async dropTable(name: string): Promise<void> {
    await this.#all('dropTable', name);
    this.#tables.delete(name);
    await this.#o.tables.remove(name);
  }

  tableNames(): Promise<string[]> {
    this.#state.assertOpen();
    return this.#first.call('tableNames');
  }

  tableInfo(name: string): Promise<TableInfo> {
    this.#state.assertOpen();
    return this.#first.call('tableInfo', name);
  }

  tableRows(name: string): Promise<TableRow[]> {
    this.#state.assertOpen();
    return this.#first.call('tableRows', name);
  }

  async checkpoint(): Promise<void> {
    await this.#all('checkpoint');
  }

  /** Checkpoints every view and stops the workers. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#watch.abort();
      await this.#o.definitions.close();
      await this.#o.tables.close();
      await Promise.all(this.#links.map((l) => l.stop()));
    });
  }
}
