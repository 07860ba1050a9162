import type { HalflifeConfig } from '../config/index.js';
import type { NodeEntry, NodeRegistry, PartitionOwnership } from '../cluster/index.js';
import type { EngineHost } from '../engine/index.js';
import type { JetStreamInfo, Log, NatsConnector, NatsFeatures } from '../log/index.js';

/** What `GET /v1/cluster` and `halflife cluster status` show. */
export interface ClusterStatus {
  readonly backend: 'files' | 'nats';
  /** This process's id (the first of `nodes`). */
  readonly node: string;
  readonly nodes: readonly NodeEntry[];
  readonly nats?: {
    readonly servers: string;
    readonly serverVersion: string;
    readonly features: NatsFeatures;
    readonly stream: JetStreamInfo;
  };
  /**
   * Per partition: its extent, who runs it (on NATS: the node holding its lease, its fencing token and the lease's
   * age by the holder's clock; none while it moves), and each view's lag where this process runs it.
   */
  readonly partitions: readonly {
    partition: number;
    firstOffset: number;
    nextOffset: number;
    records: number;
    owner: string | null;
    leaseToken?: number;
    leaseAgeMs?: number;
    lag: Record<string, number>;
  }[];
  readonly warnings: readonly string[];
}

export interface ClusterStatusSources {
  readonly config: HalflifeConfig;
  readonly log: Log;
  readonly engine: EngineHost;
  readonly nodes: NodeRegistry;
  readonly nats?: NatsConnector | undefined;
  /** The partition leases (JetStream backend). */
  readonly ownership?: PartitionOwnership | undefined;
  /** The stream's view from the servers (JetStream backend). */
  readonly streamInfo?: (() => Promise<JetStreamInfo>) | undefined;
}

export async function clusterStatus(s: ClusterStatusSources): Promise<ClusterStatus> {
  const warnings: string[] = [];
  const nodes = await s.nodes.list();
  const stale = 3 * s.nodes.heartbeatMs;
  for (const n of nodes) {
    if (n.heartbeatAgeMs > stale) warnings.push(`node ${n.id} (${n.host}, pid ${n.pid}) has not been seen for ${Math.round(n.heartbeatAgeMs / 1000)} s: stopped without a clean shutdown?`);
  }
  const views = await s.engine.infos();
  const mine = new Set(s.engine.partitions);
  const now = Date.now();
  const partitions = await Promise.all(
    s.log.stats().partitions.map(async (p) => {
      const lag: Record<string, number> = {};
      if (mine.has(p.partition)) for (const v of views) lag[v.name] = s.log.lag(p.partition, v.offsets[p.partition] ?? 0);
      const base = { partition: p.partition, firstOffset: p.firstOffset, nextOffset: p.nextOffset, records: p.records };
      if (s.ownership === undefined) return { ...base, owner: s.nodes.node.id, lag };
      const lease = await s.ownership.holder(p.partition);
      if (lease === undefined) {
        warnings.push(`partition ${p.partition} has no worker (it is moving, or no process with the role worker or all is running)`);
        return { ...base, owner: null, lag };
      }
      return { ...base, owner: lease.owner, leaseToken: lease.token, leaseAgeMs: Math.max(0, now - lease.renewedAtMs), lag };
    }),
  );
  let nats: ClusterStatus['nats'];
  if (s.nats !== undefined && s.streamInfo !== undefined) {
    const stream = await s.streamInfo();
    const features = s.nats.features;
    nats = { servers: s.config.nats.servers ?? '', serverVersion: s.nats.serverVersion, features, stream };
    if (stream.replicas < 3) {
      warnings.push(`stream ${stream.name} has ${stream.replicas} replica${stream.replicas === 1 ? '' : 's'}: losing the server that holds it can lose acknowledged events; 3 across zones is recommended (nats.replicas, docs/scale-out.md)`);
    }
    if (!features.crashSafeStreams) {
      warnings.push(`nats-server ${s.nats.serverVersion} is older than 2.10.23, which fixed whole streams lost on server crashes; it also cannot set sync_interval (upgrade: docs/scale-out.md)`);
    }
    for (const p of stream.peers) {
      if (p.offline) warnings.push(`replica ${p.name} of ${stream.name} is offline`);
      else if (!p.current) warnings.push(`replica ${p.name} of ${stream.name} is ${p.lagMessages} messages behind`);
    }
  }
  return { backend: s.config.log.backend, node: s.nodes.node.id, nodes, ...(nats === undefined ? {} : { nats }), partitions, warnings };
}
