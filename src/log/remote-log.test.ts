import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HalflifeError } from '../core/index.js';
import { MemoryLog } from './memory-log.js';
import { LogPort, RemoteLog, statsWire, watchLog, type LogReply, type LogRequest } from './remote-log.js';
import './errors.js';

/** The log across a thread boundary, wired back to back without a thread: what the engine's worker sees. */
function pair(log: Pick<MemoryLog, 'partitionCount' | 'stats' | 'readBatch' | 'commitOffsets' | 'committedOffsets' | 'read' | 'offsetForTime' | 'lag' | 'tail' | 'start' | 'close'>): { remote: RemoteLog } {
  let remote: RemoteLog;
  const port = new LogPort(log, (m: LogReply) => queueMicrotask(() => remote.receive(m)));
  remote = new RemoteLog(log.partitionCount, statsWire(log), (m: LogRequest) => queueMicrotask(() => port.handle(m)));
  return { remote };
}

test('remote log: reads follow next; tail wakes on reported appends; errors keep their codes', async () => {
  const log = new MemoryLog(2);
  await log.start();
  const { remote } = pair(log);
  const stop = new AbortController();
  watchLog(log, () => remote.receive({ type: 'log-stats', stats: statsWire(log) }), stop.signal, 1);
  const waiting = remote.tail(1, 0);
  await log.append([{ timestampMs: 1, value: 'a', partition: 1 }, { timestampMs: 2, value: 'b', partition: 1 }]);
  assert.equal(await waiting, true, 'woken by the reported append');
  const first = await remote.read(1, 0, { maxRecords: 1 });
  assert.deepEqual(first.map((r) => Buffer.from(r.value).toString()), ['a']);
  const second = await remote.readBatch(1, first[0].next, { maxRecords: 10 });
  assert.equal(second.count, 1);
  assert.equal(remote.lag(1, second.next), 0);
  assert.equal(remote.lag(1, 0), 2);
  // A failure on the log's side arrives with its code, not as a bare error.
  const failing = {
    partitionCount: 2,
    stats: () => log.stats(),
    readBatch: async () => {
      throw new HalflifeError('PARTITION_NOT_FOUND', { partition: 9, partitions: 2, last: 1 });
    },
  } as unknown as MemoryLog;
  const { remote: broken } = pair(failing);
  await assert.rejects(broken.readBatch(0, 0), { code: 'PARTITION_NOT_FOUND' });
  stop.abort();
  await log.close();
});

test('remote log: offsets committed through it are read back through it, per consumer', async () => {
  const log = new MemoryLog(3);
  await log.start();
  const { remote } = pair(log);
  assert.deepEqual(await remote.committedOffsets('archive'), {});
  await log.append([{ value: 'a', partition: 1, timestampMs: 1 }, { value: 'b', partition: 1, timestampMs: 2 }]);
  const [r] = await remote.read(1, 0);
  await remote.commitOffsets('archive', { 1: r.offset + 1 });
  assert.deepEqual(await remote.committedOffsets('archive'), { 1: r.offset + 1 });
  assert.deepEqual(await log.committedOffsets('archive'), { 1: r.offset + 1 });
  assert.deepEqual(await remote.committedOffsets('other'), {});
  await log.close();
});
