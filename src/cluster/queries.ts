import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { HalflifeError, silentLogger, type Logger } from '../core/index.js';
import { decodeState, encodeState, type PartialGroup, type RemotePartials, type RowQuery } from '../engine/index.js';
import './errors.js';

/** What a worker answers: the partitions it runs (none while they change or a lease is stale) and its partial groups. */
interface Answer {
  node: string;
  partitions: number[];
  groups?: PartialGroup[][];
  error?: { code: string; message: string; details: Record<string, unknown> };
}

export interface ClusterQueriesOptions {
  /** The process's NATS connection (while it is connected). */
  readonly connection: () => NatsConnection;
  /** Requests go to `<subject>`; every process answers it. */
  readonly subject: string;
  readonly self: string;
  readonly partitions: number;
  /** The partitions this process serves (see `PartitionOwnership.serving`); undefined: in a change, or stale. */
  readonly serving: () => number[] | undefined;
  /** Rises at every change of the partitions this process runs (`PartitionOwnership.epoch`). */
  readonly epoch: () => number;
  /** This process's partial groups of a view (one list per engine worker thread). */
  readonly local: (view: string, q: RowQuery) => Promise<PartialGroup[][]>;
  /** How long a query waits for every partition to be answered for, retrying meanwhile (default 10 s). */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

/** Room left in a NATS message for the frame header (a server's max_payload is 1 MiB by default). */
const FRAME_OVERHEAD = 1024;

/**
 * Queries over the cluster: any process answers a view query by asking every process for its partial groups of the
 * view (one request on a subject they all listen to; each answers with the partitions it runs) and merging them
 * with its own (counts add, sketches merge). An answer is used only when every partition is answered for exactly
 * once: while partitions move, or a worker that died still holds leases, the query is retried, and after
 * `timeoutMs` fails with ENGINE_UNAVAILABLE (retryable) rather than answer with part of the data.
 */
export class ClusterQueries implements RemotePartials {
  readonly #o: ClusterQueriesOptions;
  readonly #logger: Logger;
  #sub: Subscription | undefined;

  constructor(options: ClusterQueriesOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Starts answering the other processes' requests. */
  start(): void {
    const nc = this.#o.connection();
    this.#sub = nc.subscribe(this.#o.subject, {
      callback: (err, msg) => {
        if (err !== null || msg.reply === undefined || msg.reply === '') return;
        const reply = msg.reply;
        void this.#answer(msg.data)
          .then((answer) => this.#send(nc, reply, answer))
          .catch((e: unknown) => this.#logger.warn({ err: e }, 'a cluster query could not be answered'));
      },
    });
  }

  async #answer(data: Uint8Array): Promise<Answer> {
    const { view, q } = JSON.parse(Buffer.from(data).toString('utf8')) as { view: string; q: RowQuery };
    const partitions = this.#o.serving();
    if (partitions === undefined || partitions.length === 0) return { node: this.#o.self, partitions: [] };
    try {
      const groups = await this.#o.local(view, q);
      // Still the same partitions once the groups are read: else they may mix states from before and after a change.
      const after = this.#o.serving();
      if (after === undefined || after.join() !== partitions.join()) return { node: this.#o.self, partitions: [] };
      return { node: this.#o.self, partitions, groups };
    } catch (err) {
      const e = err instanceof HalflifeError ? err : new HalflifeError('INTERNAL', { reason: (err as Error).message });
      return { node: this.#o.self, partitions, error: { code: e.code, message: e.message, details: (e.details ?? {}) as Record<string, unknown> } };
    }
  }

  /** An answer in frames of at most the server's max payload: [u32 index][u32 count][u16 id length][node id][part]. */
  #send(nc: NatsConnection, reply: string, answer: Answer): void {
    const bytes = encodeState(answer);
    const room = Math.max(4096, (nc.info?.max_payload ?? 1024 * 1024) - FRAME_OVERHEAD);
    const count = Math.max(1, Math.ceil(bytes.length / room));
    for (let i = 0; i < count; i++) {
      const part = bytes.subarray(i * room, (i + 1) * room);
      const id = Buffer.from(this.#o.self, 'utf8');
      const frame = Buffer.allocUnsafe(10 + id.length + part.length);
      frame.writeUInt32BE(i, 0);
      frame.writeUInt32BE(count, 4);
      frame.writeUInt16BE(id.length, 8);
      id.copy(frame, 10);
      part.copy(frame, 10 + id.length);
      nc.publish(reply, frame);
    }
  }

  /**
   * The partial groups of a view held by the other processes, for this one to merge with its own: see the class.
   */
  async partials(view: string, q: RowQuery): Promise<{ groups: PartialGroup[][]; epoch: number }> {
    const deadline = performance.now() + (this.#o.timeoutMs ?? 10_000);
    let missing: number[] = [];
    for (let attempt = 0; ; attempt++) {
      // This process's own state is merged too: while its partitions change, or a lease of its own is stale (it may
      // have been taken while it paused), what it holds may also be counted elsewhere. Asked again once settled.
      const epoch = this.#o.epoch();
      const local = this.#o.serving();
      if (local !== undefined && local.length === this.#o.partitions) return { groups: [], epoch };
      const got = local === undefined ? { ok: false as const, missing: [] as number[] } : await this.#gather(view, q, local, Math.max(250, Math.min(2000, deadline - performance.now())));
      if (got.ok) return { groups: got.groups, epoch };
      missing = got.missing;
      // An error answer (a view another process has not loaded yet, just created) is asked again until the deadline.
      if (got.error !== undefined && performance.now() + 200 > deadline) throw new HalflifeError(got.error.code, got.error.details, { message: got.error.message });
      if (performance.now() + 200 > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt)));
    }
    throw new HalflifeError('ENGINE_UNAVAILABLE', {
      reason:
        missing.length === 0
          ? 'the partitions of this process are moving (or its leases are being renewed); retry shortly'
          : `no worker answers for partition${missing.length === 1 ? '' : 's'} ${missing.join(', ')} (a worker stopped and its leases have not expired yet, or partitions are moving); retry shortly`,
    });
  }

  unchanged(epoch: number): boolean {
    return this.#o.epoch() === epoch && this.#o.serving() !== undefined;
  }

  /** One round of asking: until every partition is answered for once (or twice: then it fails), or `waitMs`. */
  async #gather(view: string, q: RowQuery, local: readonly number[], waitMs: number): Promise<{ ok: true; groups: PartialGroup[][] } | { ok: false; missing: number[]; error?: Answer['error'] }> {
    const nc = this.#o.connection();
    const inbox = `_INBOX.${this.#o.self}.${Math.random().toString(36).slice(2)}`;
    const count = new Array<number>(this.#o.partitions).fill(0);
    for (const p of local) count[p]++;
    const answers: Answer[] = [];
    const frames = new Map<string, Buffer[]>();
    const sub = nc.subscribe(inbox);
    const timer = setTimeout(() => sub.unsubscribe(), waitMs);
    const done = (async () => {
      for await (const msg of sub) {
        const data = Buffer.from(msg.data);
        const index = data.readUInt32BE(0);
        const total = data.readUInt32BE(4);
        const idLength = data.readUInt16BE(8);
        const key = data.subarray(10, 10 + idLength).toString('utf8');
        // Frames of one answer arrive in order from one publisher; an answer is whole once its last frame arrives.
        const parts = frames.get(key) ?? [];
        parts[index] = data.subarray(10 + idLength);
        frames.set(key, parts);
        if (index !== total - 1) continue;
        frames.delete(key);
        const answer = decodeState(Buffer.concat(parts)) as Answer;
        if (answer.node === this.#o.self) continue;
        answers.push(answer);
        for (const p of answer.partitions) count[p]++;
        if (answer.error !== undefined || count.every((c) => c >= 1)) break;
      }
    })();
    nc.publish(this.#o.subject, Buffer.from(JSON.stringify({ view, q })), { reply: inbox });
    await done;
    clearTimeout(timer);
    sub.unsubscribe();
    const error = answers.find((a) => a.error !== undefined)?.error;
    if (error !== undefined) return { ok: false, missing: [], error };
    const missing = count.flatMap((c, p) => (c === 1 ? [] : [p]));
    if (missing.length > 0) return { ok: false, missing };
    return { ok: true, groups: answers.flatMap((a) => (a.partitions.length > 0 ? (a.groups ?? []) : [])) };
  }

  close(): void {
    this.#sub?.unsubscribe();
  }
}
