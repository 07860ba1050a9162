import { defaultConfig, type HalflifeConfig } from '../../src/config/index.js';
import { HalflifeServer } from '../../src/server/index.js';
import { pino } from 'pino';
import { tempDir } from './tmp.js';

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

export interface TestServer {
  server: HalflifeServer;
  dir: string;
  config: HalflifeConfig;
  /** Stops the server (if running) and removes its data. */
  cleanup(): Promise<void>;
}

/**
 * Overload bounds that shed nothing and refuse nothing: a test that does not test overload must not fail because
 * other programs keep the machine's cores busy. A test of shedding sets the bounds it tests (overrides win).
 */
export const NO_SHEDDING = {
  memoryBudgetBytes: 2 ** 50,
  maxInflightBytes: 2 ** 50,
  maxQueuedBytes: 2 ** 50,
  maxEngineLagEvents: 2 ** 50,
} as const satisfies Partial<HalflifeConfig['overload']>;

export function testConfig(dataDir: string, overrides: DeepPartial<HalflifeConfig> = {}): HalflifeConfig {
  const config = defaultConfig();
  config.dataDir = dataDir;
  config.server.port = 0;
  config.logLevel = 'silent';
  // One ingest worker whatever the machine: tests start many servers.
  config.ingest.workers = 1;
  Object.assign(config.overload, NO_SHEDDING);
  for (const [k, v] of Object.entries(overrides)) {
    const target = (config as unknown as Record<string, unknown>)[k];
    if (v !== null && typeof v === 'object' && target !== null && typeof target === 'object') Object.assign(target, v);
    else (config as unknown as Record<string, unknown>)[k] = v;
  }
  return config;
}

/** A started server on a fresh data folder, not listening: use `server.app.inject`. */
export async function startServer(overrides: DeepPartial<HalflifeConfig> = {}, dir?: string): Promise<TestServer> {
  const tmp = dir === undefined ? await tempDir() : { dir, cleanup: async () => {} };
  const config = testConfig(tmp.dir, overrides);
  const server = new HalflifeServer({ config, logger: pino({ level: 'silent' }) });
  await server.start();
  return {
    server,
    dir: tmp.dir,
    config,
    async cleanup() {
      await server.close();
      await tmp.cleanup();
    },
  };
}

/** Waits until the view has applied everything the log holds now. */
export async function caughtUp(t: TestServer, view: string) {
  const end = t.server.log.stats().partitions.map((p) => p.nextOffset);
  for (let i = 0; i < 1000; i++) {
    const info = await t.server.engine.info(view);
    if (info.offsets.every((o, p) => o >= end[p])) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`view ${view} did not catch up`);
}

/**
 * A request through the app without a socket: `payload` as JSON (a string is sent as it is) with `contentType`;
 * the answer's status and parsed body (undefined when empty).
 */
export async function inject(t: TestServer, method: string, url: string, payload?: unknown, contentType = 'application/json') {
  const res = await t.server.app.inject({
    method: method as 'GET',
    url,
    payload: payload === undefined ? undefined : typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: payload === undefined ? {} : { 'content-type': contentType },
  });
  return { status: res.statusCode, body: res.body.length > 0 ? (JSON.parse(res.body) as any) : undefined };
}
