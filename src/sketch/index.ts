export { HyperLogLog, hllStateAdd, sparseEntry as hllSparseEntry, HLL_DEFAULT_PRECISION, HLL_MIN_PRECISION, HLL_MAX_PRECISION } from './hll.js';
export type { HllState } from './hll.js';
export { HllArena } from './hll-arena.js';
export { DDSketch, DDSKETCH_DEFAULT_ACCURACY } from './ddsketch.js';
export { TopK } from './top-k.js';
export type { TopKEntry } from './top-k.js';
export { hash64, sketchKey } from './hash.js';
