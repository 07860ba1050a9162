export { HalflifeServer, probeListen } from './server.js';
export type { HalflifeServerOptions } from './server.js';
export { buildApp } from './app.js';
export type { AppComponents } from './app.js';
export { ServerErrors } from './errors.js';
export { KeyStore, SCOPES } from './keys.js';
export type { ApiKeyInfo, NewKey, Scope } from './keys.js';
