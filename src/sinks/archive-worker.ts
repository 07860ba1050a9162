// The archive's thread: decoding records and appending them to DuckDB costs microseconds per event, which the server
// thread cannot spare at full ingest; it reads the log through the host (RemoteLog) like an engine worker.
import { parentPort, workerData } from 'node:worker_threads';
import { threadLogger } from '../core/index.js';
import { RemoteLog } from '../log/index.js';
import { Archive } from './archive.js';
import type { ArchiveWorkerInit, FromArchiveWorker, ToArchiveWorker } from './archive-protocol.js';

const port = parentPort!;
const init = workerData as ArchiveWorkerInit;
const post = (m: FromArchiveWorker) => port.postMessage(m);

const logger = threadLogger(post);

const schemas = new Map<string, unknown>(Object.entries(init.schemas));
const log = new RemoteLog(init.partitions, init.stats, (m) => post(m), init.endsSeenLocally);
const archive = new Archive({ log, dir: init.dir, rollSeconds: init.rollSeconds, rollBytes: init.rollBytes, retentionDays: init.retentionDays, compactFiles: init.compactFiles, schemaOf: (t) => schemas.get(t), logger, onFailure: () => setTimeout(() => process.exit(1), 100) });

const status = () => post({ type: 'status', archived: archive.archived, lag: archive.lag() });

port.on('message', (m: ToArchiveWorker) => {
  if (m.type === 'schema') schemas.set(m.eventType, m.schema);
  else if (m.type === 'start') {
    // After `ready`: the host has sent the schemas registered and the log's ends reached while this thread started.
    archive.start().then(
      () => {
        setInterval(status, 1000).unref();
        status();
      },
      (err: unknown) => {
        logger.error({ err }, 'the archive could not start');
        process.exit(1); // this thread only: the host starts a new one
      },
    );
  } else if (m.type === 'close') {
    void archive
      .close()
      .then(() => log.close())
      .finally(() => port.close());
  } else log.receive(m);
});

post({ type: 'ready' });
