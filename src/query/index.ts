export { runQuery, queryView, queryCatalog } from './query.js';
export type { QueryResult } from './query.js';
export type { QueryOptions } from './query.js';
export { queryOn, QUERY_EXTENSION } from './remote.js';
