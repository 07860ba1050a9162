import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HalflifeError, type Logger } from '../core/index.js';
import './errors.js';
import '../ingest/index.js';

/** The one error body: `{ error: { code, message, details } }`. */
export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/** Fastify's own errors, mapped to our stable codes. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
  FST_ERR_VALIDATION: 'INVALID_REQUEST',
};

export function toHalflifeError(err: unknown, request: FastifyRequest, maxBodyBytes: number): HalflifeError {
  if (err instanceof HalflifeError) return err;
  const fe = err as FastifyError;
  if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new HalflifeError('MALFORMED_JSON', { reason: fe.message }, { cause: err });
  }
  const mapped = fe.code !== undefined ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped === 'BODY_TOO_LARGE') return new HalflifeError(mapped, { limit: maxBodyBytes }, { cause: err });
  if (mapped === 'UNSUPPORTED_MEDIA_TYPE') {
    return new HalflifeError(mapped, { contentType: JSON.stringify(request.headers['content-type'] ?? '') }, { cause: err });
  }
  if (mapped !== undefined) return new HalflifeError(mapped, { reason: fe.message }, { cause: err });
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new HalflifeError('INVALID_REQUEST', { reason: fe.message }, { cause: err });
  }
  return new HalflifeError('INTERNAL', { reason: 'see the server log' }, { cause: err });
}

export function sendError(reply: FastifyReply, err: HalflifeError, logger: Logger): FastifyReply {
  if (err.domain === 'internal' || err.status >= 500) {
    logger.error({ err: err.cause ?? err, code: err.code }, err.message);
  }
  const body: ErrorBody = { error: { code: err.code, message: err.message, details: err.details ?? {} } };
  if (err.retryable && (err.status >= 500 || err.status === 429)) {
    const asked = err.details?.retryAfterS;
    void reply.header('retry-after', typeof asked === 'number' ? String(asked) : err.code === 'AT_CAPACITY' ? '2' : '1');
  }
  return reply.code(err.status).send(body);
}
