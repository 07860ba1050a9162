export { NodeRegistry } from './nodes.js';
export type { NodeInfo, NodeEntry, NodeRegistryOptions } from './nodes.js';
export { LeaseManager } from './leases.js';
export type { Lease, LeaseInfo } from './leases.js';
export { FencedStore } from './fenced-store.js';
export { ClusterErrors } from './errors.js';
