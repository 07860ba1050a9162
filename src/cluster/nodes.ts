import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { silentLogger, type KvStore, type KvWatch, type Logger } from '../core/index.js';

/** A halflife process as the others see it. */
export interface NodeInfo {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  /** What the process runs (`cluster.role`). */
  readonly role: 'all' | 'ingest' | 'worker' | 'query';
  readonly startedAt: string;
}

export interface NodeEntry extends NodeInfo {
  /** When it last said it was alive (ms since the epoch), and how long ago that was. */
  readonly heartbeatMs: number;
  readonly heartbeatAgeMs: number;
}

export interface NodeRegistryOptions {
  readonly kv: KvStore;
  readonly version: string;
  /** How often a process renews its entry (default 5 s). */
  readonly heartbeatMs?: number;
  readonly logger?: Logger;
  readonly now?: () => number;
  /** What this process runs (default all). */
  readonly role?: NodeInfo['role'];
  /** The store is this process's alone (a data folder under its lock): entries left by earlier runs are removed. */
  readonly exclusive?: boolean;
}

/**
 * The processes sharing a state store (`nodes.<id>` entries, renewed every few seconds and removed on a clean stop),
 * for `halflife cluster status`. nats-server 2.9/2.10 keep no per-key TTL, so an entry of a process that died stays:
 * its heartbeat's age tells.
 */
export class NodeRegistry {
  readonly node: NodeInfo;
  readonly #o: NodeRegistryOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #watch: KvWatch | undefined;
  /**
   * Every process's entry as last seen, kept by a watch: listing the keys of a JetStream bucket creates a consumer,
   * which a cluster's metadata leader must agree to, so `list` (every lease round) must not.
   */
  readonly #entries = new Map<string, { revision: number; value: Uint8Array | undefined }>();

  constructor(options: NodeRegistryOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
    this.node = { id: randomBytes(6).toString('hex'), host: hostname(), pid: process.pid, version: options.version, role: options.role ?? 'all', startedAt: new Date(this.#now()).toISOString() };
  }

  get heartbeatMs(): number {
    return this.#o.heartbeatMs ?? 5000;
  }

  async start(): Promise<void> {
    if (this.#o.exclusive === true) for (const key of await this.#o.kv.keys('nodes')) await this.#o.kv.delete(key);
    // Watched first, then read: nothing written in between is missed, and the newer revision of a key wins.
    this.#watch = await this.#o.kv.watch('nodes', (c) => this.#seen(c.key, c.revision, c.value));
    for (const key of await this.#o.kv.keys('nodes')) {
      const e = await this.#o.kv.get(key);
      if (e !== undefined) this.#seen(key, e.revision, e.value);
    }
    await this.#beat();
    this.#timer = setInterval(() => void this.#beat().catch((err: unknown) => this.#logger.warn({ err }, 'node heartbeat failed')), this.heartbeatMs);
    this.#timer.unref();
  }

  #seen(key: string, revision: number, value: Uint8Array | undefined): void {
    const had = this.#entries.get(key);
    if (had === undefined || had.revision < revision) this.#entries.set(key, { revision, value });
  }

  async #beat(): Promise<number> {
    const value = Buffer.from(JSON.stringify({ ...this.node, heartbeatMs: this.#now() }));
    const revision = await this.#o.kv.put(`nodes.${this.node.id}`, value);
    this.#seen(`nodes.${this.node.id}`, revision, value);
    return revision;
  }

  /** Every process with an entry, this one first, then by start time. */
  async list(): Promise<NodeEntry[]> {
    const now = this.#now();
    const out: NodeEntry[] = [];
    for (const { value } of this.#entries.values()) {
      if (value === undefined) continue;
      const n = JSON.parse(Buffer.from(value).toString('utf8')) as NodeInfo & { heartbeatMs: number };
      out.push({ ...n, heartbeatAgeMs: Math.max(0, now - n.heartbeatMs) });
    }
    return out.sort((a, b) => (a.id === this.node.id ? -1 : b.id === this.node.id ? 1 : a.startedAt.localeCompare(b.startedAt)));
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    // Bounded: a stop must not wait on a cluster that does not answer (the entry's heartbeat age then tells).
    const within = (work: Promise<unknown>) => Promise.race([work.catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
    await within(this.#watch?.stop() ?? Promise.resolve());
    await within(this.#o.kv.delete(`nodes.${this.node.id}`));
  }
}
