import './errors.js';
import {
  HalflifeError,
  LifecycleState,
  offset as toOffset,
  partitionId,
  type Offset,
  type PartitionId,
} from '../core/index.js';
import { checkConsumerName, lagOf, recordsToBatch, valueBytes, type RecordBatch, type AppendAck, type AppendRecord, type Log, type LogRecord, type LogStats, type ReadOptions } from './log.js';
import { Partitioner } from './partitioner.js';
import { TailWaiters } from './tail.js';

/** The in-memory twin of `SegmentLog`, for tests of the rooms above the log. Durable only until close. */
export class MemoryLog implements Log {
  readonly partitionCount: number;
  readonly #partitioner: Partitioner;
  readonly #records: LogRecord[][];
  readonly #bytes: number[];
  readonly #consumers = new Map<string, Record<number, Offset>>();
  readonly #state = new LifecycleState('log');
  readonly #tails: TailWaiters;

  constructor(partitions = 8, pinnedKeys: Readonly<Record<string, number>> = {}) {
    this.partitionCount = partitions;
    this.#partitioner = new Partitioner(partitions, pinnedKeys);
    this.#records = Array.from({ length: partitions }, () => []);
    this.#bytes = new Array<number>(partitions).fill(0);
    this.#tails = new TailWaiters(partitions);
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
  }

  partitionFor(key: string): PartitionId {
    return this.#partitioner.forKey(key);
  }

  async append(records: readonly AppendRecord[]): Promise<AppendAck[]> {
    this.#state.assertOpen();
    let unkeyed = -1;
    const touched = new Set<number>();
    const acks = records.map((r) => {
      let p: number;
      if (r.partition !== undefined) p = this.#check(r.partition);
      else if (r.key !== undefined) p = this.#partitioner.forKey(r.key);
      else p = unkeyed < 0 ? (unkeyed = this.#partitioner.nextUnkeyed()) : unkeyed;
      const value = valueBytes(r.value);
      const list = this.#records[p];
      const rec: LogRecord = {
        partition: partitionId(p),
        offset: toOffset(list.length),
        next: toOffset(list.length + 1),
        timestampMs: r.timestampMs,
        key: r.key,
        value,
      };
      list.push(rec);
      this.#bytes[p] += value.length;
      touched.add(p);
      return { partition: rec.partition, offset: rec.offset };
    });
    for (const p of touched) this.#tails.notify(p);
    return acks;
  }

  async read(partition: number, from: number, options: ReadOptions = {}): Promise<LogRecord[]> {
    const list = this.#records[this.#check(partition)];
    return list.slice(Math.max(0, from), Math.max(0, from) + (options.maxRecords ?? 1000));
  }

  async readBatch(partition: number, from: number, options: ReadOptions = {}): Promise<RecordBatch> {
    return recordsToBatch(partitionId(partition), await this.read(partition, from, options), Math.max(0, from));
  }

  lag(partition: number, from: number): number {
    return lagOf(this.stats().partitions[this.#check(partition)], from);
  }

  tail(partition: number, from: number, signal?: AbortSignal): Promise<boolean> {
    const list = this.#records[this.#check(partition)];
    return this.#tails.wait(partition, () => list.length > from, signal);
  }

  async offsetForTime(partition: number, timeMs: number): Promise<Offset> {
    const list = this.#records[this.#check(partition)];
    const i = list.findIndex((r) => r.timestampMs >= timeMs);
    return toOffset(i < 0 ? list.length : i);
  }

  stats(): LogStats {
    const partitions = this.#records.map((list, p) => ({
      partition: partitionId(p),
      firstOffset: toOffset(0),
      nextOffset: toOffset(list.length),
      records: list.length,
      bytes: this.#bytes[p],
    }));
    return {
      records: partitions.reduce((a, p) => a + p.records, 0),
      bytes: partitions.reduce((a, p) => a + p.bytes, 0),
      partitions,
    };
  }

  async commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void> {
    checkConsumerName(consumer);
    const current = { ...this.#consumers.get(consumer) };
    for (const [p, o] of Object.entries(offsets)) current[this.#check(Number(p))] = toOffset(o);
    this.#consumers.set(consumer, current);
  }

  async committedOffsets(consumer: string): Promise<Record<number, Offset>> {
    return { ...this.#consumers.get(consumer) };
  }

  #check(partition: number): number {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitionCount) {
      throw new HalflifeError('PARTITION_NOT_FOUND', {
        partition,
        partitions: this.partitionCount,
        last: this.partitionCount - 1,
      });
    }
    return partition;
  }

  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#tails.close();
    });
  }
}
