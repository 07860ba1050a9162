import { HalflifeError, LifecycleState, SupervisedWorker, silentLogger, type Logger } from '../core/index.js';
import type { SchemaRegistry, SchemaVersion } from '../schema/index.js';
import type { BodyFormat, CheckedEvents, CheckLimits, ShedLevel } from './event-checker.js';
import type { FromIngestWorker, IngestWorkerInit, ToIngestWorker } from './ingest-protocol.js';
import './errors.js';

export interface IngestWorkersOptions {
  /** Worker threads (at least 1). */
  readonly count: number;
  /** `workerTimeoutMs` (ingest config): a request still being checked after this fails and its worker is replaced. */
  readonly limits: CheckLimits & { readonly workerTimeoutMs?: number };
  readonly registry: SchemaRegistry;
  readonly logger?: Logger;
  /** Delay before a worker that stopped is replaced (default 1 s). */
  readonly restartDelayMs?: number;
}

interface Pending {
  resolve(v: CheckedEvents): void;
  reject(e: unknown): void;
  readonly timer: NodeJS.Timeout;
  /** When the request was handed to the worker (performance.now()). */
  readonly sentMs: number;
}

/** What /healthz says of the workers. */
export interface IngestWorkersHealth {
  readonly configured: number;
  readonly running: number;
  /** How long the oldest request still being checked has been on its worker (0: none). */
  readonly oldestCheckMs: number;
  readonly budgetMs: number;
}

/** Default time budget of one request's check on a worker (ingest.workerTimeoutMs). */
export const DEFAULT_WORKER_TIMEOUT_MS = 10_000;

/** One worker thread and the requests it is checking. */
interface Slot {
  readonly supervisor: SupervisedWorker<IngestWorkerInit, FromIngestWorker>;
  readonly pending: Map<number, Pending>;
}

/**
 * Ingest worker threads: request bodies are parsed, checked and encoded off the server thread, which then only
 * receives bodies, appends records and answers. JSON.parse is the pipeline's largest cost; here it runs on
 * another core. Bodies travel in transferred ArrayBuffers (no copy), and so do the encoded records coming back.
 *
 * Schemas follow the registry in order: a new version is posted to every worker as it comes into force, before
 * any later request, so a request never sees an older schema than one registered before it arrived.
 */
export class IngestWorkers {
  readonly #o: IngestWorkersOptions;
  readonly #logger: Logger;
  readonly #slots: Slot[];
  readonly #state = new LifecycleState('ingest workers');
  #next = 1;
  #closing = false;

  constructor(options: IngestWorkersOptions) {
    if (!Number.isInteger(options.count) || options.count < 1) throw new RangeError(`count must be a positive integer (got ${options.count})`);
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#slots = Array.from({ length: options.count }, () => this.#slot());
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    this.#o.registry.onRegistered((version) => this.#broadcast(version));
    await Promise.all(this.#slots.map((s) => s.supervisor.start()));
  }

  /** Worker threads running now (fewer while a stopped one is being replaced). */
  get running(): number {
    return this.#closing ? 0 : this.#slots.filter((s) => s.supervisor.worker !== undefined).length;
  }

  health(): IngestWorkersHealth {
    const now = performance.now();
    let oldest = 0;
    for (const s of this.#slots) for (const p of s.pending.values()) oldest = Math.max(oldest, now - p.sentMs);
    return { configured: this.#slots.length, running: this.running, oldestCheckMs: Math.round(oldest), budgetMs: this.#o.limits.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS };
  }

  /** Whether a worker is running to take a request (else check on the calling thread). */
  get available(): boolean {
    return !this.#closing && this.#slots.some((s) => s.supervisor.worker !== undefined);
  }

  /**
   * Parses and checks `body` on a worker thread. The body's bytes are transferred when it owns its ArrayBuffer
   * (then `body` is empty afterwards), copied otherwise.
   */
  check(body: Buffer, format: BodyFormat, receivedAt: number, allowedTypes: readonly string[] | null = null, shed: ShedLevel = 0): Promise<CheckedEvents> {
    this.#state.assertOpen();
    let slot: Slot | undefined;
    for (const s of this.#slots) if (s.supervisor.worker !== undefined && (slot === undefined || s.pending.size < slot.pending.size)) slot = s;
    if (slot === undefined) return Promise.reject(new HalflifeError('INGEST_WORKER_FAILED', { reason: 'no worker is running' }));
    const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
    const bytes = owned ? (body.buffer as ArrayBuffer) : new Uint8Array(body).buffer;
    const id = this.#next++;
    const worker = slot.supervisor.worker!;
    const pending = slot.pending;
    const budgetMs = this.#o.limits.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS;
    return new Promise<CheckedEvents>((resolve, reject) => {
      // Supervision: a check past its budget (a schema that is slow to evaluate) would hold the worker forever;
      // the request fails (retryable) and the worker is stopped, which fails what else it held, and is replaced.
      const timer = setTimeout(() => {
        if (!pending.delete(id)) return;
        reject(new HalflifeError('INGEST_WORKER_FAILED', { reason: `the check ran past ingest.workerTimeoutMs (${budgetMs} ms); the worker was replaced` }));
        this.#logger.error({ budgetMs }, 'an ingest worker ran past its time budget on a request; replacing it');
        if (slot.supervisor.worker === worker) void slot.supervisor.terminate();
        else void worker.terminate();
      }, budgetMs);
      timer.unref();
      pending.set(id, { resolve, reject, timer, sentMs: performance.now() });
      const m: ToIngestWorker = { type: 'check', id, body: bytes, byteOffset: 0, byteLength: body.byteLength, format, receivedAt, allowedTypes, shed };
      worker.postMessage(m, [bytes]);
    });
  }

  #broadcast(version: SchemaVersion): void {
    for (const s of this.#slots) s.supervisor.worker?.postMessage({ type: 'schema', version } satisfies ToIngestWorker);
  }

  #slot(): Slot {
    const pending = new Map<number, Pending>();
    const supervisor = new SupervisedWorker<IngestWorkerInit, FromIngestWorker>({
      name: 'ingest worker',
      module: 'ingest-worker',
      callerUrl: import.meta.url,
      logger: this.#logger,
      restartDelayMs: this.#o.restartDelayMs,
      init: () => ({ limits: this.#o.limits, schemas: this.#o.registry.latestVersions() }),
      onReady: (worker, init) => {
        // Versions registered while it started are already in its init or will be, in order, from here on.
        for (const v of this.#o.registry.latestVersions()) {
          if (!init.schemas.some((s) => s.type === v.type && s.version === v.version)) worker.postMessage({ type: 'schema', version: v } satisfies ToIngestWorker);
        }
      },
      onMessage: (m) => {
        if (m.type === 'ready') return;
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (p === undefined) return;
        clearTimeout(p.timer);
        if (m.type === 'failed') {
          this.#logger.error({ err: m.message }, 'an ingest worker could not check a request');
          p.reject(new HalflifeError('INGEST_WORKER_FAILED', { reason: 'the check failed' }));
          return;
        }
        p.resolve({
          records: Buffer.from(m.records, m.byteOffset, m.byteLength),
          ends: Array.from(m.ends),
          keys: m.keys,
          types: m.types,
          ids: m.ids,
          rejections: m.rejections,
          malformed: m.malformed,
          forbiddenType: m.forbiddenType,
          shed: m.shed,
        });
      },
      onExit: (code) => {
        for (const p of pending.values()) {
          clearTimeout(p.timer);
          p.reject(new HalflifeError('INGEST_WORKER_FAILED', { reason: `the worker exited with code ${code}` }));
        }
        pending.clear();
      },
    });
    return { supervisor, pending };
  }

  /** Stops worker `i` as a crash would (tests); it is replaced after the restart delay. */
  async terminateWorker(i: number): Promise<void> {
    await this.#slots[i]?.supervisor.terminate();
  }

  /** Stops the workers once the requests they are checking are answered. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#closing = true;
      await Promise.all(
        this.#slots.map(async (s) => {
          while (s.pending.size > 0) await new Promise((r) => setTimeout(r, 5));
          await s.supervisor.close();
        }),
      );
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
