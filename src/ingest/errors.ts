import { defineErrors } from '../core/index.js';

/** Codes for events and request bodies. Per-event codes also appear in `errors[]` and dead letters. */
export const IngestErrors = defineErrors({
  MALFORMED_JSON: {
    status: 400,
    message: 'the body is not valid JSON: {reason}',
    domain: 'user',
    retryable: false,
  },
  BODY_TOO_LARGE: {
    status: 413,
    message: 'the request body is larger than the limit of {limit} bytes (ingest.maxBodyBytes)',
    domain: 'user',
    retryable: false,
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'content type {contentType} is not accepted; send application/json or application/x-ndjson',
    domain: 'user',
    retryable: false,
  },
  TOO_MANY_EVENTS: {
    status: 413,
    message: 'the request holds {count} events, over the limit of {max} per request (ingest.maxEventsPerRequest); send them in smaller requests',
    domain: 'user',
    retryable: false,
  },
  EVENT_TOO_LARGE: {
    status: 413,
    message: 'the event is {bytes} bytes, over the limit of {limit} (ingest.maxEventBytes)',
    domain: 'user',
    retryable: false,
  },
  TOO_DEEP: {
    status: 400,
    message: 'the event nests deeper than {limit} levels (ingest.maxDepth)',
    domain: 'user',
    retryable: false,
  },
  INVALID_EVENT: {
    status: 400,
    message: 'the event envelope is invalid: {reason}',
    domain: 'user',
    retryable: false,
  },
  UNKNOWN_TYPE: {
    status: 400,
    message: 'no schema is registered for event type {type}',
    domain: 'user',
    retryable: false,
  },
  EVENT_TIME_OUT_OF_RANGE: {
    status: 400,
    message: 'the event time is outside the window the server accepts: {reason}',
    domain: 'user',
    retryable: false,
  },
  SCHEMA_VALIDATION: {
    status: 400,
    message: 'the event does not match its schema: {reason}',
    domain: 'user',
    retryable: false,
  },
  SCHEMA_TOO_COSTLY: {
    status: 400,
    message: 'the event could not be checked against its schema: {reason}',
    domain: 'user',
    retryable: false,
  },
  DUPLICATE: {
    status: 200,
    message: 'an event with id {id} was already accepted within the dedup window',
    domain: 'user',
    retryable: false,
  },
  INGEST_WORKER_FAILED: {
    status: 503,
    message: 'an ingest worker thread stopped while checking this request ({reason}); nothing of it was stored, retry it',
    domain: 'internal',
    retryable: true,
  },
  INGEST_TIMEOUT: {
    status: 503,
    message: 'checking this request on the server thread took longer than ingest.workerTimeoutMs ({budgetMs} ms); nothing of it was stored, retry it (or split it)',
    domain: 'internal',
    retryable: true,
  },
  OVERLOADED: {
    status: 429,
    message: 'the server is overloaded ({reason}) and sheds {priority}-priority events; retry after the Retry-After delay',
    domain: 'external',
    retryable: true,
  },
  RATE_LIMITED: {
    status: 429,
    message: 'this API key is over its rate limit of {rate} events/s (burst {burst}); the request of {events} events was not stored; retry in {retryAfterS} s',
    domain: 'user',
    retryable: true,
  },
});
