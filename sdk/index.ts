export { HalflifeClient, HalflifeApiError } from './client.js';
export type { ClientOptions } from './client.js';
export type * from './types.js';
