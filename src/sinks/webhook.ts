import { silentLogger, type Logger } from '../core/index.js';

export interface WebhookOptions {
  /** Per attempt (default 5 s). */
  readonly timeoutMs?: number;
  /** Attempts in all (default 4). */
  readonly attempts?: number;
  /** Wait before the second attempt, doubling after each (default 500 ms). */
  readonly backoffMs?: number;
}

export interface DeliveryResult {
  readonly delivered: boolean;
  readonly attempts: number;
  /** Why the last attempt failed (HTTP status or error), when not delivered. */
  readonly error?: string;
}

/**
 * Posts JSON to webhooks: a timeout per attempt, retries with exponential backoff on network errors, timeouts and
 * 5xx/429 answers (a 4xx other than 429 is final: the receiver refuses the payload), then gives up and says why.
 */
export class WebhookSender {
  readonly #logger: Logger;

  constructor(logger: Logger = silentLogger) {
    this.#logger = logger;
  }

  async send(url: string, body: unknown, options: WebhookOptions = {}): Promise<DeliveryResult> {
    const attempts = Math.max(1, options.attempts ?? 4);
    const timeoutMs = options.timeoutMs ?? 5000;
    let wait = options.backoffMs ?? 500;
    let error = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'halflife-alerts' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return { delivered: true, attempts: attempt };
        error = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 429) return { delivered: false, attempts: attempt, error };
      } catch (err) {
        error = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
      }
      if (attempt < attempts) {
        this.#logger.debug({ url: redactUrl(url), attempt, error }, 'webhook delivery failed; retrying');
        await new Promise((r) => setTimeout(r, wait));
        wait *= 2;
      }
    }
    return { delivered: false, attempts, error };
  }
}

/** A webhook URL for logs: its query string and user info may carry secrets. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}
