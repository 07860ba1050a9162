/**
 * The engine's thread. Views run here, off the thread that serves HTTP and ingests, so ingestion never waits for
 * views. Log records arrive from the server thread in transferred buffers (one copy, no re-serialisation); view
 * state, checkpoints and static tables live here.
 */
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { HalflifeError, threadLogger } from '../core/index.js';
import { RemoteLog } from '../log/index.js';
import { schemaCatalog, type Catalog } from '../sql/index.js';
import { Engine } from './engine.js';
import type { CatalogSnapshot, EngineApiImpl, EngineExtension, FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { Tables } from './tables.js';
import { CheckpointViewStore, FileViewStore, type CheckpointStore } from './view-store.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

const logger = threadLogger(post);

let catalogSnapshot: CatalogSnapshot = init.catalog;
const log = new RemoteLog(init.partitions, init.stats, (m) => post(m), init.endsSeenLocally);
// Definitions and tables are the host's (in the shared state); checkpoints are per view and partition in the data dir.
const tables = new Tables();
tables.load(init.tables);
const owned = init.owned ?? Array.from({ length: init.partitions }, (_, p) => p).filter((p) => p % init.workers === init.index);
const catalog = (): Catalog => schemaCatalog(catalogSnapshot, tables);

/** Checkpoints kept by the host thread (`WorkerInit.hostCheckpoints`): requests out, replies by id. */
let nextStoreId = 1;
const storeCalls = new Map<number, { resolve: (bytes: Uint8Array | undefined) => void; reject: (err: unknown) => void }>();
const storeCall = (op: 'load' | 'save' | 'remove', name: string, partitions: number[], bytes?: Uint8Array, live?: number[]) =>
  new Promise<Uint8Array | undefined>((resolve, reject) => {
    const id = nextStoreId++;
    storeCalls.set(id, { resolve, reject });
    post({ type: 'store', id, op, name, partitions, bytes, live });
  });
const hostStore: CheckpointStore = {
  load: (name, partition) => storeCall('load', name, [partition]),
  save: async (name, partition, bytes, live) => void (await storeCall('save', name, [partition], bytes, [...live])),
  remove: async (name, partitions) => void (await storeCall('remove', name, [...partitions])),
};

const engine = new Engine({
  log,
  // Checkpoints are per view and partition: a worker takes over any partition's state, whatever the worker count.
  store: init.hostCheckpoints ? new CheckpointViewStore(hostStore, init.views) : new FileViewStore(join(init.dataDir, 'views'), { definitions: init.views }),
  ownedPartitions: init.owned === null && init.workers === 1 ? undefined : owned,
  tables,
  catalog,
  logger,
  checkpointIntervalMs: init.checkpointIntervalMs,
});

const api: EngineApiImpl = {
  checkView: (name, sql) => void engine.check(name, sql),
  createView: (name, sql, replace) => engine.createView(name, sql, replace),
  dropView: (name) => engine.dropView(name),
  names: () => engine.names(),
  info: (name) => engine.info(name),
  infos: () => engine.names().map((n) => engine.info(n)),
  rows: (name, q, foreign = []) => engine.rows(name, q, foreign),
  partials: (name, q) => engine.partials(name, q),
  late: (name) => engine.late(name),
  version: (name) => engine.version(name),
  refreshMs: (name) => engine.plan(name).options.refreshMs,
  putTable: (name, key, rows, replace) => tables.put(name, key, rows, replace),
  dropTable: (name) => tables.drop(name),
  tableNames: () => tables.names(),
  tableInfo: (name) => tables.info(name),
  tableRows: (name) => tables.rows(name),
  checkpoint: () => engine.checkpoint(),
  own: (partitions, clean) => engine.own(partitions, clean),
  freshness: () => engine.freshness(),
  lags: () => engine.lags(),
  close: async () => {
    await engine.close();
    setImmediate(() => port.close());
  },
};

/** Methods by name: the API, and `ext:<name>` for what the extensions add. */
const methods = new Map<string, (...args: unknown[]) => unknown>(Object.entries(api) as [string, (...args: unknown[]) => unknown][]);
for (const url of init.extensions) {
  const { engineMethods } = (await import(url)) as { engineMethods: EngineExtension };
  for (const [name, fn] of Object.entries(engineMethods(engine, init))) methods.set(`ext:${name}`, fn as (...args: unknown[]) => unknown);
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'rpc': {
      const fn = methods.get(m.method);
      Promise.resolve()
        .then(() => {
          if (fn === undefined) throw new HalflifeError('INTERNAL', { reason: `the engine has no method ${m.method}` });
          return fn(...m.args);
        })
        .then(
          (result) => post({ type: 'rpc-result', id: m.id, result }),
          (err: unknown) => {
            const e = err instanceof HalflifeError ? err : new HalflifeError('INTERNAL', { reason: (err as Error).message }, { cause: err });
            if (!(err instanceof HalflifeError)) logger.error({ err }, `engine ${m.method} failed`);
            post({ type: 'rpc-result', id: m.id, error: { code: e.code, message: e.message, details: (e.details ?? {}) as Record<string, unknown> } });
          },
        );
      break;
    }
    case 'log-read-result':
    case 'log-commit-result':
    case 'log-stats':
      log.receive(m);
      break;
    case 'catalog':
      catalogSnapshot = m.catalog;
      break;
    case 'store-result': {
      const c = storeCalls.get(m.id);
      storeCalls.delete(m.id);
      if (m.error !== undefined) c?.reject(new HalflifeError(m.error.code, m.error.details, { message: m.error.message }));
      else c?.resolve(m.bytes);
      break;
    }
  }
});

await engine.start();
post({ type: 'ready' });
