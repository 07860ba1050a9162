import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { OverloadConfig } from '../config/index.js';
import { silentLogger, type Logger } from '../core/index.js';
import type { ShedLevel } from '../ingest/index.js';
import type { EngineHost } from '../engine/index.js';

/**
 * A reading of the overload signals, as ratios to their bounds (1 = at the bound). Each measures work halflife
 * itself holds (memory, request bytes, the log's queue, views' backlog), never time: a closed loop of clients (each
 * waits for its answer) holds a bounded amount of work however slow the machine, so it is answered more slowly and
 * never shed, while open-loop traffic beyond capacity piles up here until it is.
 */
export interface OverloadSignals {
  memory: number;
  inflight: number;
  queue: number;
  engineLag: number;
}

export interface OverloadStatus {
  /** The largest of the signals. */
  pressure: number;
  /** The signal behind the pressure. */
  reason: keyof OverloadSignals;
  /** What is shed: 0 nothing, 1 low-priority events, 2 low and normal. */
  shed: ShedLevel;
  /** At the hard memory bound: every request is refused and /readyz is unready. */
  hard: boolean;
  signals: OverloadSignals;
  rssBytes: number;
  /** Request bytes in flight, each request counted at least {@link REQUEST_OVERHEAD_BYTES}. */
  inflightBytes: number;
  /** Ingest requests admitted and not yet answered. */
  inflightRequests: number;
  queuedBytes: number;
  engineLagEvents: number;
  /**
   * Delay of the server thread's event loop (90th percentile over the last ~500 ms). Shown, not a shedding signal:
   * other programs on a busy machine slow the loop just as much as a flood does, and shedding then refuses clients
   * whose requests halflife would have answered, only later.
   */
  eventLoopDelayMs: number;
}

/**
 * What a request holds beyond its body (socket buffers, the request and reply objects, its place in the queues),
 * counted in the in-flight bytes: a flood of one-event requests then shows as pressure long before the memory
 * budget, as a flood of large ones does.
 */
export const REQUEST_OVERHEAD_BYTES = 4096;

export interface OverloadMonitorOptions {
  readonly config: OverloadConfig;
  /** Bytes waiting for the log's group commit. */
  readonly queuedBytes: () => number;
  readonly engine: EngineHost;
  readonly logger?: Logger;
  /** How often memory is sampled (default 100 ms); the engine's lag is polled every 5 samples. */
  readonly sampleMs?: number;
}

/**
 * Turns the pipeline's pressure into shedding decisions. Signals: the process's resident memory against its budget,
 * request bytes in flight, bytes queued for the log's group commit, and how far live views are behind the log
 * (views still backfilling do not count: a new view over a long history must not shed ingest). Memory and the
 * engine are sampled on a timer; bytes in flight are counted as requests come and go. The event loop's delay is
 * measured for /v1/status but sheds nothing (see {@link OverloadStatus.eventLoopDelayMs}).
 */
export class OverloadMonitor {
  readonly #o: OverloadMonitorOptions;
  readonly #logger: Logger;
  #rss = 0;
  #lag = 0;
  #inflight = 0;
  #inflightRequests = 0;
  #delayMs = 0;
  #delays: IntervalHistogram | undefined;
  /** Views that have been caught up at least once (their lag counts from then on). */
  readonly #live = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;
  #lastShed: ShedLevel = 0;
  /** Requests shed on arrival by their declared priority, by priority then reason. */
  readonly #shedRequests = new Map<string, Map<string, number>>();

  constructor(options: OverloadMonitorOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  start(): void {
    this.#rss = process.memoryUsage.rss();
    this.#delays = monitorEventLoopDelay({ resolution: 10 });
    this.#delays.enable();
    this.#timer = setInterval(() => this.#sample(), this.#o.sampleMs ?? 100);
    this.#timer.unref();
  }

  #sample(): void {
    this.#rss = process.memoryUsage.rss();
    if (this.#delays !== undefined && this.#ticks % 5 === 4) {
      // Over the last ~500 ms, for /v1/status (nanoseconds; 0 when no delay was recorded). It sheds nothing.
      this.#delayMs = this.#delays.count > 0 ? this.#delays.percentile(90) / 1e6 : 0;
      this.#delays.reset();
    }
    if (this.#ticks++ % 5 !== 0) return;
    this.#o.engine.lags().then(
      (infos) => {
        let lag = 0;
        for (const v of infos) {
          if (v.lag === 0) this.#live.add(v.name);
          if (this.#live.has(v.name) && v.lag > lag) lag = v.lag;
        }
        for (const name of this.#live) if (!infos.some((v) => v.name === name)) this.#live.delete(name);
        this.#lag = lag;
      },
      () => {
        // The engine restarts on its own; meanwhile its lag is unknown and does not count.
        this.#lag = 0;
      },
    );
    const s = this.status();
    if (s.shed !== this.#lastShed) {
      this.#logger.warn({ shed: s.shed, pressure: Number(s.pressure.toFixed(2)), reason: s.reason }, s.shed === 0 ? 'overload over: nothing is shed' : `overload: shedding ${s.shed === 1 ? 'low' : 'low and normal'} priority events (${s.reason})`);
      this.#lastShed = s.shed;
    }
  }

  /**
   * Admits a request of `bytes` (its declared length) or refuses it (false) at the hard bounds. An admitted request
   * counts `bytes` plus {@link REQUEST_OVERHEAD_BYTES} until `release(bytes)`.
   */
  admit(bytes: number): boolean {
    const c = this.#o.config;
    if (this.#rss >= c.memoryBudgetBytes) return false;
    const held = bytes + REQUEST_OVERHEAD_BYTES;
    if (this.#inflight > 0 && this.#inflight + held > c.maxInflightBytes) return false;
    this.#inflight += held;
    this.#inflightRequests++;
    return true;
  }

  /** Counts a request shed on arrival (its events are not known: it was not read). */
  countShedRequest(priority: string): void {
    const reason = this.status().reason;
    let m = this.#shedRequests.get(priority);
    if (m === undefined) this.#shedRequests.set(priority, (m = new Map()));
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }

  shedRequests(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [p, m] of this.#shedRequests) out[p] = Object.fromEntries(m);
    return out;
  }

  /** Ends a request admitted with `bytes`. */
  release(bytes: number): void {
    this.#inflight = Math.max(0, this.#inflight - bytes - REQUEST_OVERHEAD_BYTES);
    this.#inflightRequests = Math.max(0, this.#inflightRequests - 1);
  }

  status(): OverloadStatus {
    const c = this.#o.config;
    const queued = this.#o.queuedBytes();
    const signals: OverloadSignals = {
      memory: this.#rss / c.memoryBudgetBytes,
      inflight: this.#inflight / c.maxInflightBytes,
      queue: queued / c.maxQueuedBytes,
      engineLag: this.#lag / c.maxEngineLagEvents,
    };
    let reason: keyof OverloadSignals = 'memory';
    for (const k of Object.keys(signals) as (keyof OverloadSignals)[]) if (signals[k] > signals[reason]) reason = k;
    const pressure = signals[reason];
    const shed: ShedLevel = pressure >= c.shedNormalAt ? 2 : pressure >= c.shedLowAt ? 1 : 0;
    return { pressure, reason, shed, hard: this.#rss >= c.memoryBudgetBytes, signals, rssBytes: this.#rss, inflightBytes: this.#inflight, inflightRequests: this.#inflightRequests, queuedBytes: queued, engineLagEvents: this.#lag, eventLoopDelayMs: this.#delayMs };
  }

  close(): void {
    clearInterval(this.#timer);
    this.#delays?.disable();
  }
}
