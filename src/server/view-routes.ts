import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HalflifeError } from '../core/index.js';
import { checkTableDepth, parseTableBody } from '../engine/index.js';
import type { EngineHost } from '../engine/index.js';
import { queryOn } from '../query/index.js';
import { formatTimes, timeFormatParam, type TimeFormat } from './time-format.js';

// `time` is the answer's time format (?time=iso), never a key filter.
const RESERVED = new Set(['from', 'to', 'latest', 'order', 'limit', 'time']);
/** Bytes a live stream may leave unsent (its client not reading) before it is ended. */
const MAX_UNSENT_BYTES = 8 * 2 ** 20;

function time(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(ms)) throw new HalflifeError('INVALID_QUERY', { name, reason: `expected epoch milliseconds or an ISO-8601 time, got ${JSON.stringify(raw)}` });
  return ms;
}

function sqlOf(body: unknown): string {
  if (typeof body === 'string') return body;
  if (body !== null && typeof body === 'object' && typeof (body as { sql?: unknown }).sql === 'string') return (body as { sql: string }).sql;
  throw new HalflifeError('INVALID_REQUEST', { reason: 'send {"sql": "CREATE VIEW … AS SELECT …"} or the SQL text with content type text/plain' });
}

/** Views, live updates and static tables. */
/** Registers the routes; returns how many live streams are open (a metric). */
export function registerViewRoutes(app: FastifyInstance, engine: EngineHost, maxLiveStreams: number): () => number {
  // Live streams never end by themselves: close them first on shutdown, or closing the server would wait for them.
  const streams = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of streams) res.end('event: end\ndata: {"reason":"server shutting down"}\n\n');
    streams.clear();
  });
  app.addContentTypeParser(['text/plain', 'application/sql', 'text/csv', 'application/x-ndjson'], { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.put('/v1/views/:name', async (request, reply) => {
    const { name } = request.params as { name: string };
    const existed = (await engine.names()).includes(name);
    const q = request.query as { replace?: string };
    const info = await engine.createView(name, sqlOf(request.body), q.replace === 'true');
    return reply.code(existed ? 200 : 201).send(info);
  });
  app.get('/v1/views', async () => ({ views: await engine.infos() }));
  app.get('/v1/views/:name/definition', async (request) => {
    const { name } = request.params as { name: string };
    return { name, sql: (await engine.info(name)).sql };
  });
  app.get('/v1/views/:name/late', async (request) => {
    const { name } = request.params as { name: string };
    return engine.late(name);
  });
  app.delete('/v1/views/:name', async (request, reply) => {
    const { name } = request.params as { name: string };
    await engine.dropView(name);
    return reply.code(204).send();
  });
  app.get('/v1/views/:name', async (request) => {
    const { name } = request.params as { name: string };
    const q = request.query as Record<string, string | undefined>;
    const format = timeFormatParam(q);
    const keys: Record<string, string> = {};
    for (const [k, v] of Object.entries(q)) if (!RESERVED.has(k) && v !== undefined) keys[k] = v;
    const limit = q.limit === undefined ? undefined : Number(q.limit);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 100_000)) {
      throw new HalflifeError('INVALID_QUERY', { name: 'limit', reason: 'expected an integer from 1 to 100000' });
    }
    let order = q.order;
    if (order !== undefined && / (desc|asc)$/i.test(order)) order = (/ desc$/i.test(order) ? '-' : '') + order.replace(/ (desc|asc)$/i, '');
    const rows = await engine.rows(name, { keys, fromMs: time(q.from, 'from'), toMs: time(q.to, 'to'), latest: q.latest === 'true', order, limit });
    return { rows: formatTimes(rows, format) };
  });
  app.get('/v1/views/:name/live', (request, reply) => {
    const format = timeFormatParam(request.query as Record<string, unknown>);
    if (streams.size >= maxLiveStreams) throw new HalflifeError('AT_CAPACITY', { reason: `${streams.size} live streams are open (server.maxLiveStreams)` });
    return live(request, reply, engine, streams, format);
  });
  app.post('/v1/query', async (request) => {
    const format = timeFormatParam(request.query as Record<string, unknown>);
    const result = await queryOn(engine, sqlOf(request.body));
    return format === 'ms' ? result : { ...result, rows: formatTimes(result.rows, format) };
  });

  app.put('/v1/tables/:name', (request) => putTable(request, engine, true));
  app.patch('/v1/tables/:name', (request) => putTable(request, engine, false));
  app.get('/v1/tables', async () => ({ tables: await Promise.all((await engine.tableNames()).map((n) => engine.tableInfo(n))) }));
  app.get('/v1/tables/:name', async (request) => {
    const { name } = request.params as { name: string };
    return { ...(await engine.tableInfo(name)), data: await engine.tableRows(name) };
  });
  app.delete('/v1/tables/:name', async (request, reply) => {
    const { name } = request.params as { name: string };
    await engine.dropTable(name);
    return reply.code(204).send();
  });
  return () => streams.size;
}

async function putTable(request: FastifyRequest, engine: EngineHost, replace: boolean) {
  const { name } = request.params as { name: string };
  const q = request.query as { key?: string };
  const contentType = String(request.headers['content-type'] ?? 'application/json');
  // A JSON body arrives parsed (JSON.parse takes any depth); checked before anything serialises it again.
  if (Array.isArray(request.body)) checkTableDepth(name, request.body);
  const body = typeof request.body === 'string' ? request.body : JSON.stringify(request.body ?? []);
  const rows = parseTableBody(name, body, contentType);
  checkTableDepth(name, rows);
  let keyColumn = q.key;
  if (keyColumn === undefined) {
    try {
      keyColumn = (await engine.tableInfo(name)).keyColumn;
    } catch {
      // `id` if the first row has one, else its first column (a row that is not an object is refused by the table).
      const first: unknown = rows[0];
      const columns = first !== null && typeof first === 'object' && !Array.isArray(first) ? Object.keys(first) : [];
      keyColumn = columns.length === 0 || columns.includes('id') ? 'id' : columns[0]!;
    }
  }
  return engine.putTable(name, keyColumn, rows, replace);
}

/**
 * Server-Sent Events: first the current rows, then every refresh the rows that changed (`_final` marks rows of
 * closed windows). A heartbeat comment keeps proxies from closing an idle stream.
 */
async function live(request: FastifyRequest, reply: FastifyReply, engine: EngineHost, streams: Set<ServerResponse>, format: TimeFormat): Promise<void> {
  const { name } = request.params as { name: string };
  const refreshMs = await engine.refreshMs(name); // 404 before the stream starts
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  streams.add(res);
  let version = 0;
  let busy = false;
  let open = true;
  const send = async () => {
    if (busy || !open) return;
    busy = true;
    try {
      const current = await engine.version(name);
      if (current === version) res.write(': keep-alive\n\n');
      else {
        // A client that does not read would make the server buffer for ever: past the bound, its stream ends.
        if (res.writableLength > MAX_UNSENT_BYTES) {
          res.end('event: end\ndata: {"reason":"the client reads too slowly"}\n\n');
          stop();
          return;
        }
        const rows = await engine.rows(name, { sinceVersion: version, limit: 10_000 });
        version = current;
        if (rows.length > 0 && open) res.write(`event: rows\ndata: ${JSON.stringify({ rows: formatTimes(rows, format) })}\n\n`);
      }
    } catch {
      if (open) {
        res.write('event: end\ndata: {"reason":"view dropped"}\n\n');
        res.end();
      }
      stop();
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void send(), refreshMs);
  function stop() {
    open = false;
    clearInterval(timer);
    streams.delete(res);
  }
  request.raw.on('close', stop);
  res.on('close', stop);
  await send();
}
