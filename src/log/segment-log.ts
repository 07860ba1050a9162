import './errors.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  HalflifeError,
  LifecycleState,
  offset as toOffset,
  silentLogger,
  SystemClock,
  writeFileAtomic,
  type Clock,
  type Logger,
  type Offset,
  type PartitionId,
} from '../core/index.js';
import { checkConsumerName, lagOf, valueByteLength, type AppendAck, type AppendRecord, type Log, type LogRecord, type LogStats, type ReadOptions, type RecordBatch } from './log.js';
import { PartitionLog } from './partition-log.js';
import { GroupCommit } from './group-commit.js';
import { Partitioner } from './partitioner.js';
import { TailWaiters } from './tail.js';
import { BATCH_HEADER_BYTES, beginBatch, endBatch, keyByteLength, MAX_BATCH_BYTES, MAX_KEY_BYTES, RECORD_HEADER_BYTES, writeRecord } from './segment-format.js';

/**
 * When an append counts as durable.
 * - `always`: after fdatasync of every touched partition; a crash (even power loss) loses nothing acknowledged.
 * - `interval`: after write(2) to the page cache, with fdatasync every `fsyncIntervalMs`; a process crash
 *   (kill -9) loses nothing acknowledged, a power loss or kernel crash up to `fsyncIntervalMs` of events.
 * - `never`: after write(2); the kernel flushes when it likes (about 30 s on Linux), which is what a power
 *   loss can take.
 */
export type FsyncPolicy = 'always' | 'interval' | 'never';

export interface SegmentLogOptions {
  /** Folder that holds this log (one sub-folder per partition). */
  readonly dir: string;
  readonly partitions: number;
  readonly fsync: FsyncPolicy;
  /** For `interval`: how often dirty partitions are synced (default 100 ms). */
  readonly fsyncIntervalMs?: number;
  /** A segment is sealed and a new one started beyond this size (default 64 MiB). */
  readonly segmentBytes?: number;
  /** One sparse-index entry per this many bytes of records (default 4 KiB). */
  readonly indexIntervalBytes?: number;
  /** Whole segments whose newest record is older than this are deleted (0 = keep forever). */
  readonly retentionMaxAgeMs?: number;
  /** Oldest segments are deleted while a partition holds more than this (0 = no limit). */
  readonly retentionMaxBytesPerPartition?: number;
  /** How often retention runs (default 60 s). */
  readonly retentionCheckIntervalMs?: number;
  /**
   * Consumers retention waits for: no segment holding a record at or after one of their committed positions is
   * deleted, nor any segment of a partition they have not committed yet (the archive: a record it has not written
   * to Parquet stays in the log).
   */
  readonly retentionKeepsFor?: readonly string[];
  /** Keys that own a dedicated partition: key -> partition. */
  readonly pinnedKeys?: Readonly<Record<string, number>>;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Told of each group commit and each fdatasync (for metrics). */
  readonly observer?: LogObserver;
}

export interface LogObserver {
  /** A group commit wrote `records` records of `bytes` bytes (all partitions together). */
  groupCommitted(records: number, bytes: number): void;
  /** An fdatasync of one partition took `seconds`. */
  synced(seconds: number): void;
}

interface AppendRequest {
  readonly records: readonly AppendRecord[];
  readonly partitions: Int32Array;
  readonly bytes: number;
  readonly acks: AppendAck[];
  failed: unknown;
  resolve(acks: AppendAck[]): void;
  reject(err: unknown): void;
}


/**
 * The embedded log: per partition, segment files of CRC-checked frames with a sparse offset/time index.
 *
 * Group commit: appends queue up while a flush is in progress; the next flush writes each partition's queued
 * records with one write(2) and (policy `always`) one fdatasync, then resolves every request in the group.
 */
export class SegmentLog implements Log {
  readonly partitionCount: number;
  readonly #o: Required<Omit<SegmentLogOptions, 'logger' | 'clock' | 'pinnedKeys' | 'observer'>>;
  readonly #observer: LogObserver | undefined;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #partitioner: Partitioner;
  readonly #state = new LifecycleState('log');
  #parts: PartitionLog[] = [];
  readonly #groups = new GroupCommit<AppendRequest>((group) => this.#flush(group));
  /** Value bytes of the appends waiting for the next group commit (an overload signal). */
  #queuedBytes = 0;
  #fsyncTimer: NodeJS.Timeout | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #started = false;
  readonly #tails: TailWaiters;

  constructor(options: SegmentLogOptions) {
    if (!Number.isInteger(options.partitions) || options.partitions < 1) {
      throw new RangeError(`partitions must be a positive integer (got ${options.partitions})`);
    }
    this.partitionCount = options.partitions;
    this.#o = {
      dir: options.dir,
      partitions: options.partitions,
      fsync: options.fsync,
      fsyncIntervalMs: options.fsyncIntervalMs ?? 100,
      segmentBytes: options.segmentBytes ?? 64 * 1024 * 1024,
      indexIntervalBytes: options.indexIntervalBytes ?? 4096,
      retentionMaxAgeMs: options.retentionMaxAgeMs ?? 0,
      retentionMaxBytesPerPartition: options.retentionMaxBytesPerPartition ?? 0,
      retentionCheckIntervalMs: options.retentionCheckIntervalMs ?? 60_000,
      retentionKeepsFor: options.retentionKeepsFor ?? [],
    };
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? new SystemClock();
    this.#observer = options.observer;
    this.#partitioner = new Partitioner(options.partitions, options.pinnedKeys);
    this.#tails = new TailWaiters(options.partitions);
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    if (this.#started) return;
    this.#started = true;
    await mkdir(join(this.#o.dir, 'consumers'), { recursive: true });
    await this.#checkMeta();
    const parts: PartitionLog[] = [];
    for (let p = 0; p < this.partitionCount; p++) {
      const dir = join(this.#o.dir, `p-${String(p).padStart(4, '0')}`);
      await mkdir(dir, { recursive: true });
      parts.push(
        new PartitionLog({
          dir,
          partition: p,
          segmentBytes: this.#o.segmentBytes,
          indexIntervalBytes: this.#o.indexIntervalBytes,
          syncMetadata: this.#o.fsync !== 'never',
          logger: this.#logger,
        }),
      );
    }
    // A partition that cannot open (SEGMENT_CORRUPT) must not leave the others' files open.
    const opened = await Promise.allSettled(parts.map((p) => p.open()));
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      await Promise.all(parts.map((p) => p.close().catch(() => {})));
      throw failed.reason;
    }
    this.#parts = parts;
    if (this.#o.fsync === 'interval') {
      this.#fsyncTimer = setInterval(() => void this.#syncDirty(), this.#o.fsyncIntervalMs);
      this.#fsyncTimer.unref();
    }
    if (this.#o.retentionMaxAgeMs > 0 || this.#o.retentionMaxBytesPerPartition > 0) {
      this.#retentionTimer = setInterval(() => void this.applyRetention(), this.#o.retentionCheckIntervalMs);
      this.#retentionTimer.unref();
    }
  }

  async #checkMeta(): Promise<void> {
    const path = join(this.#o.dir, 'meta.json');
    let meta: { partitions: number } | undefined;
    try {
      meta = JSON.parse(await readFile(path, 'utf8')) as { partitions: number };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (meta === undefined) {
      await writeFile(path, JSON.stringify({ format: 1, partitions: this.partitionCount }) + '\n');
      return;
    }
    if (meta.partitions !== this.partitionCount) {
      throw new HalflifeError('LOG_PARTITIONS_MISMATCH', {
        where: this.#o.dir,
        existing: meta.partitions,
        configured: this.partitionCount,
      });
    }
  }

  /** Bytes of appends waiting for the next group commit. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  partitionFor(key: string): PartitionId {
    return this.#partitioner.forKey(key);
  }

  async append(records: readonly AppendRecord[]): Promise<AppendAck[]> {
    this.#state.assertOpen();
    if (records.length === 0) return [];
    const partitions = new Int32Array(records.length);
    let unkeyed = -1;
    let bytes = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      bytes += valueByteLength(r.value);
      if (r.partition !== undefined) {
        this.#checkPartition(r.partition);
        partitions[i] = r.partition;
      } else if (r.key !== undefined) {
        partitions[i] = this.#partitioner.forKey(r.key);
      } else {
        if (unkeyed < 0) unkeyed = this.#partitioner.nextUnkeyed();
        partitions[i] = unkeyed;
      }
    }
    return new Promise<AppendAck[]>((resolve, reject) => {
      this.#queuedBytes += bytes;
      this.#groups.add({ records, partitions, bytes, acks: new Array(records.length), failed: undefined, resolve, reject });
    });
  }

  async #flush(group: AppendRequest[]): Promise<void> {
    if (this.#observer !== undefined) {
      let records = 0;
      for (const req of group) records += req.records.length;
      this.#observer.groupCommitted(records, this.#queuedBytes);
    }
    this.#queuedBytes = 0;
    // Gather the group's records per partition, keeping request order within each partition.
    const perPartition: { req: AppendRequest; index: number }[][] = Array.from({ length: this.partitionCount }, () => []);
    for (const req of group) {
      for (let i = 0; i < req.records.length; i++) perPartition[req.partitions[i]].push({ req, index: i });
    }
    const touched: PartitionLog[] = [];
    const publishes: (() => void)[] = [];
    await Promise.all(
      perPartition.map(async (items, p) => {
        if (items.length === 0) return;
        const part = this.#parts[p];
        try {
          publishes.push(await this.#writePartition(part, items));
          touched.push(part);
        } catch (err) {
          const failure = new HalflifeError('LOG_WRITE_FAILED', { reason: (err as Error).message }, { cause: err });
          this.#logger.error({ err, partition: p }, 'log write failed');
          for (const it of items) it.req.failed ??= failure;
        }
      }),
    );
    if (this.#o.fsync === 'always' && touched.length > 0) {
      try {
        await Promise.all(touched.map((p) => this.#timedSync(p)));
      } catch (err) {
        const failure = new HalflifeError('LOG_WRITE_FAILED', { reason: (err as Error).message }, { cause: err });
        for (const req of group) req.failed ??= failure;
      }
    }
    for (const publish of publishes) publish();
    for (const part of touched) this.#tails.notify(part.partition);
    for (const req of group) {
      if (req.failed !== undefined) req.reject(req.failed);
      else req.resolve(req.acks);
    }
  }

  /** Writes a partition's share of a group as record batches of up to MAX_BATCH_BYTES, with one write(2). */
  async #writePartition(part: PartitionLog, items: { req: AppendRequest; index: number }[]): Promise<() => void> {
    const n = items.length;
    const keyBytes = new Int32Array(n);
    const valueBytes = new Int32Array(n);
    const batchCounts: number[] = [];
    let total = 0;
    let batchBytes = 0;
    for (let i = 0; i < n; i++) {
      const r = items[i].req.records[items[i].index];
      if (r.key !== undefined) {
        const kb = keyByteLength(r.key);
        if (kb > MAX_KEY_BYTES) throw new HalflifeError('KEY_TOO_LONG', { max: MAX_KEY_BYTES, bytes: kb });
        keyBytes[i] = kb;
      }
      valueBytes[i] = valueByteLength(r.value);
      const bytes = RECORD_HEADER_BYTES + keyBytes[i] + valueBytes[i];
      if (batchCounts.length === 0 || (batchBytes + bytes > MAX_BATCH_BYTES && batchBytes > BATCH_HEADER_BYTES)) {
        batchCounts.push(0);
        batchBytes = BATCH_HEADER_BYTES;
        total += BATCH_HEADER_BYTES;
      }
      batchCounts[batchCounts.length - 1]++;
      batchBytes += bytes;
      total += bytes;
    }
    await part.rollIfNeeded(total);
    const buf = Buffer.allocUnsafe(total);
    const batchPositions: number[] = [];
    const timestamps = new Array<number>(n);
    const first = part.nextOffset;
    let pos = 0;
    let i = 0;
    for (const count of batchCounts) {
      const batchPos = pos;
      batchPositions.push(batchPos);
      pos = beginBatch(buf, pos, first + i, count);
      for (const end = i + count; i < end; i++) {
        const { req, index } = items[i];
        const r = req.records[index];
        timestamps[i] = r.timestampMs;
        pos = writeRecord(buf, pos, r.timestampMs, r.key, keyBytes[i], r.value, valueBytes[i]);
        req.acks[index] = { partition: part.partition, offset: toOffset(first + i) };
      }
      endBatch(buf, batchPos, pos);
    }
    await part.write(buf, pos);
    return () => part.publish(pos, batchPositions, batchCounts, timestamps);
  }

  #syncDirty(): Promise<void> {
    this.#syncing ??= Promise.all(this.#parts.filter((p) => p.dirty).map((p) => this.#timedSync(p)))
      .then(() => undefined, (err: unknown) => this.#logger.error({ err }, 'log fsync failed'))
      .finally(() => {
        this.#syncing = undefined;
      });
    return this.#syncing;
  }

  async #timedSync(part: PartitionLog): Promise<void> {
    if (this.#observer === undefined) return part.sync();
    const t0 = performance.now();
    await part.sync();
    this.#observer.synced((performance.now() - t0) / 1000);
  }

  #checkPartition(partition: number): PartitionLog {
    const part = this.#parts[partition];
    if (!Number.isInteger(partition) || part === undefined) {
      throw new HalflifeError('PARTITION_NOT_FOUND', {
        partition,
        partitions: this.partitionCount,
        last: this.partitionCount - 1,
      });
    }
    return part;
  }

  async read(partition: number, from: number, options?: ReadOptions): Promise<LogRecord[]> {
    this.#state.assertOpen();
    return this.#checkPartition(partition).read(from, options);
  }

  async readBatch(partition: number, from: number, options?: ReadOptions): Promise<RecordBatch> {
    this.#state.assertOpen();
    return this.#checkPartition(partition).readBatch(from, options);
  }

  lag(partition: number, from: number): number {
    const p = this.#checkPartition(partition);
    return lagOf({ partition: p.partition, firstOffset: p.firstOffset, nextOffset: p.nextOffset, records: p.nextOffset - p.firstOffset, bytes: 0 }, from);
  }

  tail(partition: number, from: number, signal?: AbortSignal): Promise<boolean> {
    const p = this.#checkPartition(partition);
    return this.#tails.wait(partition, () => p.nextOffset > from, signal);
  }

  async offsetForTime(partition: number, timeMs: number): Promise<Offset> {
    this.#state.assertOpen();
    return this.#checkPartition(partition).offsetForTime(timeMs);
  }

  stats(): LogStats {
    let records = 0;
    let bytes = 0;
    const partitions = this.#parts.map((p) => {
      const first = p.firstOffset;
      const next = p.nextOffset;
      const b = p.bytes;
      records += next - first;
      bytes += b;
      return { partition: p.partition, firstOffset: first, nextOffset: next, records: next - first, bytes: b };
    });
    return { records, bytes, partitions };
  }

  /** Runs retention now (it also runs on a timer); returns how many segments were deleted. */
  async applyRetention(): Promise<number> {
    let removed = 0;
    const now = this.#clock.now();
    const keep: Record<number, number>[] = [];
    for (const consumer of this.#o.retentionKeepsFor) keep.push(await this.committedOffsets(consumer));
    const held: number[] = [];
    for (const p of this.#parts) {
      let from = Infinity;
      for (const k of keep) from = Math.min(from, k[p.partition] ?? -1);
      const r = await p.applyRetention(now, this.#o.retentionMaxAgeMs, this.#o.retentionMaxBytesPerPartition, from);
      removed += r.removed;
      if (r.held) held.push(p.partition);
    }
    if (removed > 0) this.#logger.info({ segments: removed }, 'log retention deleted segments');
    if (held.length > 0) {
      this.#logger.warn({ partitions: held, consumers: this.#o.retentionKeepsFor }, 'log retention keeps segments a consumer has not read yet (see its lag): the log grows past its retention until it has');
    }
    return removed;
  }

  /**
   * Merges `offsets` into the consumer's positions. Commits of one consumer run one after another: engine workers
   * commit different partitions of one view, and two read-modify-writes at once would undo one another (and share
   * the temporary file).
   */
  async commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void> {
    this.#state.assertOpen();
    // Checked and copied now: the write may run later.
    const given: [number, Offset][] = [];
    for (const [p, o] of Object.entries(offsets)) {
      this.#checkPartition(Number(p));
      given.push([Number(p), toOffset(o)]);
    }
    const path = this.#consumerPath(consumer);
    const write = async () => {
      const current = await this.committedOffsets(consumer);
      for (const [p, o] of given) current[p] = o;
      await writeFileAtomic(path, JSON.stringify(current) + '\n', { durable: this.#o.fsync !== 'never' });
    };
    const next = (this.#commits.get(consumer) ?? Promise.resolve()).then(write);
    const settled = next.catch(() => {});
    this.#commits.set(consumer, settled);
    void settled.then(() => {
      if (this.#commits.get(consumer) === settled) this.#commits.delete(consumer);
    });
    await next;
  }

  /** The last commit of each consumer in progress (see `commitOffsets`). */
  readonly #commits = new Map<string, Promise<void>>();

  async committedOffsets(consumer: string): Promise<Record<number, Offset>> {
    try {
      return JSON.parse(await readFile(this.#consumerPath(consumer), 'utf8')) as Record<number, Offset>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
  }

  #consumerPath(consumer: string): string {
    return join(this.#o.dir, 'consumers', `${checkConsumerName(consumer)}.json`);
  }

  /** Waits for queued appends, syncs every partition and closes the files. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      clearInterval(this.#fsyncTimer);
      clearInterval(this.#retentionTimer);
      this.#tails.close();
      await Promise.all(this.#commits.values());
      await this.#groups.drain();
      await this.#syncing;
      for (const p of this.#parts) await p.close();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
