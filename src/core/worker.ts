import { Worker } from 'node:worker_threads';
import type { Logger } from './logger.js';

/**
 * Starts a worker thread running the module at `moduleUrl` (a sibling of the caller, given as `./name` with the
 * caller's `import.meta.url`). Run from source (tests, tsx), the worker registers the TypeScript loader in its own
 * thread first; built, it runs the compiled `.js` file.
 */
export function startModuleWorker(name: string, callerUrl: string, workerData: unknown): Worker {
  const ext = callerUrl.endsWith('.ts') ? '.ts' : '.js';
  const url = new URL(`./${name}${ext}`, callerUrl);
  if (ext === '.js') return new Worker(url, { workerData });
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, {
    eval: true,
    workerData,
  });
}

export interface SupervisedWorkerOptions<In, Out extends { type: string }> {
  /** The module (a sibling of `callerUrl`, see `startModuleWorker`). */
  readonly module: string;
  readonly callerUrl: string;
  /** Its `workerData`, asked again at every start (a restarted worker starts from what is current). */
  readonly init: () => In;
  /** Every message but the `{ type: 'ready' }` the worker sends once it has started. */
  readonly onMessage: (m: Out, worker: Worker) => void;
  /** Called when a started worker is ready (first start and restarts), before `start` resolves. */
  readonly onReady?: (worker: Worker, init: In) => void;
  /** Called when a worker exits (before it is started again): fail what waits on it. */
  readonly onExit?: (code: number) => void;
  readonly restartDelayMs?: number;
  readonly logger: { error(obj: object, msg?: string): void };
  /** For logs: "engine worker", "archive worker". */
  readonly name: string;
}

/**
 * A worker thread started again after it exits unasked (a crash, an out-of-memory, a `terminate` in tests), after
 * `restartDelayMs` (default 1 s). The one supervision every room's threads use.
 */
export class SupervisedWorker<In, Out extends { type: string }> {
  readonly #o: SupervisedWorkerOptions<In, Out>;
  #worker: Worker | undefined;
  /** A worker started and not ready yet (closed too by `close`). */
  #starting: Worker | undefined;
  #closing = false;
  /** Times the worker exited unasked and was started again. */
  restarts = 0;

  constructor(options: SupervisedWorkerOptions<In, Out>) {
    this.#o = options;
  }

  /** The running worker once ready, else undefined. */
  get worker(): Worker | undefined {
    return this.#worker;
  }

  /** Starts the worker; resolves once it said it is ready, rejects if it exits or fails first. */
  start(): Promise<void> {
    const init = this.#o.init();
    const worker = startModuleWorker(this.#o.module, this.#o.callerUrl, init);
    this.#starting = worker;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: Out) => {
        if (m.type === 'ready') {
          if (this.#starting === worker) this.#starting = undefined;
          if (this.#closing) return;
          this.#worker = worker;
          this.#o.onReady?.(worker, init);
          resolve();
          return;
        }
        this.#o.onMessage(m, worker);
      });
      worker.on('error', (err) => {
        this.#o.logger.error({ err }, `${this.#o.name} failed`);
        reject(err);
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        if (this.#starting === worker) this.#starting = undefined;
        this.#o.onExit?.(code);
        reject(new Error(`${this.#o.name} exited with ${code} during start`));
        if (this.#closing) return;
        this.restarts++;
        this.#o.logger.error({ code }, `${this.#o.name} exited; starting a new one`);
        setTimeout(() => {
          if (!this.#closing) void this.start().catch((err: unknown) => this.#o.logger.error({ err }, `${this.#o.name} could not start again`));
        }, this.#o.restartDelayMs ?? 1000).unref();
      });
    });
  }

  /** Stops the worker as a crash would (tests); it is started again. */
  async terminate(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    await w?.terminate();
  }

  /**
   * Stops for good: `goodbye` (when given) is sent and the worker given `graceMs` to exit by itself (to finish what
   * it writes), then it is terminated.
   */
  async close(goodbye?: unknown, graceMs = 10_000): Promise<void> {
    this.#closing = true;
    const starting = this.#starting;
    this.#starting = undefined;
    await starting?.terminate();
    const w = this.#worker;
    this.#worker = undefined;
    if (w === undefined) return;
    if (goodbye !== undefined) {
      const exited = new Promise<void>((r) => w.once('exit', () => r()));
      w.postMessage(goodbye);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    await w.terminate();
  }
}

/** A log line a worker thread sends its host (which logs it with its own logger). */
export interface WorkerLogLine {
  readonly type: 'log';
  readonly level: 'info' | 'warn' | 'error' | 'debug';
  readonly obj: Record<string, unknown>;
  readonly msg: string | undefined;
}

/** A logger for a worker thread: each line goes to the host through `post` (errors as message and stack). */
export function threadLogger(post: (line: WorkerLogLine) => void): Logger {
  const cloneable = (obj: object): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = v instanceof Error ? { message: v.message, stack: v.stack } : v;
    return out;
  };
  const logger: Logger = {
    info: (obj, msg) => post({ type: 'log', level: 'info', obj: cloneable(obj), msg }),
    warn: (obj, msg) => post({ type: 'log', level: 'warn', obj: cloneable(obj), msg }),
    error: (obj, msg) => post({ type: 'log', level: 'error', obj: cloneable(obj), msg }),
    debug: (obj, msg) => post({ type: 'log', level: 'debug', obj: cloneable(obj), msg }),
    child: () => logger,
  };
  return logger;
}
