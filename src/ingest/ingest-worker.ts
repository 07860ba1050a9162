/**
 * An ingest worker thread: parses, checks, validates and encodes request bodies, so the server thread only
 * receives them, appends the encoded records and answers. It keeps its own compiled copy of the latest schemas,
 * updated by messages that arrive in order with the requests.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SchemaCompiler, type CompiledSchema } from '../schema/index.js';
import { EventChecker } from './event-checker.js';
import type { FromIngestWorker, IngestWorkerInit, ToIngestWorker } from './ingest-protocol.js';

const port = parentPort!;
const init = workerData as IngestWorkerInit;
const compiler = new SchemaCompiler(init.limits);
const schemas = new Map<string, CompiledSchema>();
for (const v of init.schemas) schemas.set(v.type, compiler.compileStored(v.type, v.version, v.schema));
const checker = new EventChecker(init.limits, (type) => schemas.get(type));

port.on('message', (m: ToIngestWorker) => {
  if (m.type === 'schema') {
    schemas.set(m.version.type, compiler.compileStored(m.version.type, m.version.version, m.version.schema));
    return;
  }
  try {
    const body = Buffer.from(m.body, m.byteOffset, m.byteLength);
    const out = checker.checkBody(body, m.format, m.receivedAt, m.allowedTypes, m.shed);
    const ends = Int32Array.from(out.ends);
    // The writer's buffer has an ArrayBuffer of its own (see MsgpackWriter): transferred, not copied.
    const records = out.records.byteLength === 0 ? new ArrayBuffer(0) : (out.records.buffer as ArrayBuffer);
    const reply: FromIngestWorker = {
      type: 'checked',
      id: m.id,
      records,
      byteOffset: out.records.byteOffset,
      byteLength: out.records.byteLength,
      ends,
      keys: out.keys,
      types: out.types,
      ids: out.ids,
      rejections: out.rejections,
      malformed: out.malformed,
      forbiddenType: out.forbiddenType,
      shed: out.shed,
    };
    port.postMessage(reply, [records, ends.buffer]);
  } catch (err) {
    port.postMessage({ type: 'failed', id: m.id, message: (err as Error).stack ?? String(err) } satisfies FromIngestWorker);
  }
});

port.postMessage({ type: 'ready' } satisfies FromIngestWorker);
