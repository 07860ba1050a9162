export { NodeRegistry } from './nodes.js';
export type { NodeInfo, NodeEntry, NodeRegistryOptions } from './nodes.js';
