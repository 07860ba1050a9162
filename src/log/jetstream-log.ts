import { randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { HalflifeError, LifecycleState, offset as toOffset, partitionId, silentLogger, type Logger, type Offset, type PartitionId } from '../core/index.js';
import { batchToRecords, lagOf, valueByteLength, withStoredBeforeFailure, type AppendAck, type AppendRecord, type Log, type LogRecord, type LogStats, type OffsetStore, type PartitionStats, type ReadOptions, type RecordBatch, type RecordValue } from './log.js';
import { GroupCommit } from './group-commit.js';
import { Partitioner } from './partitioner.js';
import { TailWaiters } from './tail.js';
import { JETSTREAM_TIMEOUT_MS } from './nats-kv.js';
import { isNatsTimeout, retryingTimeouts } from './nats-connection.js';

/**
 * A position in the JetStream log: the message's stream sequence times SHIFT plus the record's index in it.
 * Ordered within a partition (sequences grow), not dense (other partitions' messages share the sequence).
 */
export const SHIFT = 65_536;
/** Groups of appends published at once (see `#groups`). */
const FLUSHES_IN_FLIGHT = 2;
/** Records per message, so an index always fits below SHIFT. */
const MAX_RECORDS_PER_MESSAGE = SHIFT - 1;
/** Message body: "HLB" + format byte, u32 record count, then per record f64 time, i32 key bytes (-1: none), key, u32 value bytes, value. */
const MAGIC = Buffer.from('HLB\x01', 'latin1');
/**
 * A compressed batch: MAGIC_DEFLATE, the record count (u32), the records' byte length (u32), then the records as in a
 * plain batch, deflated (raw, level 1). Events compress about 5× (the benchmark's: 4.9×), and every byte of a message
 * is written, replicated and read again by each of a stream's copies: on a 3-node cluster sharing two cores, fewer
 * bytes is what lets ingest keep up. Deflate is Node's own zlib, called synchronously: its asynchronous API cost the
 * event loop ~0.16 ms per message in stream bookkeeping (measured: 2.8 s per million events at ~50 events a message),
 * the synchronous calls ~0.05 ms for such a message and ~0.5 ms for the largest (deflate ~650 MB/s, inflate ~1 GB/s).
 */
const MAGIC_DEFLATE = Buffer.from('HLB\x02', 'latin1');
/** The most a batch's records can take (NATS caps max_payload at 64 MiB). */
const MAX_BATCH_BYTES = 64 * 1024 * 1024;
/** Batches smaller than this are stored plain (compressing them saves little). */
const COMPRESS_FROM_BYTES = 1024;
const HEADER_RECORDS = 'Halflife-Records';
const HEADER_MAX_TS = 'Halflife-Max-Ts';
/** The batch's record ids (base64 of a JSON array), for the other processes' dedup windows. */
const HEADER_IDS = 'Halflife-Ids';
/** Which process published the batch (its batch-id prefix): a process does not report its own ids to itself. */
const HEADER_ORIGIN = 'Halflife-Origin';
/** Messages per partition whose record counts are kept for an exact `lag`. */
const RECENT_MESSAGES = 65_536;
/** How often the extent of each partition is read again from the servers (see `#refresh`). */
const REFRESH_MS = 5000;

export interface JetStreamLogOptions {
  /** The connection (or where to find it once `start` runs); it stays the caller's (it is shared with the KV buckets). */
  readonly connection: NatsConnection | (() => NatsConnection);
  readonly partitions: number;
  /** Stream name (default HALFLIFE_LOG). */
  readonly stream?: string;
  /** Subjects are `<prefix>.<partition>` (default halflife.log). */
  readonly subjectPrefix?: string;
  /** Copies of every message across the cluster's servers (default 1; use 3 across zones). */
  readonly replicas?: number;
  /** Messages older than this are removed by the server (0 = keep forever). */
  readonly retentionMaxAgeMs?: number;
  /** The oldest messages are removed while the stream holds more than this (0 = no limit). */
  readonly retentionMaxBytes?: number;
  /** How messages are stored: `deflate` (default) or `none`. Either is read whatever this says. */
  readonly compression?: 'deflate' | 'none';
  /** How long the server remembers a batch id to drop a retried publish (default 2 min). */
  readonly duplicateWindowMs?: number;
  readonly pinnedKeys?: Readonly<Record<string, number>>;
  /** Where consumers' committed positions are kept (a KvOffsetStore on a JetStream KV bucket). */
  readonly offsets: OffsetStore;
  readonly logger?: Logger;
}

export interface JetStreamInfo {
  readonly name: string;
  readonly replicas: number;
  readonly messages: number;
  readonly bytes: number;
  /** The JetStream cluster's name and the server leading the stream (null on a server without a cluster). */
  readonly cluster: string | null;
  readonly leader: string | null;
  /** The other copies: whether each is current, and how many messages it is behind. */
  readonly peers: readonly { name: string; current: boolean; lagMessages: number; offline: boolean }[];
}

interface AppendRequest {
  readonly records: readonly AppendRecord[];
  readonly partitions: Int32Array;
  readonly acks: AppendAck[];
  failed: HalflifeError | undefined;
  resolve(acks: AppendAck[]): void;
  reject(err: unknown): void;
}

/**
 * The log on NATS JetStream: one stream, a subject per partition, one message per partition per group of appends
 * (a Node client publishing an event per message reaches only ~15k events/s). Publishes are pipelined and carry a
 * `Nats-Msg-Id` fixed when the batch is formed, so a batch retried after a lost ack is stored once. An append
 * resolves after JetStream's publish ack (what that ack means for durability depends on the server's settings:
 * docs/scale-out.md).
 *
 * Readers fetch messages with direct gets (`next_by_subj`, nats-server 2.9+); one headers-only consumer over the
 * stream tells this process of every stored message, from any node, which is what `tail` waits on. Record counts
 * per partition are exact for messages seen since start and estimated (messages × records of the newest message)
 * for older ones.
 */
export class JetStreamLog implements Log {
  /** Its ends are what this process's watcher has seen (see `LogReader.endsSeenLocally`). */
  readonly endsSeenLocally = true;
  readonly partitionCount: number;
  readonly #o: JetStreamLogOptions;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #partitioner: Partitioner;
  readonly #state = new LifecycleState('log');
  readonly #tails: TailWaiters;
  readonly #logger: Logger;
  #js!: JetStreamClient;
  #jsm!: JetStreamManager;
  #watcher: ConsumerMessages | undefined;
  #watching: Promise<void> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  /** Per partition: position of the first message, position after the newest, records and bytes (estimates). */
  readonly #first: number[];
  readonly #end: number[];
  readonly #records: number[];
  readonly #bytes: number[];
  /** The newest message counted in #records, per partition (the watcher and this process's own acks both count). */
  readonly #counted: number[];
  /** From this stream sequence on, every message of the partition is in `#recent` (the watcher's start, raised as it is trimmed). */
  readonly #exactFrom: number[];
  /** Per partition, the last group's messages of it (the next group's wait for them: see `#flush`). */
  readonly #partitionTurns: Promise<void>[];
  /**
   * Per partition, the newest messages' sequences and the records counted before each: `lag` is exact for a
   * position among them (where consumers are) and estimated further back.
   */
  readonly #recent: { seqs: number[]; before: number[] }[];
  readonly #batchPrefix = randomBytes(8).toString('hex');
  #batchNo = 0;
  /**
   * Groups are published while earlier ones wait for their acks (a replicated stream acks after a round between its
   * servers: one group at a time left the cores idle). Safe for order: every request in a later group arrived before
   * the earlier group was acknowledged, so no client can have sent it after seeing the earlier one's answer; within a
   * group a partition's messages still go one after another.
   */
  readonly #groups = new GroupCommit<AppendRequest>((group) => this.#flush(group), FLUSHES_IN_FLIGHT);
  #queuedBytes = 0;
  #maxPayload = 1024 * 1024;
  readonly #idListeners = new Set<(ids: readonly string[], timestampMs: number) => void>();

  constructor(options: JetStreamLogOptions) {
    if (!Number.isInteger(options.partitions) || options.partitions < 1) throw new RangeError(`partitions must be a positive integer (got ${options.partitions})`);
    this.#o = options;
    this.partitionCount = options.partitions;
    this.#stream = options.stream ?? 'HALFLIFE_LOG';
    this.#prefix = options.subjectPrefix ?? 'halflife.log';
    this.#partitioner = new Partitioner(options.partitions, options.pinnedKeys);
    this.#tails = new TailWaiters(options.partitions);
    this.#logger = options.logger ?? silentLogger;
    this.#first = new Array<number>(options.partitions).fill(0);
    this.#end = new Array<number>(options.partitions).fill(0);
    this.#records = new Array<number>(options.partitions).fill(0);
    this.#bytes = new Array<number>(options.partitions).fill(0);
    this.#counted = new Array<number>(options.partitions).fill(0);
    this.#exactFrom = new Array<number>(options.partitions).fill(Infinity);
    this.#partitionTurns = new Array<Promise<void>>(options.partitions).fill(Promise.resolve());
    this.#recent = Array.from({ length: options.partitions }, () => ({ seqs: [], before: [] }));
  }

  /** Creates the stream (or checks the one there), learns each partition's extent and starts watching for new messages. */
  async start(): Promise<void> {
    this.#state.assertOpen();
    const nc = typeof this.#o.connection === 'function' ? this.#o.connection() : this.#o.connection;
    const jsm = await retryingTimeouts(() => jetstreamManager(nc, { timeout: JETSTREAM_TIMEOUT_MS }));
    this.#jsm = jsm;
    this.#js = jetstream(nc, { timeout: JETSTREAM_TIMEOUT_MS });
    this.#maxPayload = nc.info?.max_payload ?? this.#maxPayload;
    const description = `halflife event log, ${this.partitionCount} partitions`;
    // Not found is "create it"; a timeout (a leader being elected) is asked again, never taken for "not there".
    const existing = await retryingTimeouts(() => jsm.streams.info(this.#stream)).catch((err: unknown) => {
      if (isNatsTimeout(err)) throw err;
      return undefined;
    });
    if (existing === undefined) {
      await this.#setup(`stream ${this.#stream}`, () => retryingTimeouts(() => this.#jsm.streams.add({
        name: this.#stream,
        description,
        subjects: [`${this.#prefix}.*`],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        num_replicas: this.#o.replicas ?? 1,
        max_age: (this.#o.retentionMaxAgeMs ?? 0) * 1_000_000,
        max_bytes: this.#o.retentionMaxBytes || -1,
        duplicate_window: (this.#o.duplicateWindowMs ?? 120_000) * 1_000_000,
        allow_direct: true,
      })));
    } else {
      const m = /, (\d+) partitions$/.exec(existing.config.description ?? '');
      if (m !== null && Number(m[1]) !== this.partitionCount) {
        throw new HalflifeError('LOG_PARTITIONS_MISMATCH', { where: `stream ${this.#stream}`, existing: Number(m[1]), configured: this.partitionCount });
      }
      if (existing.config.allow_direct !== true) await this.#jsm.streams.update(this.#stream, { ...existing.config, allow_direct: true });
    }
    // Watch from the stream's current end, then learn each partition's extent: a message stored in between is
    // seen by both, which only moves an end to where it already is.
    const last = (await retryingTimeouts(() => jsm.streams.info(this.#stream))).state.last_seq;
    this.#exactFrom.fill(last + 1);
    await this.#watchFrom(last + 1);
    await this.#refresh(true);
    // Retention removes old messages on the server: learn the first positions again now and then (stats), and check
    // that the watcher still hears of every message.
    this.#refreshTimer = setInterval(() => void this.#refresh(false).catch(() => {}), REFRESH_MS);
    this.#refreshTimer.unref();
  }

  async #setup<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      const hint = /insufficient resources|replicas/i.test(message) ? ` (${this.#o.replicas ?? 1} replicas need as many servers in the cluster: set nats.replicas to 1 for a single server)` : '';
      throw new HalflifeError('NATS_SETUP_FAILED', { what, reason: `${message}${hint}` }, { cause: err });
    }
  }

  /** Follows every message stored from `seq` on (headers only); started again from where it was if it ever stops. */
  async #watchFrom(seq: number): Promise<void> {
    let next = seq;
    const consumer = await retryingTimeouts(() =>
      this.#js.consumers.get(this.#stream, {
        filter_subjects: `${this.#prefix}.*`,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: next,
        headers_only: true,
      }),
    );
    const watcher = await retryingTimeouts(() => consumer.consume({ max_messages: 1000 }));
    this.#watcher = watcher;
    this.#watching = (async () => {
      for await (const m of watcher) {
        this.#heardAt = performance.now();
        next = m.seq + 1;
        this.#seen(m.subject, m.seq, m.headers);
      }
    })()
      .catch((err: unknown) => this.#logger.error({ err }, 'the JetStream log watcher failed'))
      .then(async () => {
        if (this.#state.closed) return;
        this.#logger.warn({ from: next }, 'the JetStream log watcher stopped; starting it again');
        await new Promise((r) => setTimeout(r, 1000));
        if (!this.#state.closed) await this.#watchFrom(next).catch((err: unknown) => this.#logger.error({ err }, 'the JetStream log watcher could not start again'));
      });
  }

  /** A message of the log is stored (told by the watcher): its ids for the other processes' dedup, its records readable. */
  #seen(subject: string, seq: number, headers: { get(k: string): string } | undefined): void {
    const p = this.#partitionOf(subject);
    if (p < 0) return;
    const ids = headers?.get(HEADER_IDS);
    if (ids && this.#idListeners.size > 0 && headers?.get(HEADER_ORIGIN) !== this.#batchPrefix) {
      try {
        const list = JSON.parse(Buffer.from(ids, 'base64').toString('utf8')) as string[];
        const ts = Number(headers?.get(HEADER_MAX_TS) || Date.now());
        for (const l of this.#idListeners) l(list, ts);
      } catch (err) {
        this.#logger.warn({ err, seq }, 'a batch carried ids that could not be read');
      }
    }
    this.#advance(p, seq, Number(headers?.get(HEADER_RECORDS) || 1));
  }

  #partitionOf(subject: string): number {
    const p = Number(subject.slice(this.#prefix.length + 1));
    return Number.isInteger(p) && p >= 0 && p < this.partitionCount ? p : -1;
  }

  /** A message of partition p with sequence seq and `records` records is stored: they are readable. */
  #advance(p: number, seq: number, records: number): void {
    if (seq > this.#counted[p]) {
      if (this.#records[p] === 0) this.#first[p] = seq * SHIFT;
      this.#counted[p] = seq;
      const recent = this.#recent[p];
      if (recent.seqs.length >= RECENT_MESSAGES) {
        this.#exactFrom[p] = Math.max(this.#exactFrom[p], recent.seqs[RECENT_MESSAGES / 2 - 1] + 1);
        recent.seqs.splice(0, RECENT_MESSAGES / 2);
        recent.before.splice(0, RECENT_MESSAGES / 2);
      }
      recent.seqs.push(seq);
      recent.before.push(this.#records[p]);
      this.#records[p] += records;
    } else if (seq >= this.#exactFrom[p]) {
      // Told of out of order (a publish acknowledged after a later one, another process's message seen after this
      // one's ack, also before the first one counted): counted once, in its place.
      const { seqs, before } = this.#recent[p];
      const lo = firstAtOrAfter(seqs, seq);
      if (seqs[lo] !== seq) {
        seqs.splice(lo, 0, seq);
        before.splice(lo, 0, before[lo]);
        for (let i = lo + 1; i < seqs.length; i++) before[i] += records;
        this.#records[p] += records;
        this.#first[p] = Math.min(this.#first[p], seq * SHIFT);
      }
    }
    const after = (seq + 1) * SHIFT;
    if (after > this.#end[p]) {
      this.#end[p] = after;
      this.#tails.notify(p);
    }
  }

  /** When the watcher last delivered a message (`performance.now`). */
  #heardAt = performance.now();

  async #refresh(initial: boolean): Promise<void> {
    const info = await this.#jsm.streams.info(this.#stream, { subjects_filter: `${this.#prefix}.*` });
    const subjects = (info.state.subjects ?? {}) as Record<string, number>;
    const totalMessages = Math.max(1, info.state.messages);
    let missed = false;
    for (let p = 0; p < this.partitionCount; p++) {
      const subject = `${this.#prefix}.${p}`;
      const messages = subjects[subject] ?? 0;
      const first = messages === 0 ? null : await this.#jsm.direct.getMessage(this.#stream, { seq: 1, next_by_subj: subject });
      const last = messages === 0 ? null : await this.#jsm.direct.getMessage(this.#stream, { last_by_subj: subject });
      if (!initial && last !== null && last.seq > this.#counted[p]) missed = true;
      if (initial) {
        if (last !== null) {
          // Records before the newest message are estimated (messages × its count); its own are known.
          const inLast = Number(last.header?.get(HEADER_RECORDS) || 1);
          this.#records[p] += (messages - 1) * inLast;
          this.#advance(p, last.seq, inLast);
        }
      }
      this.#first[p] = firstAfterRefresh({ current: this.#first[p], end: this.#end[p], messages, firstSeq: first?.seq ?? null, infoFirstSeq: info.state.first_seq, infoLastSeq: info.state.last_seq });
      this.#bytes[p] = Math.round((info.state.bytes * messages) / totalMessages);
    }
    // Messages stored that the watcher never told of, and it has been quiet a whole round: its consumer went with a
    // server that died and it waits for ever. Stopped, it starts again from the last message it saw (see `#watchFrom`).
    if (missed && performance.now() - this.#heardAt > REFRESH_MS) {
      this.#logger.warn({}, 'the JetStream log watcher fell silent while messages were stored; starting it again');
      this.#heardAt = performance.now();
      await this.#watcher?.stop();
    }
  }

  partitionFor(key: string): PartitionId {
    return this.#partitioner.forKey(key);
  }

  /** The stream as the servers see it: copies, size, and which server leads it and how far each copy is behind. */
  async streamInfo(): Promise<JetStreamInfo> {
    const info = await this.#jsm.streams.info(this.#stream);
    const c = info.cluster;
    return {
      name: this.#stream,
      replicas: info.config.num_replicas,
      messages: info.state.messages,
      bytes: info.state.bytes,
      cluster: c?.name ?? null,
      leader: c?.leader ?? null,
      peers: (c?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, lagMessages: r.lag ?? 0, offline: r.offline === true })),
    };
  }

  watchIds(listener: (ids: readonly string[], timestampMs: number) => void): () => void {
    this.#idListeners.add(listener);
    return () => this.#idListeners.delete(listener);
  }

  /** Bytes of appends waiting for the next publish. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  append(records: readonly AppendRecord[]): Promise<AppendAck[]> {
    this.#state.assertOpen();
    if (records.length === 0) return Promise.resolve([]);
    const partitions = new Int32Array(records.length);
    let unkeyed = -1;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      if (r.partition !== undefined) partitions[i] = this.#check(r.partition);
      else if (r.key !== undefined) partitions[i] = this.#partitioner.forKey(r.key);
      else partitions[i] = unkeyed < 0 ? (unkeyed = this.#partitioner.nextUnkeyed()) : unkeyed;
      this.#queuedBytes += valueByteLength(r.value);
    }
    return new Promise<AppendAck[]>((resolve, reject) => {
      this.#groups.add({ records, partitions, acks: new Array<AppendAck>(records.length), failed: undefined, resolve, reject });
    });
  }

  async #flush(group: AppendRequest[]): Promise<void> {
    this.#queuedBytes = 0;
    try {
      const perPartition: { req: AppendRequest; index: number }[][] = Array.from({ length: this.partitionCount }, () => []);
      for (const req of group) for (let i = 0; i < req.records.length; i++) perPartition[req.partitions[i]].push({ req, index: i });
      // Room for the headers and the protocol line within the server's max_payload.
      const limit = Math.max(64 * 1024, this.#maxPayload - 4096);
      // Partitions are published side by side; a partition's messages one after another, also across the groups in
      // flight (a message retried after a lost ack, or after a leader died, is never stored after a later one of its
      // partition), and once one fails the rest of that partition in this group is not sent.
      // Settled, not all: when one partition fails outright, the others' publishes still under way must land (or
      // fail) before the requests are answered, so a request says every record that was stored.
      const settled = await Promise.allSettled(
        perPartition.map(async (items, p) => {
          if (items.length === 0) return;
          const before = this.#partitionTurns[p];
          let done!: () => void;
          this.#partitionTurns[p] = new Promise<void>((resolve) => (done = resolve));
          try {
            await before;
            await this.#publishPartition(p, items, limit);
          } finally {
            done();
          }
        }),
      );
      for (const [p, r] of settled.entries()) {
        if (r.status === 'fulfilled') continue;
        const failure = new HalflifeError('LOG_WRITE_FAILED', { reason: (r.reason as Error).message }, { cause: r.reason });
        for (const { req } of perPartition[p]) req.failed ??= failure;
      }
    } catch (err) {
      const failure = new HalflifeError('LOG_WRITE_FAILED', { reason: (err as Error).message }, { cause: err });
      for (const req of group) req.failed ??= failure;
    }
    for (const req of group) {
      if (req.failed === undefined) {
        req.resolve(req.acks);
        continue;
      }
      // Other partitions' messages of the request may be stored: say which records, so they are not sent twice.
      const stored: number[] = [];
      for (let i = 0; i < req.acks.length; i++) if (req.acks[i] !== undefined) stored.push(i);
      if (stored.length === 0) req.reject(req.failed);
      else {
        const f = req.failed;
        req.reject(withStoredBeforeFailure(new HalflifeError(f.code, f.details, { message: f.message, cause: f.cause }), stored));
      }
    }
  }

  /** Publishes a group's records of one partition, one message after another; stops at the first that fails. */
  async #publishPartition(p: number, items: { req: AppendRequest; index: number }[], limit: number): Promise<void> {
    let start = 0;
    while (start < items.length) {
      let bytes = MAGIC.length + 4;
      let end = start;
      while (end < items.length && end - start < MAX_RECORDS_PER_MESSAGE) {
        const size = recordSize(items[end].req.records[items[end].index]);
        if (end > start && bytes + size > limit) break;
        bytes += size;
        end++;
      }
      if (!(await this.#publish(p, items.slice(start, end), bytes))) {
        const failure = items[start].req.failed!;
        for (const { req } of items.slice(end)) req.failed ??= failure;
        return;
      }
      start = end;
    }
  }

  /** Publishes one message; false (the items marked failed) when JetStream did not take it. */
  async #publish(p: number, items: { req: AppendRequest; index: number }[], bytes: number): Promise<boolean> {
    const body = Buffer.allocUnsafe(bytes);
    MAGIC.copy(body, 0);
    body.writeUInt32LE(items.length, 4);
    let pos = 8;
    let maxTs = -Infinity;
    const ids: string[] = [];
    for (const { req, index } of items) {
      const r = req.records[index];
      pos = writeRecord(body, pos, r);
      if (r.timestampMs > maxTs) maxTs = r.timestampMs;
      if (r.id !== undefined) ids.push(r.id);
    }
    let message = body.subarray(0, pos);
    if (this.#o.compression !== 'none' && pos >= COMPRESS_FROM_BYTES) {
      // One output chunk (zlib's default of 16 KiB makes a round of bookkeeping per chunk).
      const packed = deflateRawSync(body.subarray(8, pos), { level: 1, chunkSize: pos + 1024 });
      if (packed.length + 12 < pos) {
        const head = Buffer.allocUnsafe(12);
        MAGIC_DEFLATE.copy(head, 0);
        head.writeUInt32LE(items.length, 4);
        head.writeUInt32LE(pos - 8, 8);
        message = Buffer.concat([head, packed]);
      }
    }
    if (pos - 8 > MAX_BATCH_BYTES) {
      // Compressed it might fit a message, but no reader would take it (see `plainBatch`).
      for (const { req } of items) req.failed ??= new HalflifeError('LOG_WRITE_FAILED', { reason: `a record of ${pos - 8} bytes exceeds the most a batch can hold (${MAX_BATCH_BYTES})` });
      return false;
    }
    if (message.length > this.#maxPayload) {
      for (const { req } of items) req.failed ??= new HalflifeError('LOG_WRITE_FAILED', { reason: `a record of ${message.length} bytes exceeds the NATS server's max_payload (${this.#maxPayload})` });
      return false;
    }
    const h = natsHeaders();
    h.set(HEADER_RECORDS, String(items.length));
    h.set(HEADER_MAX_TS, String(maxTs));
    h.set(HEADER_ORIGIN, this.#batchPrefix);
    if (ids.length > 0) h.set(HEADER_IDS, Buffer.from(JSON.stringify(ids)).toString('base64'));
    // Fixed before the first attempt: a retry after a lost ack is recognised by the server and stored once.
    const msgID = `${this.#batchPrefix}-${++this.#batchNo}`;
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const ack = await this.#js.publish(`${this.#prefix}.${p}`, message, { msgID, headers: h, timeout: 10_000 });
        for (let i = 0; i < items.length; i++) items[i].req.acks[items[i].index] = { partition: partitionId(p), offset: toOffset(ack.seq * SHIFT + i) };
        this.#advance(p, ack.seq, items.length);
        return true;
      } catch (err) {
        lastErr = err;
        this.#logger.warn({ err, partition: p, attempt }, 'JetStream publish failed; retrying with the same batch id');
        // A leader election answers "no responders" at once: give it time.
        if (attempt < 2) await new Promise((r) => setTimeout(r, 250 * 4 ** attempt));
      }
    }
    const failure = new HalflifeError('LOG_WRITE_FAILED', { reason: `JetStream did not acknowledge the batch: ${(lastErr as Error).message}` }, { cause: lastErr });
    for (const { req } of items) req.failed ??= failure;
    return false;
  }

  async read(partition: number, from: number, options: ReadOptions = {}): Promise<LogRecord[]> {
    return batchToRecords(await this.readBatch(partition, from, options));
  }

  async readBatch(partition: number, from: number, options: ReadOptions = {}): Promise<RecordBatch> {
    this.#state.assertOpen();
    const p = this.#check(partition);
    const maxRecords = options.maxRecords ?? 1000;
    const maxBytes = options.maxBytes ?? 1 << 20;
    const subject = `${this.#prefix}.${p}`;
    let seq = Math.max(1, Math.floor(from / SHIFT));
    let skip = Math.floor(from / SHIFT) >= 1 ? from % SHIFT : 0;
    const chunks: Buffer[] = [];
    const cols = { offsets: [] as number[], timestamps: [] as number[], valueStarts: [] as number[], valueEnds: [] as number[], keyStarts: [] as number[], keyEnds: [] as number[] };
    let base = 0;
    let bytes = 0;
    let next = from;
    while (cols.offsets.length < maxRecords && bytes < maxBytes && seq * SHIFT < this.#end[p]) {
      const m: StoredMsg | null = await this.#jsm.direct.getMessage(this.#stream, { seq, next_by_subj: subject });
      if (m === null) break;
      if (m.seq !== seq) skip = 0;
      const data = plainBatch(m);
      const n = decodeInto(data, base, m.seq, skip, maxRecords - cols.offsets.length, maxBytes - bytes, cols);
      chunks.push(data);
      base += data.length;
      bytes += n.bytes;
      next = n.next;
      if (n.next < (m.seq + 1) * SHIFT) break;
      seq = m.seq + 1;
      skip = 0;
    }
    const count = cols.offsets.length;
    return {
      partition: partitionId(p),
      count,
      buffer: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
      offsets: Float64Array.from(cols.offsets),
      timestamps: Float64Array.from(cols.timestamps),
      valueStarts: Uint32Array.from(cols.valueStarts),
      valueEnds: Uint32Array.from(cols.valueEnds),
      keyStarts: Int32Array.from(cols.keyStarts),
      keyEnds: Int32Array.from(cols.keyEnds),
      next: count === 0 ? Math.max(from, this.#first[p]) : next,
    };
  }

  /**
   * The first position whose record is at or after `timeMs`: a binary search over the partition's messages by
   * their newest record time (a header), then a scan of the message found.
   */
  async offsetForTime(partition: number, timeMs: number): Promise<Offset> {
    this.#state.assertOpen();
    const p = this.#check(partition);
    const subject = `${this.#prefix}.${p}`;
    let lo = Math.max(1, Math.floor(this.#first[p] / SHIFT));
    let hi = Math.floor(this.#end[p] / SHIFT);
    let best: StoredMsg | undefined;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const m = await this.#jsm.direct.getMessage(this.#stream, { seq: mid, next_by_subj: subject });
      if (m === null || m.seq >= hi) hi = mid;
      else if (Number(m.header?.get(HEADER_MAX_TS) ?? Infinity) >= timeMs) {
        best = m;
        hi = mid;
      } else lo = m.seq + 1;
    }
    if (best === undefined) return toOffset(this.#end[p]);
    const data = plainBatch(best);
    const cols = { offsets: [] as number[], timestamps: [] as number[], valueStarts: [] as number[], valueEnds: [] as number[], keyStarts: [] as number[], keyEnds: [] as number[] };
    decodeInto(data, 0, best.seq, 0, MAX_RECORDS_PER_MESSAGE, Infinity, cols);
    const i = cols.timestamps.findIndex((t) => t >= timeMs);
    return toOffset(i < 0 ? (best.seq + 1) * SHIFT : cols.offsets[i]);
  }

  #partitionStats(p: number): PartitionStats {
    return { partition: partitionId(p), firstOffset: toOffset(Math.min(this.#first[p], this.#end[p])), nextOffset: toOffset(this.#end[p]), records: this.#records[p], bytes: this.#bytes[p] };
  }

  stats(): LogStats {
    const partitions = Array.from({ length: this.partitionCount }, (_, p) => this.#partitionStats(p));
    return { records: partitions.reduce((a, s) => a + s.records, 0), bytes: partitions.reduce((a, s) => a + s.bytes, 0), partitions };
  }

  lag(partition: number, from: number): number {
    const p = this.#check(partition);
    if (from >= this.#end[p]) return 0;
    const { seqs, before } = this.#recent[p];
    const seq = Math.floor(from / SHIFT);
    if (seqs.length === 0 || seq < seqs[0]) return lagOf(this.#partitionStats(p), from);
    const lo = firstAtOrAfter(seqs, seq);
    if (lo === seqs.length) return 0;
    const inMessage = (lo + 1 < seqs.length ? before[lo + 1] : this.#records[p]) - before[lo];
    const skipped = seqs[lo] === seq ? Math.min(from % SHIFT, inMessage) : 0;
    return Math.max(0, this.#records[p] - before[lo] - skipped);
  }

  tail(partition: number, from: number, signal?: AbortSignal): Promise<boolean> {
    const p = this.#check(partition);
    return this.#tails.wait(p, () => this.#end[p] > from, signal);
  }

  async commitOffsets(consumer: string, offsets: Readonly<Record<number, number>>): Promise<void> {
    for (const p of Object.keys(offsets)) this.#check(Number(p));
    await this.#o.offsets.commitOffsets(consumer, offsets);
  }

  committedOffsets(consumer: string): Promise<Record<number, Offset>> {
    return this.#o.offsets.committedOffsets(consumer);
  }

  #check(partition: number): number {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitionCount) {
      throw new HalflifeError('PARTITION_NOT_FOUND', { partition, partitions: this.partitionCount, last: this.partitionCount - 1 });
    }
    return partition;
  }

  /** Waits for pending publishes, stops watching. The connection stays open (it is the caller's). */
  close(): Promise<void> {
    return this.#state.close(async () => {
      clearInterval(this.#refreshTimer);
      await this.#groups.drain();
      this.#tails.close();
      await this.#watcher?.close();
      await this.#watching;
    });
  }
}

/** A record's bytes in a message, with its id's share of the ids header (base64 of JSON: × 4/3, quotes, comma). */
function recordSize(r: AppendRecord): number {
  return 16 + (r.key === undefined ? 0 : Buffer.byteLength(r.key)) + valueByteLength(r.value) + (r.id === undefined ? 0 : Math.ceil(((Buffer.byteLength(JSON.stringify(r.id)) + 1) * 4) / 3) + 4);
}

function writeValue(buf: Buffer, pos: number, value: RecordValue): number {
  if (typeof value === 'string') return pos + buf.write(value, pos, 'utf8');
  if (value instanceof Uint8Array) {
    buf.set(value, pos);
    return pos + value.length;
  }
  return value.writeTo(buf, pos);
}

function writeRecord(buf: Buffer, pos: number, r: AppendRecord): number {
  buf.writeDoubleLE(r.timestampMs, pos);
  pos += 8;
  if (r.key === undefined) {
    buf.writeInt32LE(-1, pos);
    pos += 4;
  } else {
    const at = pos + 4;
    const end = at + buf.write(r.key, at, 'utf8');
    buf.writeInt32LE(end - at, pos);
    pos = end;
  }
  const vlen = valueByteLength(r.value);
  buf.writeUInt32LE(vlen, pos);
  return writeValue(buf, pos + 4, r.value);
}

interface Columns {
  offsets: number[];
  timestamps: number[];
  valueStarts: number[];
  valueEnds: number[];
  keyStarts: number[];
  keyEnds: number[];
}

/**
 * Where a partition's first message is, from a refresh: the stream's info (the leader's count of the partition's
 * messages, and its last sequence then) and a direct get of the partition's first message (any copy of the stream may
 * answer it, one behind the leader too). Never past a message that is stored: readers that find nothing jump to it
 * (`readBatch`), so a position past a stored message would skip it.
 * - A first message found: it (copies apply in order, so one that has it has every message of the partition before it
 *   that is still stored).
 * - The info counted none: every message of the partition stored is newer than the info, so at most the info's last
 *   sequence + 1 (a message the watcher told of since then must stay readable), and at most the end (nothing stored).
 * - The info counted some and the direct get found none (a copy behind the leader): at most the stream's first
 *   sequence then (no message stored now is older), and at most where it was. Not simply where it was: before a
 *   refresh found the first message, `#advance` may have put it at the first message the watcher told of, past older
 *   ones stored before this process started.
 */
export function firstAfterRefresh(r: { current: number; end: number; messages: number; firstSeq: number | null; infoFirstSeq: number; infoLastSeq: number }): number {
  if (r.firstSeq !== null) return r.firstSeq * SHIFT;
  if (r.messages === 0) return Math.min(r.end, (r.infoLastSeq + 1) * SHIFT);
  return Math.min(r.current, r.infoFirstSeq * SHIFT);
}

/** The index of the first of ascending `seqs` at or after `seq` (`seqs.length` when there is none). */
function firstAtOrAfter(seqs: readonly number[], seq: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seqs[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A stored message's batch as a plain batch (inflated if it was stored compressed). */
function plainBatch(m: StoredMsg): Buffer {
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  if (data.length < 12 || !data.subarray(0, 4).equals(MAGIC_DEFLATE)) return data;
  const length = data.readUInt32LE(8);
  const corrupt = (reason: string) => new HalflifeError('SEGMENT_CORRUPT', { partition: -1, segment: `stream message ${m.seq}`, position: 0, reason });
  // The stated length bounds the output (a damaged message cannot make this process inflate without end), and is
  // itself bounded: a batch is cut at the server's max_payload, which NATS caps at 64 MiB.
  if (length > MAX_BATCH_BYTES) throw corrupt(`it states ${length} bytes of records, more than a batch can hold`);
  let raw: Buffer;
  try {
    raw = inflateRawSync(data.subarray(12), { maxOutputLength: Math.max(1, length), chunkSize: Math.max(64, Math.min(length, 1 << 20)) });
  } catch (err) {
    throw corrupt(`its compressed records do not inflate: ${(err as Error).message}`);
  }
  if (raw.length !== length) throw corrupt(`its records inflate to ${raw.length} bytes, not the ${length} it states`);
  const out = Buffer.allocUnsafe(8 + length);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(data.readUInt32LE(4), 4);
  raw.copy(out, 8);
  return out;
}

/**
 * Appends the records of one message (from index `skip`) to `cols`, their byte positions shifted by `base`; stops
 * at `maxRecords` / `maxBytes` (at least one record). Returns the bytes taken and the position after the last.
 */
function decodeInto(data: Buffer, base: number, seq: number, skip: number, maxRecords: number, maxBytes: number, cols: Columns): { bytes: number; next: number } {
  if (data.length < 8 || !data.subarray(0, 4).equals(MAGIC)) throw new HalflifeError('SEGMENT_CORRUPT', { partition: -1, segment: `stream message ${seq}`, position: 0, reason: 'not a halflife batch' });
  const count = data.readUInt32LE(4);
  let pos = 8;
  let taken = 0;
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const start = pos;
    const ts = data.readDoubleLE(pos);
    const klen = data.readInt32LE(pos + 8);
    pos += 12;
    const ks = klen < 0 ? -1 : pos;
    if (klen > 0) pos += klen;
    const vlen = data.readUInt32LE(pos);
    pos += 4;
    const vs = pos;
    pos += vlen;
    if (pos > data.length) throw new HalflifeError('SEGMENT_CORRUPT', { partition: -1, segment: `stream message ${seq}`, position: start, reason: 'record runs past the message' });
    if (i < skip) continue;
    if (taken > 0 && (taken >= maxRecords || bytes >= maxBytes)) return { bytes, next: seq * SHIFT + i };
    cols.offsets.push(seq * SHIFT + i);
    cols.timestamps.push(ts);
    cols.keyStarts.push(ks < 0 ? -1 : base + ks);
    cols.keyEnds.push(ks < 0 ? -1 : base + ks + klen);
    cols.valueStarts.push(base + vs);
    cols.valueEnds.push(base + vs + vlen);
    taken++;
    bytes += pos - start;
  }
  return { bytes, next: (seq + 1) * SHIFT };
}
