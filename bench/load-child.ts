/**
 * Background load in its own process (so it does not delay the client measuring latencies): posts 1,000-event
 * workload bodies to URL at RATE events/s until killed.
 *   node --import tsx bench/load-child.ts URL RATE
 */
import { Agent, request } from 'node:http';
import { makeEvents } from './workload.js';

const [url, rateArg] = process.argv.slice(2);
const rate = Number(rateArg);
const target = new URL(url);
const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(JSON.stringify(makeEvents(5000 + i, 1000))));
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function post(body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: target.hostname, port: target.port, path: '/v1/events', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve());
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const perBatchMs = (1000 / rate) * 1000;
let next = performance.now();
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  await post(bodies[i % bodies.length]);
  next += perBatchMs;
  const wait = next - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
