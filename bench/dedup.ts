/**
 * The dedup window past its id bound: `node --import tsx bench/dedup.ts [maxIds]` adds 3 × maxIds unique ids
 * (default 1,000,000, the ingest.dedupMaxIds default) and prints the time per 500,000. Each block should take about
 * as long as the first; the Map-order version this replaced took 208 s for the first block past the bound.
 */
import { DedupWindow } from '../src/ingest/dedup.js';

const maxIds = Number(process.argv[2] ?? 1_000_000);
const d = new DedupWindow(600_000, maxIds);
const block = 500_000;
let t0 = performance.now();
for (let i = 0; i < 3 * maxIds; i++) {
  d.checkAndAdd(`id${i}`, 1000);
  if ((i + 1) % block === 0) {
    console.log(`${i + 1} ids (${i + 1 > maxIds ? 'past' : 'within'} the bound): ${(performance.now() - t0).toFixed(0)} ms for the last ${block}`);
    t0 = performance.now();
  }
}
