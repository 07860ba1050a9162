import { Readable } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ArchiveStatus } from '../sinks/index.js';
import type { History } from '../history/index.js';
import type { HalflifeConfig } from '../config/index.js';
import { decodeEventRecord, HalflifeError, type Logger } from '../core/index.js';
import type { EngineHost } from '../engine/index.js';
import type { DeadLetterFilter, DeadLetterStore, Ingestor } from '../ingest/index.js';
import type { Log } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import { sendError, toHalflifeError } from './http-errors.js';
import { registerViewRoutes } from './view-routes.js';
import { formatTimes, timeFormatParam } from './time-format.js';
import { registerAuth } from './auth.js';
import type { KeyStore } from './keys.js';
import type { OverloadMonitor } from './overload.js';
import type { Metrics } from './metrics.js';
import type { AlertManager } from '../alerts/index.js';
import type { pino } from 'pino';
import type { ClusterStatus } from './cluster-status.js';

export interface AppComponents {
  readonly config: HalflifeConfig;
  readonly log: Log & { readonly queuedBytes: number };
  readonly registry: SchemaRegistry;
  readonly ingestor: Ingestor;
  readonly deadLetters: DeadLetterStore;
  readonly engine: EngineHost;
  readonly keys: KeyStore;
  readonly overload: OverloadMonitor;
  readonly metrics: Metrics;
  readonly alerts: AlertManager;
  readonly logger: pino.Logger;
  /** TLS certificate and key (PEM) for HTTPS, or undefined for plain HTTP. */
  readonly tls?: { cert: Buffer; key: Buffer } | undefined;
  /** False while starting or after shutdown began. */
  ready(): boolean;
  closing(): boolean;
  /** /healthz's answer: `degraded` with reasons while a part works below its capacity (the server still answers). */
  health(): { status: 'ok' | 'degraded'; reasons?: string[] };
  /** POST /v1/sql: SQL over all history. */
  readonly history?: History;
  /** GET /v1/archive: what the archive wrote and has left (undefined: it does not run here). */
  archive?(): ArchiveStatus | undefined;
  /** GET /v1/cluster: the processes, the log's partitions and the servers behind it, with warnings. */
  cluster(): Promise<ClusterStatus>;
}

const PRIORITY_RANK = { low: 1, normal: 2, high: 3 } as const;
const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/jsonlines', 'application/x-jsonlines']);

/** Builds the HTTP API (not listening). Tests use `inject` on it; `HalflifeServer` listens. */
export function buildApp(c: AppComponents): FastifyInstance {
  const maxBody = c.config.ingest.maxBodyBytes;
  // Node checks request timeouts on this interval (default 30 s): often enough for the configured timeout to hold.
  const connectionsCheckingInterval = Math.max(50, Math.min(1000, Math.floor(c.config.server.requestTimeoutMs / 4)));
  const app = Fastify({
    ...(c.tls === undefined ? { http: { connectionsCheckingInterval } } : { https: { ...c.tls, connectionsCheckingInterval } }),
    loggerInstance: c.logger as FastifyBaseLogger,
    logController: new RequestLogController(),
    bodyLimit: maxBody,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Slow clients (slowloris) must not hold sockets for ever: headers and body must arrive within this.
    requestTimeout: c.config.server.requestTimeoutMs,
    // A request id from the caller (X-Request-Id) or ours: in every log line of the request and in the answer.
    requestIdHeader: 'x-request-id',
    connectionTimeout: 0,
    // Names are up to 128 characters (documented); the router's default of 100 answered 414 in its own shape.
    routerOptions: { maxParamLength: 512 },
    // Errors Node's HTTP parser raises before Fastify sees a request (headers too large, a bad Content-Length):
    // answered in the one error shape too.
    clientErrorHandler: clientError,
    // The router's own refusals (a path segment past maxParamLength, a URL that does not decode), in our shape.
    frameworkErrors: (err, _request, reply) =>
      sendError(
        reply,
        new HalflifeError('INVALID_REQUEST', { reason: err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a name in the path is longer than 512 characters' : 'the URL could not be decoded' }),
        c.logger as unknown as Logger,
      ),
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
  app.addHook('onRequest', async (request) => {
    // A parameter given twice arrives as an array, which no route expects: refused by name, not a 500.
    for (const [name, v] of Object.entries(request.query as Record<string, unknown>)) {
      if (Array.isArray(v)) throw new HalflifeError('INVALID_QUERY', { name, reason: `given ${v.length} times; give it once` });
    }
  });
  app.addHook('onRequest', async (request, reply) => {
    if (c.closing()) {
      void reply.header('connection', 'close');
      throw new HalflifeError('SHUTTING_DOWN');
    }
  });
  app.addHook('onSend', async (request, reply, payload) => {
    if (c.closing()) void reply.header('connection', 'close');
    void reply.header('x-request-id', request.id);
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    c.metrics.httpDuration.observe({ method: request.method, route: request.routeOptions.url ?? '(unmatched)', status_code: reply.statusCode }, reply.elapsedTime / 1000);
  });
  // Node's requestTimeout cuts off slow headers but not a slow body once the headers are in: a client trickling
  // its body (slowloris) would hold the request, and its bytes in flight, for ever. The body must be in by then.
  const bodyTimers = new WeakMap<FastifyRequest, NodeJS.Timeout>();
  const timeoutMs = c.config.server.requestTimeoutMs;
  app.addHook('onRequest', async (request, reply) => {
    const timer = setTimeout(() => {
      if (reply.sent) return;
      void reply.header('connection', 'close');
      sendError(reply, new HalflifeError('REQUEST_TIMEOUT', { timeoutMs }), logger);
      reply.raw.once('finish', () => request.raw.socket?.destroy());
    }, timeoutMs);
    timer.unref();
    bodyTimers.set(request, timer);
  });
  const bodyIn = async (request: FastifyRequest) => clearTimeout(bodyTimers.get(request));
  app.addHook('preHandler', bodyIn);
  app.addHook('onResponse', bodyIn);
  app.addHook('onRequestAbort', bodyIn);

  registerAuth(app, { keys: c.keys, mode: c.config.auth, host: c.config.server.host });

  // Liveness: 200 while the server thread answers; `degraded` (still 200) says what works below its capacity.
  app.get('/healthz', async () => c.health());
  app.get('/readyz', async (_req, reply) => {
    if (!c.ready()) return reply.code(503).send({ ready: false, reason: 'starting or stopping' });
    // Unready under hard overload, so a load balancer steers new traffic elsewhere.
    const o = c.overload.status();
    if (o.hard || o.pressure >= 1) return reply.code(503).send({ ready: false, reason: `overloaded (${o.reason})` });
    return { ready: true };
  });
  app.get('/metrics', async (_request, reply) => {
    const text = await c.metrics.text();
    return reply.type(c.metrics.contentType).send(text);
  });
  app.get('/v1/cluster', async () => c.cluster());
  app.post('/v1/sql', async (request, reply) => {
    if (c.history === undefined) throw new HalflifeError('SQL_ERROR', { reason: 'SQL over history does not run here' });
    const body = request.body as { sql?: unknown } | string | undefined;
    const sql = typeof body === 'string' ? body : body?.sql;
    if (typeof sql !== 'string') throw new HalflifeError('INVALID_REQUEST', { reason: 'give {"sql": "SELECT …"} (or the SQL as text/plain)' });
    const format = (request.query as Record<string, string | undefined>).format ?? 'json';
    if (format !== 'json' && format !== 'ndjson' && format !== 'csv') throw new HalflifeError('INVALID_REQUEST', { reason: `format must be json, ndjson or csv (got ${JSON.stringify(format)})` });
    if (format === 'json') return c.history.query(sql);
    // Streamed as DuckDB makes the rows: errors found before the first row get their status; one after (the time
    // limit) cuts the answer short. At most history.maxRows rows (the header says the limit).
    const s = await c.history.stream(sql);
    reply.header('x-halflife-max-rows', String(c.config.history.maxRows));
    const names = s.columns.map((col) => col.name);
    const lines = async function* () {
      if (format === 'csv') yield `${names.map(csvCell).join(',')}\r\n`;
      for await (const rows of s.rows) {
        yield rows.map((row) => (format === 'csv' ? `${row.map(csvCell).join(',')}\r\n` : `${JSON.stringify(Object.fromEntries(names.map((n, i) => [n, row[i]])))}\n`)).join('');
      }
    };
    reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
    // A client that goes away stops the query and frees its DuckDB (also before the first row, or already gone).
    const end = () => {
      void s.rows.return(undefined);
      s.close();
    };
    if (reply.raw.destroyed || request.raw.destroyed) {
      end();
      return reply;
    }
    reply.raw.on('close', end);
    return reply.send(Readable.from(lines()));
  });
  app.get('/v1/archive', async () => {
    const a = c.archive?.();
    if (a === undefined) return { enabled: false };
    const lag = a.lag === null ? null : Object.values(a.lag).reduce((x, y) => x + y, 0);
    return { enabled: true, ...a, lagRecords: lag };
  });
  app.get('/v1/status', async () => ({
    overload: c.overload.status(),
    shedEvents: c.ingestor.shedCounts(),
    shedRequests: c.overload.shedRequests(),
    divertedEvents: c.ingestor.divertedEvents,
  }));

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
    // Admission before the body is read: at the memory budget, or with too many request bytes in flight, the
    // request is refused at once (its body is never buffered).
    const admitted = new WeakMap<FastifyRequest, number>();
    scope.addHook('onRequest', async () => {
      const role = c.config.cluster.role;
      if (role === 'worker' || role === 'query') throw new HalflifeError('ROLE_NOT_SERVED', { role, what: 'accept events', wanted: 'ingest' });
    });
    scope.addHook('onRequest', async (request, reply) => {
      // A request may declare its priority (X-Halflife-Priority): then it can be shed before its body is read,
      // which is what keeps an overloaded server able to take high-priority traffic. Its events are still shed
      // by their own types' priorities after parsing.
      const header = request.headers['x-halflife-priority'];
      if (header !== undefined) {
        if (header !== 'low' && header !== 'normal' && header !== 'high') {
          throw new HalflifeError('INVALID_REQUEST', { reason: `X-Halflife-Priority must be low, normal or high (got ${JSON.stringify(header)})` });
        }
        const s = c.overload.status();
        if (s.shed >= PRIORITY_RANK[header]) {
          c.overload.countShedRequest(header);
          throw new HalflifeError('OVERLOADED', { reason: s.reason, priority: s.shed === 1 ? 'low' : 'low- and normal' });
        }
      }
      const declared = Number(request.headers['content-length']);
      const bytes = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, maxBody) : maxBody;
      if (!c.overload.admit(bytes)) {
        void reply.header('connection', 'close');
        const s = c.overload.status();
        throw new HalflifeError('AT_CAPACITY', { reason: s.hard ? 'memory budget reached' : 'too many request bytes in flight' });
      }
      admitted.set(request, bytes);
    });
    const release = async (request: FastifyRequest) => {
      const bytes = admitted.get(request);
      if (bytes === undefined) return;
      admitted.delete(request);
      c.overload.release(bytes);
    };
    scope.addHook('onResponse', release);
    scope.addHook('onRequestAbort', release);
    scope.post('/v1/events', async (request, reply) => {
      const format = bodyFormat(request);
      const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
      c.metrics.countIngestBytes(body.length);
      const key = request.apiKey;
      const limits = c.config.rateLimits;
      const rate = key?.eventsPerS ?? limits.keyEventsPerS;
      const rateLimit = key !== undefined && rate > 0 ? { name: key.id, eventsPerS: rate, burstEvents: key.burstEvents ?? (limits.keyBurstEvents || rate) } : undefined;
      const source = key === undefined ? { address: request.ip } : { address: request.ip, key: key.id, types: key.types };
      const result = await c.ingestor.ingestBody(body, format, source, { allowedTypes: key?.types ?? null, rateLimit });
      if (result.shed > 0) void reply.header('retry-after', '1');
      return result;
    });
  });

  // Alerts -------------------------------------------------------------------------------------------------
  app.get('/v1/alerts', async () => ({ rules: c.alerts.list(), history: c.alerts.history() }));
  app.get('/v1/alerts/:name', async (request) => c.alerts.info((request.params as { name: string }).name));
  app.put('/v1/alerts/:name', async (request) => c.alerts.put((request.params as { name: string }).name, request.body));
  app.delete('/v1/alerts/:name', async (request, reply) => {
    await c.alerts.delete((request.params as { name: string }).name);
    return reply.code(204).send();
  });

  // API keys (admin) ------------------------------------------------------------------------------------
  app.get('/v1/keys', async () => ({ keys: c.keys.list() }));
  app.post('/v1/keys', async (request, reply) => {
    const b = (request.body ?? {}) as { name?: unknown; scopes?: unknown; types?: unknown; origins?: unknown; eventsPerS?: unknown; burstEvents?: unknown };
    const num = (v: unknown, name: string): number | undefined => {
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'number') throw new HalflifeError('INVALID_REQUEST', { reason: `${name} must be a number` });
      return v;
    };
    const strings = (v: unknown, name: string): string[] | undefined => {
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new HalflifeError('INVALID_REQUEST', { reason: `${name} must be an array of strings` });
      return v as string[];
    };
    if (b.name !== undefined && typeof b.name !== 'string') throw new HalflifeError('INVALID_REQUEST', { reason: 'name must be a string' });
    const created = await c.keys.create({
      name: b.name,
      scopes: strings(b.scopes, 'scopes') ?? [],
      types: strings(b.types, 'types'),
      origins: strings(b.origins, 'origins'),
      eventsPerS: num(b.eventsPerS, 'eventsPerS'),
      burstEvents: num(b.burstEvents, 'burstEvents'),
    });
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
    const format = timeFormatParam(q);
    const page = await c.deadLetters.list(deadLetterFilter(q), limit);
    return format === 'ms' ? page : { ...page, deadletters: formatTimes(page.deadletters as unknown as Record<string, unknown>[], format) };
  });
  app.post('/v1/deadletters/replay', async (request) => {
    const q = { ...(request.query as Record<string, string | undefined>), ...stringify(request.body) };
    return c.ingestor.replayDeadLetters(deadLetterFilter(q));
  });

  // The log ---------------------------------------------------------------------------------------------
  app.get('/v1/streams', async () => c.log.stats());
  app.get('/v1/events', async (request) => {
    const q = request.query as Record<string, string | undefined>;
    const format = timeFormatParam(q);
    const page = await readEvents(c.log, q);
    return { ...page, records: formatTimes(page.records, format) };
  });

  const liveClients = registerViewRoutes(app, c.engine, c.config.server.maxLiveStreams);
  if (!c.metrics.attached) {
    c.metrics.attach({ registry: c.registry, ingestor: c.ingestor, log: c.log, engine: c.engine, overload: c.overload, liveClients, alerts: () => c.alerts.counts(), archive: () => c.archive?.() });
  }

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

/** A JSON body of filters (`{type, code, since}`) as query parameters: an object of strings or numbers. */
function stringify(body: unknown): Record<string, string | undefined> {
  if (body === null || body === undefined) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new HalflifeError('INVALID_REQUEST', { reason: 'the body must be a JSON object of filters' });
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(body)) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new HalflifeError('INVALID_REQUEST', { reason: `filter ${JSON.stringify(k.slice(0, 64))} must be a string or a number` });
    }
    out[k] = v === null ? undefined : String(v);
  }
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
        at = r.next;
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

/** Answers what Node's HTTP parser refuses (before any route) in the documented error shape, then closes. */
function clientError(err: Error & { code?: string }, socket: import('node:net').Socket): void {
  if (!socket.writable) return void socket.destroy();
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new HalflifeError('HEADERS_TOO_LARGE')
      : new HalflifeError('INVALID_REQUEST', { reason: `the HTTP request could not be parsed (${err.code ?? err.message})` });
  const body = JSON.stringify({ error: { code: e.code, message: e.message, details: e.details ?? {} } });
  socket.end(`HTTP/1.1 ${e.status} ${e.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/** One CSV field (RFC 4180): quoted when it holds a comma, quote or line break; NULL is empty, objects JSON. */
function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
