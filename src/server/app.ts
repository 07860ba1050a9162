import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { HalflifeConfig } from '../config/index.js';
import { decodeEventRecord, HalflifeError, type Logger } from '../core/index.js';
import type { EngineHost } from './engine-host.js';
import type { DeadLetterFilter, DeadLetterStore, Ingestor } from '../ingest/index.js';
import type { Log } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import { sendError, toHalflifeError } from './http-errors.js';
import { registerViewRoutes } from './view-routes.js';
import { registerAuth } from './auth.js';
import type { KeyStore } from './keys.js';
import type { pino } from 'pino';

export interface AppComponents {
  readonly config: HalflifeConfig;
  readonly log: Log;
  readonly registry: SchemaRegistry;
  readonly ingestor: Ingestor;
  readonly deadLetters: DeadLetterStore;
  readonly engine: EngineHost;
  readonly keys: KeyStore;
  readonly logger: pino.Logger;
  /** TLS certificate and key (PEM) for HTTPS, or undefined for plain HTTP. */
  readonly tls?: { cert: Buffer; key: Buffer } | undefined;
  /** False while starting or after shutdown began. */
  ready(): boolean;
  closing(): boolean;
}

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/jsonlines', 'application/x-jsonlines']);

/** Builds the HTTP API (not listening). Tests use `inject` on it; `HalflifeServer` listens. */
export function buildApp(c: AppComponents): FastifyInstance {
  const maxBody = c.config.ingest.maxBodyBytes;
  const app = Fastify({
    ...(c.tls === undefined ? {} : { https: c.tls }),
    loggerInstance: c.logger as FastifyBaseLogger,
    logController: new RequestLogController(),
    bodyLimit: maxBody,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Slow clients must not hold sockets for ever.
    requestTimeout: 60_000,
    connectionTimeout: 0,
  });
  const logger = c.logger as unknown as Logger;

  // JSON bodies are optional on routes that take filters (an empty body with a JSON content type is not an error).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new HalflifeError('MALFORMED_JSON', { reason: (err as Error).message }), undefined);
    }
  });

  app.setErrorHandler((err, request, reply) => sendError(reply, toHalflifeError(err, request, maxBody), logger));
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new HalflifeError('ROUTE_NOT_FOUND', { method: request.method, url: request.url.split('?')[0] }), logger),
  );
  app.addHook('onRequest', async (request, reply) => {
    if (c.closing()) {
      void reply.header('connection', 'close');
      throw new HalflifeError('SHUTTING_DOWN');
    }
  });

  registerAuth(app, { keys: c.keys, mode: c.config.auth, host: c.config.server.host });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    if (!c.ready()) return reply.code(503).send({ ready: false });
    return { ready: true };
  });

  // Schemas ---------------------------------------------------------------------------------------------
  app.put('/v1/schemas/:type', async (request, reply) => {
    const { type } = request.params as { type: string };
    const result = await c.registry.register(type, request.body);
    return reply.code(result.created ? 201 : 200).send(result);
  });
  app.get('/v1/schemas', async () => ({ schemas: c.registry.list() }));
  app.get('/v1/schemas/:type', async (request) => {
    const { type } = request.params as { type: string };
    const latest = c.registry.get(type);
    return {
      ...latest,
      compatibility: c.registry.compatibility(type),
      versions: c.registry.versions(type).map((v) => v.version),
    };
  });
  app.get('/v1/schemas/:type/versions/:version', async (request) => {
    const { type, version } = request.params as { type: string; version: string };
    const n = Number(version);
    if (!Number.isInteger(n) || n < 1) {
      throw new HalflifeError('INVALID_REQUEST', { reason: `version must be a positive integer (got ${JSON.stringify(version)})` });
    }
    return c.registry.get(type, n);
  });
  app.get('/v1/schemas/:type/config', async (request) => {
    const { type } = request.params as { type: string };
    return { type, compatibility: c.registry.compatibility(type) };
  });
  app.put('/v1/schemas/:type/config', async (request) => {
    const { type } = request.params as { type: string };
    const body = request.body as { compatibility?: unknown } | null;
    await c.registry.setCompatibility(type, String(body?.compatibility));
    return { type, compatibility: c.registry.compatibility(type) };
  });

  // Ingest: the body arrives as text so NDJSON lines can fail one by one and bad JSON can be dead-lettered.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBody }, (_req, body, done) => done(null, body));
    scope.post('/v1/events', async (request) => {
      const format = bodyFormat(request);
      const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
      return c.ingestor.ingestBody(body, format, { address: request.ip }, request.apiKey?.types ?? null);
    });
  });

  // API keys (admin) ------------------------------------------------------------------------------------
  app.get('/v1/keys', async () => ({ keys: c.keys.list() }));
  app.post('/v1/keys', async (request, reply) => {
    const b = (request.body ?? {}) as { name?: unknown; scopes?: unknown; types?: unknown; origins?: unknown };
    const strings = (v: unknown, name: string): string[] | undefined => {
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new HalflifeError('INVALID_REQUEST', { reason: `${name} must be an array of strings` });
      return v as string[];
    };
    if (b.name !== undefined && typeof b.name !== 'string') throw new HalflifeError('INVALID_REQUEST', { reason: 'name must be a string' });
    const created = await c.keys.create({ name: b.name, scopes: strings(b.scopes, 'scopes') ?? [], types: strings(b.types, 'types'), origins: strings(b.origins, 'origins') });
    c.logger.info({ keyId: created.info.id, scopes: created.info.scopes, name: created.info.name }, 'API key created');
    return reply.code(201).send({ key: created.key, ...created.info });
  });
  app.delete('/v1/keys/:id', async (request) => {
    const { id } = request.params as { id: string };
    if (!(await c.keys.revoke(id))) throw new HalflifeError('KEY_NOT_FOUND', { id });
    c.logger.info({ keyId: id }, 'API key revoked');
    return { id, revoked: true };
  });

  // Dead letters ----------------------------------------------------------------------------------------
  app.get('/v1/deadletters', async (request) => {
    const q = request.query as Record<string, string | undefined>;
    const limit = intParam(q, 'limit', 100, 1, 10_000);
    return c.deadLetters.list(deadLetterFilter(q), limit);
  });
  app.post('/v1/deadletters/replay', async (request) => {
    const q = { ...(request.query as Record<string, string | undefined>), ...stringify(request.body) };
    return c.ingestor.replayDeadLetters(deadLetterFilter(q));
  });

  // The log ---------------------------------------------------------------------------------------------
  app.get('/v1/streams', async () => c.log.stats());
  app.get('/v1/events', async (request) => readEvents(c.log, request.query as Record<string, string | undefined>));

  registerViewRoutes(app, c.engine);

  return app;
}

/** Request lines at debug level: at info they would dominate the log under load. */
class RequestLogController extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime, err: error ?? undefined }, 'request');
  }
}

function bodyFormat(request: FastifyRequest): 'json' | 'ndjson' {
  const raw = request.headers['content-type'];
  if (raw === undefined) return 'json';
  const type = raw.split(';')[0].trim().toLowerCase();
  if (NDJSON_TYPES.has(type)) return 'ndjson';
  if (type === 'application/json' || type.endsWith('+json') || type === 'text/plain') return 'json';
  throw new HalflifeError('UNSUPPORTED_MEDIA_TYPE', { contentType: JSON.stringify(raw) });
}

function stringify(body: unknown): Record<string, string | undefined> {
  if (body === null || typeof body !== 'object') return {};
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(body)) out[k] = v === undefined || v === null ? undefined : String(v);
  return out;
}

function intParam(q: Record<string, string | undefined>, name: string, dflt: number, min: number, max: number): number {
  const raw = q[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new HalflifeError('INVALID_QUERY', { name, reason: `expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}` });
  }
  return n;
}

/** A time as epoch ms or ISO-8601. */
function timeParam(q: Record<string, string | undefined>, name: string): number | undefined {
  const raw = q[name];
  if (raw === undefined || raw === '') return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(ms)) {
    throw new HalflifeError('INVALID_QUERY', { name, reason: `expected epoch milliseconds or an ISO-8601 time, got ${JSON.stringify(raw)}` });
  }
  return ms;
}

function deadLetterFilter(q: Record<string, string | undefined>): DeadLetterFilter {
  return {
    type: q.type || undefined,
    code: q.code || undefined,
    sinceMs: timeParam(q, 'since'),
    fromId: q.from === undefined || q.from === '' ? undefined : intParam(q, 'from', 0, 0, Number.MAX_SAFE_INTEGER),
  };
}

const MAX_SCANNED_PER_READ = 100_000;

/**
 * GET /v1/events. With `partition`: that partition from `from` (an offset) or `since` (a time). Without it:
 * every partition, resuming from `cursor` ("p:offset,p:offset,...") or `since`, or the start.
 * `next` is the cursor to continue from.
 */
async function readEvents(log: Log, q: Record<string, string | undefined>) {
  const limit = intParam(q, 'limit', 100, 1, 10_000);
  const since = timeParam(q, 'since');
  const type = q.type || undefined;
  const positions = new Map<number, number>();
  if (q.partition !== undefined && q.partition !== '') {
    const p = intParam(q, 'partition', 0, 0, log.partitionCount - 1);
    const from = q.from !== undefined && q.from !== '' ? intParam(q, 'from', 0, 0, Number.MAX_SAFE_INTEGER) : since !== undefined ? await log.offsetForTime(p, since) : 0;
    positions.set(p, from);
  } else if (q.cursor !== undefined && q.cursor !== '') {
    for (const part of q.cursor.split(',')) {
      const [p, o] = part.split(':').map(Number);
      if (!Number.isInteger(p) || !Number.isInteger(o) || p < 0 || p >= log.partitionCount || o < 0) {
        throw new HalflifeError('INVALID_QUERY', { name: 'cursor', reason: `expected "partition:offset,...", got ${JSON.stringify(q.cursor)}` });
      }
      positions.set(p, o);
    }
  } else {
    for (let p = 0; p < log.partitionCount; p++) positions.set(p, since !== undefined ? await log.offsetForTime(p, since) : 0);
  }
  const records: Record<string, unknown>[] = [];
  // A rare `type` must not turn one request into a scan of the whole log: stop after this many records and
  // let the client continue from `next`.
  let budget = MAX_SCANNED_PER_READ;
  for (const [p, from] of positions) {
    let at = from;
    while (records.length < limit && budget > 0) {
      const batch = await log.read(p, at, { maxRecords: Math.min(1000, budget, type ? 1000 : limit - records.length) });
      if (batch.length === 0) break;
      for (const r of batch) {
        at = r.offset + 1;
        budget--;
        const ev = decodeEventRecord(r.value, r.key);
        if (type !== undefined && ev.type !== type) continue;
        records.push({ partition: r.partition, offset: r.offset, ...ev });
        if (records.length >= limit) break;
      }
    }
    positions.set(p, Math.max(at, from));
  }
  const next = [...positions].map(([p, o]) => `${p}:${o}`).join(',');
  return { records, next };
}
