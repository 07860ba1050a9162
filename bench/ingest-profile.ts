// Profiling harness for ingest alone (no HTTP): the workload's 1,000-event bodies through the Ingestor into a
// segment log (fsync=never), and each stage on its own for comparison. Prints µs per event per stage.
//   node --import tsx bench/ingest-profile.ts [seconds]
//   node --cpu-prof --import tsx bench/ingest-profile.ts
import { FileKvStore, ManualClock } from '../src/core/index.js';
import { DeadLetterStore, Ingestor } from '../src/ingest/index.js';
import { SegmentLog } from '../src/log/index.js';
import { SchemaRegistry } from '../src/schema/index.js';
import { defaultConfig } from '../src/config/index.js';
import { tempDir } from '../test/helpers/tmp.js';
import { join } from 'node:path';
import { makeEvents, WORKLOAD_SCHEMAS } from './workload.js';

const seconds = Number(process.argv[2] ?? 3);
const bodies = Array.from({ length: 16 }, (_, i) => Buffer.from(JSON.stringify(makeEvents(1000 + i, 1000))));
const { dir, cleanup } = await tempDir('halflife-ingest-profile-');
const clock = new ManualClock(1_790_000_000_000);
const log = new SegmentLog({ dir: join(dir, 'log'), partitions: 8, fsync: 'never' });
const dlq = new SegmentLog({ dir: join(dir, 'dlq'), partitions: 1, fsync: 'never' });
const ledger = new SegmentLog({ dir: join(dir, 'ledger'), partitions: 1, fsync: 'never' });
const registry = new SchemaRegistry({ kv: new FileKvStore(join(dir, 'state')), defaultCompatibility: 'backward' });
for (const l of [log, dlq, ledger]) await l.start();
await registry.start();
for (const [t, s] of Object.entries(WORKLOAD_SCHEMAS)) await registry.register(t, s);
const deadLetters = new DeadLetterStore(dlq, ledger, clock);
await deadLetters.start();
const ingestor = new Ingestor({ limits: defaultConfig().ingest, log, registry, deadLetters, clock });
await ingestor.start();

async function time(label: string, fn: (b: Buffer) => unknown): Promise<void> {
  let n = 0;
  const end = performance.now() + seconds * 1000;
  const s = performance.now();
  const cpu = process.cpuUsage();
  while (performance.now() < end) {
    for (const b of bodies) await fn(b);
    n += bodies.length * 1000;
  }
  const us = ((performance.now() - s) * 1000) / n;
  const used = process.cpuUsage(cpu);
  const cpuUs = (used.user + used.system) / n;
  console.log(`${label.padEnd(40)} ${us.toFixed(2)} µs/event  ${Math.round(1e6 / us).toLocaleString('en-US')} events/s`);
  console.log(`${(label + ' (CPU)').padEnd(40)} ${cpuUs.toFixed(2)} µs/event`);
}

await time('toString + JSON.parse', (b) => JSON.parse(b.toString('utf8')));
await time('ingestBody (segment log, fsync=never)', (b) => ingestor.ingestBody(b, 'json', { address: '127.0.0.1' }));
await time('toString + JSON.parse', (b) => JSON.parse(b.toString('utf8')));
await time('ingestBody (segment log, fsync=never)', (b) => ingestor.ingestBody(b, 'json', { address: '127.0.0.1' }));
await ingestor.close();
for (const l of [log, dlq, ledger]) await l.close();
await registry.close();
await cleanup();
