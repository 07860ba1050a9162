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

export interface WebhookSenderOptions {
  /** Host names webhooks may go to (`hooks.example.com`, `*.example.com`); null or absent: any. */
  readonly allowedHosts?: readonly string[] | null;
}

/**
 * Posts JSON to webhooks: a timeout per attempt, retries with exponential backoff on network errors, timeouts and
 * 5xx/429 answers (a 4xx other than 429 is final: the receiver refuses the payload), then gives up and says why.
 * Redirects are not followed (a webhook that redirects could lead the server anywhere), and with an allow-list only
 * its hosts are called.
 */
export class WebhookSender {
  readonly #logger: Logger;
  readonly #allowed: readonly string[] | null;

  constructor(logger: Logger = silentLogger, options: WebhookSenderOptions = {}) {
    this.#logger = logger;
    this.#allowed = options.allowedHosts?.map((h) => h.toLowerCase()) ?? null;
  }

  /** Why `url` may not be called (undefined: it may). The host is the URL's canonical one: 2130706433 is 127.0.0.1. */
  refusal(url: string): string | undefined {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return 'not a URL';
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'not an http(s) URL';
    if (this.#allowed === null) return undefined;
    const host = u.hostname.toLowerCase();
    const ok = this.#allowed.some((a) => (a.startsWith('*.') ? host.endsWith(a.slice(1)) : host === a));
    return ok ? undefined : `host ${host} is not in alerts.allowedWebhookHosts (${this.#allowed.join(', ') || 'empty'})`;
  }

  async send(url: string, body: unknown, options: WebhookOptions = {}): Promise<DeliveryResult> {
    const refused = this.refusal(url);
    if (refused !== undefined) return { delivered: false, attempts: 0, error: refused };
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
          redirect: 'manual',
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return { delivered: true, attempts: attempt };
        if (res.status >= 300 && res.status < 400) return { delivered: false, attempts: attempt, error: `HTTP ${res.status}: redirects are not followed` };
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

/**
 * A webhook URL for logs and API answers: its user info, query string and fragment may carry secrets, so they show as
 * `***` (`https://***@hooks.example.com/alert?***`).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username !== '' || u.password !== '' ? '***@' : '';
    return `${u.protocol}//${user}${u.host}${u.pathname}${u.search !== '' ? '?***' : ''}${u.hash !== '' ? '#***' : ''}`;
  } catch {
    return '(invalid url)';
  }
}
