import type {
  ApiKeyInfo,
  CreatedApiKey,
  NewApiKey,
  DeadLetterQuery,
  DeadLettersPage,
  ErrorBody,
  EventEnvelope,
  EventsPage,
  EventsQuery,
  IngestResponse,
  RegisterResponse,
  ReplayResponse,
  SchemaDetail,
  SchemaSummary,
  SchemaVersion,
  StreamStats,
  ClusterStatus,
  ViewInfo,
  ViewRowsQuery,
  QueryResponse,
  SqlResponse,
  TimeFormat,
} from './types.js';

/** An error answered by the server (`code` is the stable error code) or a transport failure (`NETWORK`). */
export class HalflifeApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;
  /** Seconds the server asked to wait (Retry-After), if any. */
  readonly retryAfterS: number | undefined;

  constructor(status: number, code: string, message: string, details: Record<string, unknown> = {}, retryAfterS?: number) {
    super(message);
    this.name = 'HalflifeApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterS = retryAfterS;
  }

  /** Worth retrying: overload, shutdown, network trouble. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
}

export interface ClientOptions {
  /** Base URL, e.g. http://127.0.0.1:7070 */
  url: string;
  apiKey?: string;
  /** Per-request timeout in ms (default 30 s). */
  timeoutMs?: number;
}

/** A small typed client for the halflife HTTP API. */
export class HalflifeClient {
  readonly #url: string;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions) {
    this.#url = options.url.replace(/\/+$/, '');
    this.#apiKey = options.apiKey;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  get url(): string {
    return this.#url;
  }

  /** Sends events (objects) as one JSON request. */
  sendEvents(events: EventEnvelope | EventEnvelope[]): Promise<IngestResponse> {
    return this.#request('POST', '/v1/events', JSON.stringify(events), 'application/json');
  }

  /** Sends NDJSON text as is (one event per line). */
  sendNdjson(body: string): Promise<IngestResponse> {
    return this.#request('POST', '/v1/events', body, 'application/x-ndjson');
  }

  registerSchema(type: string, schema: unknown): Promise<RegisterResponse> {
    return this.#request('PUT', `/v1/schemas/${encodeURIComponent(type)}`, JSON.stringify(schema), 'application/json');
  }

  async listSchemas(): Promise<SchemaSummary[]> {
    return (await this.#request<{ schemas: SchemaSummary[] }>('GET', '/v1/schemas')).schemas;
  }

  getSchema(type: string, version?: number): Promise<SchemaDetail | SchemaVersion> {
    const path = `/v1/schemas/${encodeURIComponent(type)}` + (version === undefined ? '' : `/versions/${version}`);
    return this.#request('GET', path);
  }

  /** How a new version of the type's schema must relate to the latest (GET /v1/schemas/:type/config). */
  getCompatibility(type: string): Promise<{ type: string; compatibility: string }> {
    return this.#request('GET', `/v1/schemas/${encodeURIComponent(type)}/config`);
  }

  setCompatibility(type: string, compatibility: 'backward' | 'none'): Promise<{ type: string; compatibility: string }> {
    return this.#request('PUT', `/v1/schemas/${encodeURIComponent(type)}/config`, JSON.stringify({ compatibility }), 'application/json');
  }

  streams(): Promise<StreamStats> {
    return this.#request('GET', '/v1/streams');
  }

  clusterStatus(): Promise<ClusterStatus> {
    return this.#request('GET', '/v1/cluster');
  }

  readEvents(query: EventsQuery = {}): Promise<EventsPage> {
    return this.#request('GET', `/v1/events${qs(query as Record<string, unknown>)}`);
  }

  deadLetters(query: DeadLetterQuery = {}): Promise<DeadLettersPage> {
    return this.#request('GET', `/v1/deadletters${qs(query as Record<string, unknown>)}`);
  }

  replayDeadLetters(filter: Omit<DeadLetterQuery, 'limit' | 'from'> = {}): Promise<ReplayResponse> {
    return this.#request('POST', `/v1/deadletters/replay${qs(filter as Record<string, unknown>)}`);
  }

  /** Creates a view from `CREATE VIEW … AS SELECT …` (or a SELECT, named by `name`). */
  createView(name: string, sql: string, replace = false): Promise<ViewInfo> {
    return this.#request('PUT', `/v1/views/${encodeURIComponent(name)}${replace ? '?replace=true' : ''}`, JSON.stringify({ sql }), 'application/json');
  }

  async listViews(): Promise<ViewInfo[]> {
    return (await this.#request<{ views: ViewInfo[] }>('GET', '/v1/views')).views;
  }

  async dropView(name: string): Promise<void> {
    await this.#request('DELETE', `/v1/views/${encodeURIComponent(name)}`);
  }

  async viewRows(name: string, q: ViewRowsQuery = {}): Promise<Record<string, unknown>[]> {
    const { keys, ...rest } = q;
    const params = qs({ ...keys, ...rest } as Record<string, unknown>);
    return (await this.#request<{ rows: Record<string, unknown>[] }>('GET', `/v1/views/${encodeURIComponent(name)}${params}`)).rows;
  }

  /** Runs SELECT over views (POST /v1/query); `time: 'iso'` gives time columns as ISO-8601 strings. */
  query(sql: string, options: { time?: TimeFormat } = {}): Promise<QueryResponse> {
    return this.#request('POST', `/v1/query${qs(options)}`, JSON.stringify({ sql }), 'application/json');
  }

  /** SQL over all history: the archive's Parquet files and the log's events not archived yet (POST /v1/sql). */
  sql(sql: string): Promise<SqlResponse> {
    return this.#request('POST', '/v1/sql', JSON.stringify({ sql }), 'application/json');
  }

  /** Creates an API key (admin); the secret is in the answer only. */
  createKey(spec: NewApiKey): Promise<CreatedApiKey> {
    return this.#request('POST', '/v1/keys', JSON.stringify(spec), 'application/json');
  }

  async listKeys(): Promise<ApiKeyInfo[]> {
    return (await this.#request<{ keys: ApiKeyInfo[] }>('GET', '/v1/keys')).keys;
  }

  async revokeKey(id: string): Promise<void> {
    await this.#request('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
  }

  async health(): Promise<boolean> {
    try {
      await this.#request('GET', '/healthz');
      return true;
    } catch {
      return false;
    }
  }

  async #request<T>(method: string, path: string, body?: string, contentType?: string): Promise<T> {
    const headers: Record<string, string> = {};
    if (contentType !== undefined) headers['content-type'] = contentType;
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    let res: Response;
    try {
      res = await fetch(this.#url + path, { method, headers, body, signal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      throw new HalflifeApiError(0, 'NETWORK', `cannot reach ${this.#url}: ${cause?.code ?? (err as Error).message}`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const retryAfter = Number(res.headers.get('retry-after') ?? Number.NaN);
      const e = (parsed as ErrorBody | undefined)?.error;
      throw new HalflifeApiError(
        res.status,
        e?.code ?? `HTTP_${res.status}`,
        e?.message ?? (text.slice(0, 200) || res.statusText),
        e?.details ?? {},
        Number.isFinite(retryAfter) ? retryAfter : undefined,
      );
    }
    return parsed as T;
  }
}

function qs(params: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}
