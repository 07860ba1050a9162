import { HalflifeError, type KvStore } from '../core/index.js';
import './errors.js';

/** A partition's lease as held by this process: the revision is its fencing token. */
export interface Lease {
  readonly partition: number;
  readonly owner: string;
  /** Rises with every acquisition and renewal: writes carry it, and a write with an older one is refused. */
  readonly token: number;
}

export interface LeaseInfo {
  readonly partition: number;
  readonly owner: string;
  readonly token: number;
  /** When it was acquired or last renewed (the owner's clock). */
  readonly renewedAtMs: number;
}

/**
 * Partition leases in a KvStore whose entries expire when not rewritten (a JetStream KV bucket with a max age equal
 * to the lease length: per-key TTLs need nats-server 2.11). Acquire is create (only when nobody holds it), renew is
 * compare-and-set on the revision: an owner that paused past its lease cannot renew, and the new owner's token is
 * higher than every token the old one had.
 */
export class LeaseManager {
  readonly #kv: KvStore;
  readonly #owner: string;
  readonly #now: () => number;

  constructor(kv: KvStore, owner: string, now: () => number = Date.now) {
    this.#kv = kv;
    this.#owner = owner;
    this.#now = now;
  }

  #value(): Uint8Array {
    return Buffer.from(JSON.stringify({ owner: this.#owner, renewedAtMs: this.#now() }));
  }

  /** Takes the lease if nobody holds it: never taken, expired, or released (LEASE_HELD otherwise). */
  async acquire(partition: number): Promise<Lease> {
    try {
      const token = await this.#kv.create(keyOf(partition), this.#value());
      return { partition, owner: this.#owner, token };
    } catch (err) {
      if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
    }
    // Released leases stay as a marker (a release is a compare-and-set, see `release`): taken over the same way.
    const e = await this.#kv.get(keyOf(partition));
    // Released, or held by this very process (a renewal whose answer was lost looked like a lost lease; what it
    // applied since was dropped): taken over with a compare-and-set, which gives a new token.
    const v = e === undefined ? undefined : (JSON.parse(Buffer.from(e.value).toString('utf8')) as { released?: boolean; owner?: string });
    if (e !== undefined && (v?.released === true || v?.owner === this.#owner)) {
      try {
        const token = await this.#kv.update(keyOf(partition), this.#value(), e.revision);
        return { partition, owner: this.#owner, token };
      } catch (err) {
        if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
      }
    }
    const held = await this.get(partition);
    throw new HalflifeError('LEASE_HELD', { partition, owner: held?.owner ?? 'another process' });
  }

  /** Renews a lease this process holds; LEASE_LOST when it expired or another process took it meanwhile. */
  async renew(lease: Lease): Promise<Lease> {
    try {
      const token = await this.#kv.update(keyOf(lease.partition), this.#value(), lease.token);
      return { ...lease, token };
    } catch (err) {
      if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
      throw new HalflifeError('LEASE_LOST', { partition: lease.partition, reason: 'it expired or was taken by another process' });
    }
  }

  /**
   * Gives a lease up, only if it is still this one: a compare-and-set to a released marker (a delete could remove a
   * successor's lease taken after this one expired).
   */
  async release(lease: Lease): Promise<void> {
    try {
      await this.#kv.update(keyOf(lease.partition), Buffer.from(JSON.stringify({ owner: this.#owner, released: true, renewedAtMs: this.#now() })), lease.token);
    } catch (err) {
      if (!(err instanceof HalflifeError && err.code === 'KV_CONFLICT')) throw err;
    }
  }

  /** Who holds the partition now (undefined: nobody, or released). */
  async get(partition: number): Promise<LeaseInfo | undefined> {
    const e = await this.#kv.get(keyOf(partition));
    if (e === undefined) return undefined;
    const v = JSON.parse(Buffer.from(e.value).toString('utf8')) as { owner: string; renewedAtMs: number; released?: boolean };
    if (v.released === true) return undefined;
    return { partition, owner: v.owner, token: e.revision, renewedAtMs: v.renewedAtMs };
  }
}

function keyOf(partition: number): string {
  return `lease.p${partition}`;
}
