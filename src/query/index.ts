export { runQuery, queryView, queryCatalog } from './query.js';
export type { QueryResult } from './query.js';
