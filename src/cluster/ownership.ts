import { HalflifeError, silentLogger, type Logger } from '../core/index.js';
import type { CheckpointStore } from '../engine/index.js';
import type { FencedStore } from './fenced-store.js';
import type { Lease, LeaseInfo, LeaseManager } from './leases.js';
import type { NodeEntry } from './nodes.js';
import './errors.js';

export interface OwnershipOptions {
  readonly leases: LeaseManager;
  /** This process's id (as in the node registry). */
  readonly self: string;
  /** The processes sharing the cluster, with their roles and heartbeat ages. */
  readonly nodes: () => Promise<readonly NodeEntry[]>;
  /** How many partitions the log has. */
  readonly partitions: number;
  /** Whether this process takes partitions (roles `worker` and `all`). */
  readonly worker: boolean;
  readonly leaseMs: number;
  /**
   * Runs exactly these partitions (the engine host's `setPartitions`). `clean`: they are a handover (every lease
   * given up is still held, so what was applied is checkpointed first); not clean: some were lost.
   */
  readonly apply: (partitions: number[], clean: boolean) => Promise<void>;
  readonly logger?: Logger;
  /** A monotonic clock in ms (default `performance.now`): a lease's freshness must not follow the wall clock. */
  readonly now?: () => number;
}

interface Held {
  lease: Lease;
  /** When the renewal (or acquisition) that gave this token began (`now`). */
  since: number;
}

/**
 * Which partitions this process runs, through leases: every third of the lease length it renews the leases it holds,
 * gives up (after a checkpoint) those that another worker should run now, and takes the free ones that are its share.
 * Its share: partition p goes to the p-th (mod count) of the live workers ordered by id (a worker is live while its
 * heartbeat is younger than the lease), so workers joining or leaving move partitions in a few rounds and every
 * partition has exactly one worker that wants it.
 *
 * A lease whose renewal began more than two thirds of the lease length ago is not trusted (`token` answers
 * undefined): a process that paused (GC, SIGSTOP, a slow disk) may have lost it without knowing, so it writes no
 * checkpoint and answers no query for it until a renewal succeeds or fails.
 */
export class PartitionOwnership {
  readonly #o: OwnershipOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #held = new Map<number, Held>();
  /** The partitions the engine runs now (undefined while a change is under way). */
  #settled: number[] | undefined = [];
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> = Promise.resolve();
  #closed = false;
  /** Rounds run and failed since start (for status). */
  rounds = 0;

  constructor(options: OwnershipOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? (() => performance.now());
  }

  async start(): Promise<void> {
    await this.round();
    this.#timer = setInterval(() => void this.round(), Math.max(100, Math.floor(this.#o.leaseMs / 3)));
    this.#timer.unref();
  }

  /** One round (see the class); rounds never overlap. */
  round(): Promise<void> {
    // A round still running (a slow handover) is not queued behind: the next tick finds it done.
    if (this.#busy) return this.#round;
    this.#busy = true;
    const next = this.#round
      .then(() => (this.#closed ? undefined : this.#step()))
      .catch((err: unknown) => this.#logger.warn({ err }, 'partition lease round failed'))
      .finally(() => (this.#busy = false));
    this.#round = next;
    return next;
  }

  #busy = false;

  /** Rises at every change of the partitions run (start and end): a read spanning a change sees it move. */
  get epoch(): number {
    return this.#epoch;
  }

  #epoch = 0;

  /** The partitions whose leases this process holds, ascending. */
  held(): number[] {
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /** The partitions the engine runs and whose leases are fresh, or undefined while they change or a lease is stale. */
  serving(): number[] | undefined {
    if (this.#settled === undefined) return undefined;
    for (const p of this.#settled) if (this.token(p) === undefined) return undefined;
    return this.#settled;
  }

  /** The fencing token of a partition's lease, if this process holds it and renewed it recently enough to trust it. */
  token(partition: number): number | undefined {
    const h = this.#held.get(partition);
    if (h === undefined || this.#now() - h.since > (this.#o.leaseMs * 2) / 3) return undefined;
    return h.lease.token;
  }

  /** Who holds a partition's lease now, as the lease bucket says (any process). */
  holder(partition: number): Promise<LeaseInfo | undefined> {
    return this.#o.leases.get(partition);
  }

  /** Per held partition, its token and how long ago its lease was renewed (ms). */
  leases(): { partition: number; token: number; ageMs: number }[] {
    const now = this.#now();
    return this.held().map((p) => ({ partition: p, token: this.#held.get(p)!.lease.token, ageMs: Math.round(now - this.#held.get(p)!.since) }));
  }

  async #apply(clean: boolean): Promise<void> {
    const partitions = this.held();
    this.#unsettle();
    await this.#o.apply(partitions, clean);
    this.#settle();
  }

  #unsettle(): void {
    this.#settled = undefined;
    this.#epoch++;
  }

  #settle(): void {
    this.#settled = this.held();
    this.#epoch++;
  }

  async #step(): Promise<void> {
    this.rounds++;
    const { leases } = this.#o;
    // Renew what is held: a lease that expired or was taken is lost, and what was applied of it is dropped.
    const lost: number[] = [];
    for (const [p, h] of this.#held) {
      const since = this.#now();
      try {
        const renewed = await leases.renew(h.lease);
        // Kept even while closing: close releases the lease as it is now (a release of the revision before fails).
        h.lease = renewed;
        h.since = since;
        // Answered after close let the partitions go: this renewal took the lease again, so it gives it back.
        if (this.#closed && this.#held.get(p) !== h) await leases.release(renewed).catch(() => {});
      } catch (err) {
        if (err instanceof HalflifeError && err.code === 'LEASE_LOST') {
          lost.push(p);
          this.#held.delete(p);
        } else if (!this.#closed) throw err;
      }
      // A round left behind by close changes nothing more: close owns the partitions now.
      if (this.#closed) return;
    }
    if (lost.length > 0) {
      this.#logger.warn({ partitions: lost }, `lost the leases of partitions ${lost.join(', ')} (not renewed in time: paused or cut off?); another worker runs them now`);
      await this.#apply(false);
    } else if (this.#settled === undefined) {
      // The last change failed part way (a checkpoint refused, a worker thread gone): run the held partitions from
      // their checkpoints, dropping what was applied since (some may have moved meanwhile).
      this.#logger.warn({ partitions: this.held() }, 'the last change of partitions did not complete; restoring them from their checkpoints');
      await this.#apply(false);
    }
    if (!this.#o.worker || this.#closed) return;
    const share = await this.#share();
    if (this.#closed) return;
    // Give up (after a checkpoint) what another worker should run now.
    const release = this.held().filter((p) => !share.includes(p));
    if (release.length > 0) {
      const kept = new Map([...this.#held].filter(([p]) => !release.includes(p)));
      const gone = release.map((p) => this.#held.get(p)!.lease);
      this.#unsettle();
      await this.#o.apply([...kept.keys()].sort((a, b) => a - b), true);
      for (const p of release) this.#held.delete(p);
      this.#settle();
      for (const lease of gone) await leases.release(lease);
      this.#logger.info({ partitions: release }, `handed partitions ${release.join(', ')} over`);
    }
    // Take the free ones of its share (one still held by another worker is taken once released or expired).
    const gained: number[] = [];
    for (const p of share) {
      if (this.#held.has(p) || this.#closed) continue;
      const since = this.#now();
      try {
        const lease = await leases.acquire(p);
        if (this.#closed) {
          await leases.release(lease).catch(() => {});
          continue;
        }
        this.#held.set(p, { lease, since });
        gained.push(p);
      } catch (err) {
        if (!(err instanceof HalflifeError && err.code === 'LEASE_HELD')) throw err;
      }
    }
    if (gained.length > 0 && !this.#closed) {
      await this.#apply(true);
      this.#logger.info({ partitions: gained }, `took partitions ${gained.join(', ')} over`);
    }
  }

  /** This process's share of the partitions among the live workers. */
  async #share(): Promise<number[]> {
    const live = (await this.#o.nodes()).filter((n) => (n.role === 'worker' || n.role === 'all') && n.heartbeatAgeMs < this.#o.leaseMs).map((n) => n.id);
    if (!live.includes(this.#o.self)) live.push(this.#o.self);
    live.sort();
    return Array.from({ length: this.#o.partitions }, (_, p) => p).filter((p) => live[p % live.length] === this.#o.self);
  }

  /** Stops the rounds; with `handOver`, the engine checkpoints and gives every partition up, then the leases go. */
  async close(handOver = true): Promise<void> {
    clearInterval(this.#timer);
    // Bounded: a stop must not hang on a cluster that does not answer (a round under way waits on its requests'
    // timeouts). Leases not released expire, and their next owner replays from the last checkpoint that was written.
    const bound = Math.max(1000, this.#o.leaseMs);
    const within = <T>(work: Promise<T>) => Promise.race([work, new Promise<'late'>((r) => setTimeout(() => r('late'), bound).unref())]);
    // Closed first: a round still under way stops at its next step instead of changing the partitions behind this.
    this.#closed = true;
    await within(this.#round);
    if (!handOver || this.#held.size === 0) return;
    // Partitions the engine runs whose leases were lost meanwhile are dropped first (nothing is written for them):
    // the clean handover's checkpoints would be refused for them, and with them the whole handover.
    const running = this.#settled;
    if (running === undefined || running.some((p) => !this.#held.has(p))) {
      this.#unsettle();
      await within(this.#o.apply(this.held(), false)).catch((err: unknown) => this.#logger.warn({ err }, 'dropping the partitions whose leases were lost failed'));
    }
    this.#unsettle();
    const handed = await within(this.#o.apply([], true).then(() => 'ok' as const)).catch((err: unknown) => {
      this.#logger.warn({ err }, 'the last checkpoint before giving the partitions up failed; their next owner replays from the one before');
      return 'failed' as const;
    });
    if (handed === 'late') this.#logger.warn({ ms: bound }, 'the last checkpoint before giving the partitions up took too long; their leases are left to expire');
    // The leases as they are now (a renewal answered during the handover moved them on).
    const gone = [...this.#held.values()].map((h) => h.lease);
    this.#held.clear();
    if (handed === 'ok') await within(Promise.all(gone.map((lease) => this.#o.leases.release(lease).catch(() => {}))));
  }
}

/**
 * View checkpoints in the cluster's shared state, each under its anchor partition and written with that partition's
 * lease token (a `FencedStore`): a worker that lost a partition cannot overwrite its successor's checkpoint, and one
 * whose leases are not fresh (`PartitionOwnership.token`) writes nothing for a unit applying any of them.
 */
export class ClusterCheckpoints implements CheckpointStore {
  readonly #fenced: FencedStore;
  readonly #ownership: PartitionOwnership;

  constructor(fenced: FencedStore, ownership: PartitionOwnership) {
    this.#fenced = fenced;
    this.#ownership = ownership;
  }

  async load(name: string, partition: number): Promise<Uint8Array | undefined> {
    const got = await this.#fenced.read(keyOf(name, partition));
    return got === undefined || got.bytes.length === 0 ? undefined : got.bytes;
  }

  async save(name: string, partition: number, bytes: Uint8Array, live: readonly number[]): Promise<void> {
    for (const p of [partition, ...live]) {
      if (this.#ownership.token(p) === undefined) throw new HalflifeError('LEASE_LOST', { partition: p, reason: 'not renewed recently enough to write under it' });
    }
    await this.#fenced.write(keyOf(name, partition), this.#ownership.token(partition)!, bytes);
  }

  /** Empties the checkpoints of these partitions this process holds (a view dropped or replaced). */
  async remove(name: string, partitions: readonly number[]): Promise<void> {
    for (const p of partitions) {
      const token = this.#ownership.token(p);
      if (token !== undefined) await this.#fenced.write(keyOf(name, p), token, new Uint8Array(0));
    }
  }
}

function keyOf(view: string, partition: number): string {
  return `checkpoint.${view}.p${partition}`;
}
