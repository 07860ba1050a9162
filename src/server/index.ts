export { HalflifeServer, probeListen } from './server.js';
export type { HalflifeServerOptions } from './server.js';
export { buildApp } from './app.js';
export type { AppComponents } from './app.js';
export { ServerErrors } from './errors.js';
export { KeyStore, SCOPES, withKeyStore } from './keys.js';
export type { ApiKeyInfo, NewKey, Scope } from './keys.js';
// For `halflife repair`, which works on a stopped server's data folder under the same lock.
export { DataDirLock } from './data-lock.js';
export { repairLog } from '../log/index.js';
export type { RepairAction } from '../log/index.js';
export type { ClusterStatus } from './cluster-status.js';
