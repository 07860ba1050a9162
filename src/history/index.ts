export { History } from './history.js';
export type { HistoryOptions, HistoryResult } from './history.js';
export { HistoryErrors } from './errors.js';
