import { HalflifeError, readUtf8, type Lifecycle, type Offset, type PartitionId } from '../core/index.js';

/** A record to append. The log chooses the partition from `key` unless `partition` is given. */
export interface AppendRecord {
  /** Partition key; records with the same key land in the same partition, in order. */
  readonly key?: string | undefined;
  /** Record time in ms since the epoch (ingest uses `received_at`); indexed for replay by time. */
  readonly timestampMs: number;
  /** Payload: bytes, a string (written as UTF-8 without an intermediate copy), or an encoder. */
  readonly value: RecordValue;
  /** Explicit partition, bypassing the partitioner (used for overflow and dedicated partitions). */
  readonly partition?: number | undefined;
  /** The record's idempotency id, if it has one: a log shared by several processes tells the others (`watchIds`). */
  readonly id?: string | undefined;
}

/**
 * Writes a record's bytes straight into the log's frame buffer, so a producer with its own encoding (ingest's
 * event records) copies its bytes once and allocates nothing per record.
 */
export interface RecordEncoder {
  readonly byteLength: number;
  /** Writes exactly `byteLength` bytes at `pos`; returns `pos + byteLength`. */
  writeTo(buf: Buffer, pos: number): number;
}

export type RecordValue = Uint8Array | string | RecordEncoder;

/** Byte length of a record value. */
export function valueByteLength(value: RecordValue): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (value instanceof Uint8Array) return value.length;
  return value.byteLength;
}

/** Builds a batch from records read from `from` (for backends without a native columnar read). */
export function recordsToBatch(partition: PartitionId, records: readonly LogRecord[], from: number): RecordBatch {
  let total = 0;
  for (const r of records) total += r.value.length + (r.key === undefined ? 0 : Buffer.byteLength(r.key));
  const buffer = Buffer.allocUnsafe(total);
  const n = records.length;
  const batch = {
    partition,
    count: n,
    buffer,
    offsets: new Float64Array(n),
    timestamps: new Float64Array(n),
    valueStarts: new Uint32Array(n),
    valueEnds: new Uint32Array(n),
    keyStarts: new Int32Array(n),
    keyEnds: new Int32Array(n),
    next: n === 0 ? from : records[n - 1].next,
  };
  let pos = 0;
  records.forEach((r, i) => {
    if (r.key === undefined) batch.keyStarts[i] = batch.keyEnds[i] = -1;
    else {
      batch.keyStarts[i] = pos;
      pos += buffer.write(r.key, pos, 'utf8');
      batch.keyEnds[i] = pos;
    }
    buffer.set(r.value, pos);
    batch.valueStarts[i] = pos;
    pos += r.value.length;
    batch.valueEnds[i] = pos;
    batch.offsets[i] = r.offset;
    batch.timestamps[i] = r.timestampMs;
  });
  return batch;
}

/** A record value as one byte array. */
export function valueBytes(value: RecordValue): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Uint8Array.from(value);
  const buf = Buffer.allocUnsafe(value.byteLength);
  value.writeTo(buf, 0);
  return buf;
}

export interface LogRecord {
  readonly partition: PartitionId;
  /** The record's position: an opaque cursor, ordered within its partition but not dense (see `Offset`). */
  readonly offset: Offset;
  /** The position right after this record: where a reader that has taken it goes on. */
  readonly next: Offset;
  readonly timestampMs: number;
  readonly key: string | undefined;
  /** Payload bytes; may be a view into a larger read buffer, copy it if you keep it long. */
  readonly value: Uint8Array;
}

/**
 * Records of one partition in columns: one buffer and typed arrays of positions, no object per record. What the
 * engine reads in bulk (and what crosses to its thread in one transfer).
 */
export interface RecordBatch {
  readonly partition: PartitionId;
  readonly count: number;
  readonly buffer: Buffer;
  readonly offsets: Float64Array;
  readonly timestamps: Float64Array;
  /** Value of record i is buffer[valueStarts[i], valueEnds[i]). */
  readonly valueStarts: Uint32Array;
  readonly valueEnds: Uint32Array;
  /** Key of record i is buffer[keyStarts[i], keyEnds[i]) (keyStarts[i] -1: no key); see `batchKey`. */
  readonly keyStarts: Int32Array;
  readonly keyEnds: Int32Array;
  /**
   * Where to read on after this batch: the position after its last record (for an empty batch, the position it
   * was read from). The position after record i < count - 1 is `offsets[i + 1]`; see `positionAfter`.
   */
  readonly next: number;
}

/** The position right after record `i` of a batch (where a reader that has applied it goes on). */
export function positionAfter(batch: RecordBatch, i: number): number {
  return i + 1 < batch.count ? batch.offsets[i + 1] : batch.next;
}

/** A batch's records one by one (for readers that want objects; each `next` is where the one after begins). */
export function batchToRecords(b: RecordBatch): LogRecord[] {
  return Array.from({ length: b.count }, (_, i) => ({
    partition: b.partition,
    offset: b.offsets[i] as Offset,
    next: (i + 1 < b.count ? b.offsets[i + 1] : b.next) as Offset,
    timestampMs: b.timestamps[i],
    key: batchKey(b, i),
    value: b.buffer.subarray(b.valueStarts[i], b.valueEnds[i]),
  }));
}

/** The key of record `i` of a batch (decoded on demand: most consumers never need it). */
export function batchKey(batch: RecordBatch, i: number): string | undefined {
  const s = batch.keyStarts[i];
  return s < 0 ? undefined : readUtf8(batch.buffer, s, batch.keyEnds[i]);
}

const STORED = Symbol('stored');

/** Marks `err`, the failure of an append, with the indexes of the records it stored nonetheless. */
export function withStoredBeforeFailure<E extends Error>(err: E, stored: readonly number[]): E {
  (err as E & { [STORED]?: ReadonlySet<number> })[STORED] = new Set(stored);
  return err;
}

/** The indexes of the records a failed append stored nonetheless (empty: none, or the backend cannot tell). */
export function storedBeforeFailure(err: unknown): ReadonlySet<number> {
  return (err instanceof Error ? (err as Error & { [STORED]?: ReadonlySet<number> })[STORED] : undefined) ?? new Set();
}

export interface AppendAck {
  readonly partition: PartitionId;
  readonly offset: Offset;
}

export interface PartitionStats {
  readonly partition: PartitionId;
  /** Position of the oldest record still held (retention moves it forward). */
  readonly firstOffset: Offset;
  /** The position after the newest record: a reader at it has read everything. */
  readonly nextOffset: Offset;
  /** Records held (an estimate where a backend cannot count them cheaply: see the backend). */
  readonly records: number;
  readonly bytes: number;
}

/**
 * Records of a partition at or after `from`, from its stats. Exact where positions are dense (the embedded and
 * memory logs: records = nextOffset - firstOffset); elsewhere the records held, spread evenly over the positions.
 * The one place that does arithmetic on positions outside a backend.
 */
export function lagOf(p: PartitionStats, from: number): number {
  if (from >= p.nextOffset) return 0;
  if (from <= p.firstOffset) return p.records;
  const span = p.nextOffset - p.firstOffset;
  if (span === p.records) return p.nextOffset - from;
  // A reader short of the end has at least one record ahead.
  return Math.max(1, Math.min(p.records, Math.round((p.records * (p.nextOffset - from)) / span)));
}

export interface LogStats {
  readonly records: number;
  readonly bytes: number;
  readonly partitions: readonly PartitionStats[];
}

export interface ReadOptions {
  /** At most this many records (default 1,000). */
  readonly maxRecords?: number;
  /** Stop after roughly this many bytes of records (default 1 MiB; at least one record is returned). */
  readonly maxBytes?: number;
}

/**
 * Writes records to a durable, partitioned log. `append` resolves only once the records are durable under the
 * backend's durability policy; records become readable at the same moment.
 */
export interface LogWriter extends Lifecycle {
  readonly partitionCount: number;
  /** The partition a key would be written to (pinned keys get their dedicated partition). */
  partitionFor(key: string): PartitionId;
  /**
   * Stores the records; resolves once all are durable (as the backend defines it). A rejection means not all were: a
   * backend that may have stored some of them anyway (JetStream publishes each partition's message on its own) says
   * which with `storedBeforeFailure`.
   */
  append(records: readonly AppendRecord[]): Promise<AppendAck[]>;
  /**
   * For logs shared by several processes (JetStream): calls `listener` with the ids of records other processes
   * append, as they are stored, so each process's dedup window knows them. Returns the function that stops it.
   */
  watchIds?(listener: (ids: readonly string[], timestampMs: number) => void): () => void;
}

/**
 * Reads a partitioned log from positions. A position (`Offset`) is an opaque cursor owned by the backend: ordered
 * within a partition, so positions compare, but not dense (a JetStream sequence counts the whole stream and one
 * message holds a batch): outside `src/log` nothing adds to or subtracts from one. Go on from `LogRecord.next` /
 * `RecordBatch.next`; ask `lag` how many records lie ahead.
 */
export interface LogReader extends Lifecycle {
  readonly partitionCount: number;
  /**
   * True when `stats()` ends are what this process has seen of a log other processes append to too (JetStream): a
   * position past that end may be records not seen yet, not a tail the log lost.
   */
  readonly endsSeenLocally?: boolean;
  /** Records of one partition from `from` (clamped to the first retained position). */
  read(partition: number, from: number, options?: ReadOptions): Promise<LogRecord[]>;
  /** Like `read`, in columns (may return fewer records than `read` would: one segment chunk at most). */
  readBatch(partition: number, from: number, options?: ReadOptions): Promise<RecordBatch>;
  /** The first position whose record has timestampMs >= `timeMs`, or nextOffset when there is none. */
  offsetForTime(partition: number, timeMs: number): Promise<Offset>;
  stats(): LogStats;
  /** Records of `partition` at or after `from` not read yet (computed by the backend; see `lagOf`). */
  lag(partition: number, from: number): number;
  /**
   * Resolves true once a record at or after `from` can be read from `partition` (at once if one can now), false
   * when `signal` aborts or the log closes first. Readers wait with this instead of polling.
   */
  tail(partition: number, from: number, signal?: AbortSignal): Promise<boolean>;
}

/** Committed consumer positions, per partition (what a consumer has applied for good). */
export interface OffsetStore {
  /** Durably records a consumer's position: the next position it will read, per partition. */
  commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void>;
  committedOffsets(consumer: string): Promise<Record<number, Offset>>;
}

/**
 * A durable, partitioned, replayable log of opaque records, with its consumers' positions. Backends: `SegmentLog`
 * (embedded segment files, the default), `MemoryLog` (tests) and `JetStreamLog` (NATS JetStream).
 */
export interface Log extends LogWriter, LogReader, OffsetStore {}

const CONSUMER_RE = /^[A-Za-z0-9_.-]{1,200}$/;

/** Refuses a consumer name outside 1-200 letters, digits, ".", "_" or "-" (INVALID_CONSUMER_NAME). */
export function checkConsumerName(consumer: string): string {
  if (typeof consumer !== 'string' || !CONSUMER_RE.test(consumer)) throw new HalflifeError('INVALID_CONSUMER_NAME', { name: JSON.stringify(consumer) });
  return consumer;
}
