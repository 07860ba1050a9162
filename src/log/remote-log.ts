/**
 * The log across a thread boundary: a worker thread reads through `RemoteLog`, the thread that owns the log serves
 * it with `LogPort`, and `watchLog` tells the worker of new records as they are appended (no polling). Batches
 * cross in one transferred buffer (no re-serialisation).
 */
import { HalflifeError, offset as toOffset, partitionId, type Offset, type PartitionId } from '../core/index.js';
import { batchToRecords, lagOf, type AppendAck, type Log, type LogReader, type LogRecord, type LogStats, type OffsetStore, type PartitionStats, type ReadOptions, type RecordBatch } from './log.js';
import { TailWaiters } from './tail.js';

/** A log batch as it crosses threads: the columns, and the bytes in a transferred ArrayBuffer. */
export type WireBatch = Pick<RecordBatch, 'offsets' | 'timestamps' | 'valueStarts' | 'valueEnds' | 'keyStarts' | 'keyEnds'> & {
  readonly buffer: ArrayBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
};

/** Plain per-partition stats as they cross threads. */
export interface PartitionStatsWire {
  partition: number;
  firstOffset: number;
  nextOffset: number;
  records: number;
  bytes: number;
}

/** From the reading thread to the log's thread. */
export type LogRequest =
  | { type: 'log-read'; id: number; partition: number; from: number; maxRecords: number; maxBytes: number }
  | { type: 'log-commit'; id: number; consumer: string; offsets: Record<number, number> }
  | { type: 'log-committed'; id: number; consumer: string };

/** An error as it crosses threads: its code (a HalflifeError's, else INTERNAL) travels with it. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

function wireError(err: unknown): WireError {
  if (err instanceof HalflifeError) return { code: err.code, message: err.message, details: (err.details ?? {}) as Record<string, unknown> };
  return { code: 'INTERNAL', message: (err as Error)?.message ?? String(err), details: { reason: (err as Error)?.message ?? String(err) } };
}

/** From the log's thread to the reading thread. */
export type LogReply =
  | { type: 'log-read-result'; id: number; batch?: WireBatch; next: number; error?: WireError }
  | { type: 'log-commit-result'; id: number; error?: WireError }
  | { type: 'log-committed-result'; id: number; offsets?: Record<number, number>; error?: WireError }
  | { type: 'log-stats'; stats: PartitionStatsWire[] };

export function statsWire(log: LogReader): PartitionStatsWire[] {
  return log.stats().partitions.map((p) => ({ partition: p.partition, firstOffset: p.firstOffset, nextOffset: p.nextOffset, records: p.records, bytes: p.bytes }));
}

/** Serves one reading thread's requests from the log. */
export class LogPort {
  readonly #log: LogReader & OffsetStore;
  readonly #send: (m: LogReply, transfer?: ArrayBuffer[]) => void;

  constructor(log: LogReader & OffsetStore, send: (m: LogReply, transfer?: ArrayBuffer[]) => void) {
    this.#log = log;
    this.#send = send;
  }

  handle(m: LogRequest): void {
    if (m.type === 'log-read') {
      this.#log.readBatch(m.partition, m.from, { maxRecords: m.maxRecords, maxBytes: m.maxBytes }).then(
        (batch) => {
          if (batch.count === 0) return this.#send({ type: 'log-read-result', id: m.id, next: batch.next });
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
          this.#send({ type: 'log-read-result', id: m.id, batch: wire, next: batch.next }, [data]);
        },
        (err: unknown) => this.#send({ type: 'log-read-result', id: m.id, next: m.from, error: wireError(err) }),
      );
    } else if (m.type === 'log-committed') {
      this.#log.committedOffsets(m.consumer).then(
        (offsets) => this.#send({ type: 'log-committed-result', id: m.id, offsets: { ...offsets } }),
        (err: unknown) => this.#send({ type: 'log-committed-result', id: m.id, error: wireError(err) }),
      );
    } else {
      this.#log.commitOffsets(m.consumer, m.offsets).then(
        () => this.#send({ type: 'log-commit-result', id: m.id }),
        (err: unknown) => this.#send({ type: 'log-commit-result', id: m.id, error: wireError(err) }),
      );
    }
  }
}

/**
 * Calls `changed` whenever records are appended to any partition, until `signal` aborts: one `tail` per partition,
 * so an idle log costs nothing. Calls are at least `minIntervalMs` apart (default 5 ms): a busy log is reported in
 * batches instead of once per group commit (a message to every engine thread each millisecond cost ~10 % of
 * end-to-end throughput), and a quiet one at once.
 */
export function watchLog(log: LogReader, changed: () => void, signal: AbortSignal, minIntervalMs = 5): void {
  // One tail per partition, re-armed only when the change is reported: however many appends a partition takes
  // between two reports, watching it costs one wait (a group commit then finds no waiter to wake).
  let ends = log.stats().partitions.map((p) => p.nextOffset as number);
  const fired = new Set<number>();
  let scheduled = false;
  let last = -Infinity;
  const arm = (p: number) => {
    void log.tail(p, ends[p], signal).then(
      (ready) => {
        if (!ready) return;
        fired.add(p);
        schedule();
      },
      () => {},
    );
  };
  const run = () => {
    scheduled = false;
    last = performance.now();
    if (signal.aborted) return;
    // The ends are read before reporting: what is appended after this resolves the re-armed tails at once.
    ends = log.stats().partitions.map((p) => p.nextOffset);
    const again = [...fired];
    fired.clear();
    changed();
    for (const p of again) arm(p);
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    const wait = last + minIntervalMs - performance.now();
    if (wait > 0) setTimeout(run, wait);
    else setImmediate(run);
  };
  for (let p = 0; p < log.partitionCount; p++) arm(p);
}

/**
 * The log as a worker thread sees it: reads and offset commits go to the log's thread through `post`; the stats it
 * pushes (`setStats`, on every append) answer `stats`, `lag` and `tail` here without a round trip.
 */
export class RemoteLog implements Log {
  readonly partitionCount: number;
  #stats: PartitionStatsWire[];
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #post: (m: LogRequest) => void;
  readonly #tails: TailWaiters;

  readonly endsSeenLocally: boolean;

  /** `endsSeenLocally`: as the host's log says (see `LogReader.endsSeenLocally`). */
  constructor(partitions: number, stats: PartitionStatsWire[], post: (m: LogRequest) => void, endsSeenLocally = false) {
    this.partitionCount = partitions;
    this.endsSeenLocally = endsSeenLocally;
    this.#stats = stats;
    this.#post = post;
    this.#tails = new TailWaiters(partitions);
  }

  /** Handles a reply from the log's thread. */
  receive(m: LogReply): void {
    if (m.type === 'log-stats') {
      this.#stats = m.stats;
      for (let p = 0; p < this.partitionCount; p++) this.#tails.notify(p);
      return;
    }
    const w = this.#waiting.get(m.id);
    this.#waiting.delete(m.id);
    if (w === undefined) return;
    if (m.error !== undefined) w.reject(new HalflifeError(m.error.code, m.error.details, { message: m.error.message }));
    else w.resolve(m);
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.#tails.close();
  }

  partitionFor(): PartitionId {
    throw new Error('a remote reader does not partition');
  }

  async append(): Promise<AppendAck[]> {
    throw new Error('a remote reader does not append');
  }

  #request<T>(m: LogRequest): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(m.id, { resolve: resolve as (v: unknown) => void, reject });
      this.#post(m);
    });
  }

  async readBatch(partition: number, from: number, options: ReadOptions = {}): Promise<RecordBatch> {
    const m = await this.#request<Extract<LogReply, { type: 'log-read-result' }>>({
      type: 'log-read',
      id: this.#next++,
      partition,
      from,
      maxRecords: options.maxRecords ?? 1000,
      maxBytes: options.maxBytes ?? 1 << 20,
    });
    const w = m.batch;
    return {
      partition: partitionId(partition),
      count: w === undefined ? 0 : w.offsets.length,
      buffer: w === undefined ? Buffer.alloc(0) : Buffer.from(w.buffer, w.byteOffset, w.byteLength),
      offsets: w?.offsets ?? new Float64Array(0),
      timestamps: w?.timestamps ?? new Float64Array(0),
      valueStarts: w?.valueStarts ?? new Uint32Array(0),
      valueEnds: w?.valueEnds ?? new Uint32Array(0),
      keyStarts: w?.keyStarts ?? new Int32Array(0),
      keyEnds: w?.keyEnds ?? new Int32Array(0),
      next: m.next,
    };
  }

  async read(partition: number, from: number, options: ReadOptions = {}): Promise<LogRecord[]> {
    return batchToRecords(await this.readBatch(partition, from, options));
  }

  async offsetForTime(): Promise<Offset> {
    throw new HalflifeError('INTERNAL', { reason: 'offsetForTime is not served across threads' });
  }

  stats(): LogStats {
    let records = 0;
    let bytes = 0;
    for (const s of this.#stats) {
      records += s.records;
      bytes += s.bytes;
    }
    return { records, bytes, partitions: this.#stats.map((s) => this.#partitionStats(s)) };
  }

  #partitionStats(s: PartitionStatsWire): PartitionStats {
    return { ...s, partition: partitionId(s.partition), firstOffset: toOffset(s.firstOffset), nextOffset: toOffset(s.nextOffset) };
  }

  lag(partition: number, from: number): number {
    return lagOf(this.#partitionStats(this.#stats[partition]), from);
  }

  tail(partition: number, from: number, signal?: AbortSignal): Promise<boolean> {
    return this.#tails.wait(partition, () => this.#stats[partition].nextOffset > from, signal);
  }

  commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void> {
    return this.#request({ type: 'log-commit', id: this.#next++, consumer, offsets: { ...offsets } });
  }

  async committedOffsets(consumer: string): Promise<Record<number, Offset>> {
    const m = await this.#request<Extract<LogReply, { type: 'log-committed-result' }>>({ type: 'log-committed', id: this.#next++, consumer });
    return (m.offsets ?? {}) as Record<number, Offset>;
  }
}
