import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { HalflifeApiError, type HalflifeClient } from '../../../sdk/index.js';
import { human, Progress, type Io } from '../output.js';

export interface SendFlags {
  batch?: number;
  /** Events per second (0 = as fast as possible). */
  rate?: number;
  /** Requests in flight at once. */
  concurrency?: number;
  json?: boolean | undefined;
  /** Longest wait before a retry, whatever Retry-After asks (default 30 s). */
  maxRetryWaitMs?: number;
  /** First backoff without Retry-After, doubled each attempt (default 200 ms). */
  retryBaseMs?: number;
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

/** One request is tried at most this often (the first attempt and 5 retries). */
export const MAX_ATTEMPTS = 6;
const FIRST_ERRORS = 5;

/**
 * Worth sending again: the network failed, or the server said "not now" (429) or failed (5xx). Anything else
 * (400, 401, 403, 413, …) would be refused again, so it is not retried.
 */
export function retryable(err: HalflifeApiError): boolean {
  return err.status === 0 || err.status === 429 || err.status >= 500;
}

/** One event's text and where it came from, for error messages ("line 7", "element 3"). */
interface Item {
  text: string;
  where: string;
}

class InputError extends Error {}

/**
 * The events of the input: a JSON array (the first non-blank character is `[`) is read whole and sent element by
 * element; anything else is NDJSON, streamed line by line (blank lines skipped).
 */
async function* readItems(stream: Readable, name: string, onBytes: (n: number) => void): AsyncGenerator<Item> {
  const decoder = new StringDecoder('utf8');
  let mode: 'unknown' | 'ndjson' | 'array' = 'unknown';
  let pending = '';
  let lineNo = 0;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    onBytes(chunk.length);
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    if (mode === 'unknown') {
      const first = /\S/.exec(pending);
      if (first === null) continue;
      mode = first[0] === '[' ? 'array' : 'ndjson';
    }
    if (mode === 'array') continue;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).replace(/\r$/, '');
      pending = pending.slice(nl + 1);
      lineNo++;
      if (line.trim() !== '') yield { text: line, where: `line ${lineNo}` };
    }
  }
  pending += decoder.end();
  if (mode === 'array') {
    let events: unknown;
    try {
      events = JSON.parse(pending);
    } catch (err) {
      throw new InputError(`${name} starts with "[" but is not a valid JSON array: ${(err as Error).message}`);
    }
    if (!Array.isArray(events)) throw new InputError(`${name} is not a JSON array`);
    for (let i = 0; i < events.length; i++) yield { text: JSON.stringify(events[i]), where: `element ${i + 1}` };
    return;
  }
  lineNo++;
  if (pending.trim() !== '') yield { text: pending.replace(/\r$/, ''), where: `line ${lineNo}` };
}

/**
 * `halflife send <file|->`: streams events (NDJSON, or a JSON array) to POST /v1/events in batches, with a
 * progress bar and an optional rate limit. Network errors, 429 and 5xx are retried with backoff (Retry-After when
 * the server gives one, bounded by maxRetryWaitMs), other refusals stop sending. Returns 1 when any event was
 * rejected or any request failed, 2 when the input cannot be read. Events without an `id` may be stored twice if
 * a request is retried after the server had already stored it; give events ids to be exact.
 */
export async function send(client: HalflifeClient, input: string, flags: SendFlags, io: Io, stdin?: Readable): Promise<number> {
  const batchSize = flags.batch ?? 1000;
  const rate = flags.rate ?? 0;
  const concurrency = flags.concurrency ?? 2;
  const maxWaitMs = flags.maxRetryWaitMs ?? 30_000;
  const baseMs = flags.retryBaseMs ?? 200;
  let total: number | undefined;
  let stream: Readable;
  if (input === '-') stream = stdin ?? process.stdin;
  else {
    try {
      total = (await stat(input)).size;
    } catch (err) {
      io.err(`halflife: cannot read ${input}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}\n`);
      return 2;
    }
    stream = createReadStream(input);
  }
  let bytesRead = 0;

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

  const post = async (items: Item[]) => {
    const body = items.map((i) => i.text).join('\n');
    for (let attempt = 1; ; attempt++) {
      try {
        summary.requests++;
        const res = await client.sendNdjson(body);
        summary.accepted += res.accepted;
        summary.rejected += res.rejected;
        summary.duplicates += res.duplicates;
        for (const e of res.errors) {
          if (firstErrors.length < FIRST_ERRORS) firstErrors.push(`  ${items[e.index]?.where ?? `event ${e.index}`}: ${e.code}${e.path ? ` at ${e.path}` : ''}: ${e.message}`);
        }
        return;
      } catch (err) {
        if (!(err instanceof HalflifeApiError)) throw err;
        if (!retryable(err) || attempt >= MAX_ATTEMPTS) {
          summary.failedRequests++;
          fatal ??= err;
          return;
        }
        summary.retries++;
        const asked = err.retryAfterS === undefined ? undefined : err.retryAfterS * 1000;
        const waitMs = Math.min(maxWaitMs, asked ?? baseMs * 2 ** (attempt - 1));
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  };

  let batch: Item[] = [];
  const dispatch = async () => {
    if (batch.length === 0) return;
    const items = batch;
    batch = [];
    summary.sent += items.length;
    if (rate > 0) {
      const due = started + (summary.sent / rate) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const p = post(items).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
    report();
  };

  try {
    for await (const item of readItems(stream, input === '-' ? 'standard input' : input, (n) => (bytesRead += n))) {
      batch.push(item);
      if (batch.length >= batchSize) await dispatch();
      if (fatal !== undefined) break;
    }
    if (fatal === undefined) await dispatch();
  } catch (err) {
    await Promise.all(inFlight);
    progress.done();
    if (err instanceof InputError) {
      io.err(`halflife: ${err.message}\n`);
      return 2;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && !(err instanceof HalflifeApiError)) {
      io.err(`halflife: cannot read ${input}: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  } finally {
    if (input !== '-') stream.destroy();
  }
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
  }
  if (firstErrors.length > 0) {
    const more = summary.rejected > firstErrors.length ? ` (first ${firstErrors.length} of ${summary.rejected})` : '';
    io.err(`halflife: ${summary.rejected} event(s) rejected${more}:\n${firstErrors.join('\n')}\n(halflife dlq list shows them all)\n`);
  }
  if (fatal !== undefined) {
    io.err(`halflife: ${summary.failedRequests} request(s) failed: ${fatal.code}: ${fatal.message}\n`);
    return 1;
  }
  return summary.rejected > 0 ? 1 : 0;
}
