import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { HalflifeApiError, type HalflifeClient } from '../../../sdk/index.js';
import { human, Progress, type Io } from '../output.js';

export interface SendFlags {
  batch?: number;
  /** Events per second (0 = as fast as possible). */
  rate?: number;
  /** Requests in flight at once. */
  concurrency?: number;
  json?: boolean | undefined;
}

export interface SendSummary {
  sent: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  requests: number;
  retries: number;
  failedRequests: number;
  seconds: number;
}

const MAX_ATTEMPTS = 6;

/**
 * `halflife send <file|->`: streams NDJSON to POST /v1/events in batches, with a progress bar, an optional
 * rate limit, and retries with backoff on overload (429/503) and network errors. Events without an `id` may be
 * stored twice if a request is retried after the server had already stored it; give events ids to be exact.
 */
export async function send(client: HalflifeClient, input: string, flags: SendFlags, io: Io, stdin?: Readable): Promise<number> {
  const batchSize = flags.batch ?? 1000;
  const rate = flags.rate ?? 0;
  const concurrency = flags.concurrency ?? 2;
  const total = input === '-' ? undefined : (await stat(input)).size;
  const stream: Readable = input === '-' ? (stdin ?? process.stdin) : createReadStream(input);
  let bytesRead = 0;
  stream.on('data', (chunk: Buffer | string) => (bytesRead += chunk.length));
  const lines = createInterface({ input: stream, crlfDelay: Infinity });

  const summary: SendSummary = { sent: 0, accepted: 0, rejected: 0, duplicates: 0, requests: 0, retries: 0, failedRequests: 0, seconds: 0 };
  const firstErrors: string[] = [];
  const progress = new Progress(io);
  const started = Date.now();
  const inFlight = new Set<Promise<void>>();
  let fatal: HalflifeApiError | undefined;

  const report = (force = false) => {
    const secs = (Date.now() - started) / 1000;
    progress.update(
      total === undefined || total === 0 ? undefined : bytesRead / total,
      `${human(summary.sent)} sent, ${human(summary.accepted)} accepted, ${human(summary.rejected)} rejected, ${human(summary.duplicates)} dup, ${human(summary.sent / Math.max(secs, 0.001))}/s`,
      force,
    );
  };

  const post = async (lineNo: number, batch: string[]) => {
    const body = batch.join('\n');
    for (let attempt = 1; ; attempt++) {
      try {
        summary.requests++;
        const res = await client.sendNdjson(body);
        summary.accepted += res.accepted;
        summary.rejected += res.rejected;
        summary.duplicates += res.duplicates;
        for (const e of res.errors) {
          if (firstErrors.length < 5) firstErrors.push(`  line ~${lineNo + e.index}: ${e.code} ${e.path}: ${e.message}`);
        }
        return;
      } catch (err) {
        if (!(err instanceof HalflifeApiError)) throw err;
        if (!err.retryable || attempt >= MAX_ATTEMPTS) {
          summary.failedRequests++;
          fatal ??= err;
          return;
        }
        summary.retries++;
        const waitMs = (err.retryAfterS ?? 0) * 1000 || Math.min(5000, 100 * 2 ** attempt);
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  };

  let batch: string[] = [];
  let lineNo = 0;
  let batchStart = 1;
  const dispatch = async () => {
    if (batch.length === 0) return;
    const lines = batch;
    const start = batchStart;
    batch = [];
    summary.sent += lines.length;
    if (rate > 0) {
      const due = started + (summary.sent / rate) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const p = post(start, lines).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
    report();
  };

  for await (const line of lines) {
    lineNo++;
    if (line.trim().length === 0) continue;
    if (batch.length === 0) batchStart = lineNo;
    batch.push(line);
    if (batch.length >= batchSize) await dispatch();
    if (fatal !== undefined) break;
  }
  await dispatch();
  await Promise.all(inFlight);
  report(true);
  progress.done();
  summary.seconds = (Date.now() - started) / 1000;

  if (flags.json) io.out(JSON.stringify(summary) + '\n');
  else {
    io.out(
      `sent ${summary.sent} events in ${summary.requests} requests (${summary.seconds.toFixed(1)} s, ${human(summary.sent / Math.max(summary.seconds, 0.001))} events/s): ` +
        `${summary.accepted} accepted, ${summary.rejected} rejected, ${summary.duplicates} duplicates` +
        (summary.retries > 0 ? `, ${summary.retries} retries` : '') +
        '\n',
    );
    if (firstErrors.length > 0) io.out(`first rejections:\n${firstErrors.join('\n')}\n(halflife dlq list shows them all)\n`);
  }
  if (fatal !== undefined) {
    io.err(`halflife: ${summary.failedRequests} request(s) failed: ${fatal.code}: ${fatal.message}\n`);
    return 1;
  }
  return 0;
}
