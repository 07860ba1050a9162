/**
 * The wire envelope and its checks. Everything here returns results rather than throwing: a bad event is an
 * expected outcome.
 */

/** An event as accepted by POST /v1/events. */
export interface Envelope {
  type: string;
  data: Record<string, unknown>;
  id?: string;
  key?: string;
  /** Event time: epoch ms or an ISO-8601 string. */
  ts?: number | string;
}

export interface Rejection {
  code: string;
  message: string;
  path: string;
}

const TYPE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const ENVELOPE_KEYS = new Set(['type', 'data', 'id', 'key', 'ts']);
const MAX_ID_CHARS = 256;
const MAX_KEY_CHARS = 256;

export type EnvelopeCheck =
  | { ok: true; envelope: Envelope; eventTimeMs: number | undefined }
  | { ok: false; rejection: Rejection };

const invalid = (reason: string, path: string): EnvelopeCheck => ({
  ok: false,
  rejection: { code: 'INVALID_EVENT', message: `the event envelope is invalid: ${reason}`, path },
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks the envelope's shape; `data` itself is checked by the schema. */
export function checkEnvelope(item: unknown): EnvelopeCheck {
  if (!isPlainObject(item)) return invalid('each event must be a JSON object', '$');
  for (const k in item) {
    if (!ENVELOPE_KEYS.has(k)) return invalid(`unknown field "${k}" (allowed: type, data, id, key, ts)`, `$.${k}`);
  }
  const { type, data, id, key, ts } = item;
  if (typeof type !== 'string' || !TYPE_RE.test(type)) {
    return invalid('"type" must be a string of 1-128 letters, digits, "_", "." or "-", starting with a letter', '$.type');
  }
  if (!isPlainObject(data)) return invalid('"data" must be a JSON object', '$.data');
  if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS)) {
    return invalid(`"id" must be a non-empty string of at most ${MAX_ID_CHARS} characters`, '$.id');
  }
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS)) {
    return invalid(`"key" must be a non-empty string of at most ${MAX_KEY_CHARS} characters`, '$.key');
  }
  let eventTimeMs: number | undefined;
  if (ts !== undefined) {
    eventTimeMs = typeof ts === 'number' ? ts : typeof ts === 'string' ? Date.parse(ts) : Number.NaN;
    if (!Number.isFinite(eventTimeMs) || eventTimeMs < 0) {
      return invalid('"ts" must be epoch milliseconds or an ISO-8601 time', '$.ts');
    }
  }
  return { ok: true, envelope: item as unknown as Envelope, eventTimeMs };
}
