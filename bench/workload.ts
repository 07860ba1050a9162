/**
 * Deterministic workload: ~250-byte events of three types, users Zipf-like over 1M ids, articles and trading
 * pairs skewed over 10k keys. Same seed, same events.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Skewed pick in [0, n): an approximation of Zipf(s≈1) by inverse power sampling. */
function skewed(rand: () => number, n: number): number {
  return Math.min(n - 1, Math.floor(Math.pow(n + 1, rand()) - 1));
}

const SECTIONS = ['news', 'sport', 'culture', 'business', 'science', 'travel'];
const REFERRERS = ['https://www.google.com/', 'https://news.ycombinator.com/', 'https://t.co/', 'direct', 'https://www.facebook.com/'];
const PAIRS = ['BTC-USD', 'ETH-USD', 'SOL-USD', 'BTC-EUR', 'ETH-BTC'];
const VERSIONS = ['1.4.0', '1.4.1', '1.5.0-rc1'];

export interface WorkloadEvent {
  type: string;
  data: Record<string, unknown>;
  key?: string;
}

export function makeEvents(seed: number, count: number, startMs = 1_790_000_000_000): WorkloadEvent[] {
  const rand = mulberry32(seed);
  const out: WorkloadEvent[] = [];
  for (let i = 0; i < count; i++) {
    const r = rand();
    const user = `u${skewed(rand, 1_000_000)}`;
    if (r < 0.7) {
      const article = `a${skewed(rand, 10_000)}`;
      out.push({
        type: 'page_view',
        key: article,
        data: {
          article_id: article,
          user_id: user,
          section: SECTIONS[Math.floor(rand() * SECTIONS.length)],
          read_ms: Math.floor(rand() * 120_000),
          referrer: REFERRERS[Math.floor(rand() * REFERRERS.length)],
          device: rand() < 0.6 ? 'mobile' : 'desktop',
          url: `https://example.com/${SECTIONS[Math.floor(rand() * SECTIONS.length)]}/2026/11/${article}-story`,
          session_id: `s${Math.floor(rand() * 1e9)}`,
          ts_client: startMs + i,
        },
      });
    } else if (r < 0.9) {
      const pair = PAIRS[skewed(rand, PAIRS.length)];
      out.push({
        type: 'trade',
        key: pair,
        data: {
          pair,
          side: rand() < 0.5 ? 'buy' : 'sell',
          price: Math.round(rand() * 1e8) / 100,
          qty: Math.round(rand() * 1e6) / 1e4,
          account: user,
          venue: 'main',
          order_id: `o${Math.floor(rand() * 1e12)}`,
          client_order_id: `c-${Math.floor(rand() * 1e12)}-${Math.floor(rand() * 1e6)}`,
          fee_bps: Math.floor(rand() * 30),
        },
      });
    } else {
      out.push({
        type: 'app_error',
        data: {
          version: VERSIONS[Math.floor(rand() * VERSIONS.length)],
          code: `E${100 + Math.floor(rand() * 20)}`,
          user_id: user,
          route: `/api/v1/items/${Math.floor(rand() * 1000)}`,
          message: 'upstream timed out while fetching recommendations for the home page carousel',
          host: `web-${Math.floor(rand() * 40)}.eu-west-1.internal`,
        },
      });
    }
  }
  return out;
}

export const WORKLOAD_SCHEMAS: Record<string, unknown> = {
  page_view: {
    type: 'object',
    properties: {
      article_id: { type: 'string' },
      user_id: { type: 'string' },
      section: { type: 'string' },
      read_ms: { type: 'integer', minimum: 0 },
      referrer: { type: 'string' },
      device: { enum: ['mobile', 'desktop'] },
      url: { type: 'string' },
      session_id: { type: 'string' },
      ts_client: { type: 'integer' },
    },
    required: ['article_id', 'user_id'],
  },
  trade: {
    type: 'object',
    properties: {
      pair: { type: 'string' },
      side: { enum: ['buy', 'sell'] },
      price: { type: 'number', minimum: 0 },
      qty: { type: 'number', minimum: 0 },
      account: { type: 'string' },
      venue: { type: 'string' },
      order_id: { type: 'string' },
      client_order_id: { type: 'string' },
      fee_bps: { type: 'integer', minimum: 0 },
    },
    required: ['pair', 'side', 'price', 'qty'],
  },
  app_error: {
    type: 'object',
    properties: {
      version: { type: 'string' },
      code: { type: 'string' },
      user_id: { type: 'string' },
      route: { type: 'string' },
      message: { type: 'string' },
      host: { type: 'string' },
    },
    required: ['version', 'code'],
  },
};
