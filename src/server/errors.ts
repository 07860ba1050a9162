import { defineErrors } from '../core/index.js';

export const ServerErrors = defineErrors({
  ROUTE_NOT_FOUND: {
    status: 404,
    message: 'no route {method} {url}',
    domain: 'user',
    retryable: false,
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: 'the request headers (with the URL) are larger than the server accepts (16 KiB)',
    domain: 'user',
    retryable: false,
  },
  ROLE_NOT_SERVED: {
    status: 421,
    message: 'this process runs as {role} (cluster.role) and does not {what}; send it to a process with the role {wanted} or all',
    domain: 'user',
    retryable: false,
  },
  SHUTTING_DOWN: {
    status: 503,
    message: 'the server is shutting down; retry against another instance or after restart',
    domain: 'external',
    retryable: true,
  },
  DATA_DIR_LOCKED: {
    status: 500,
    message: 'data folder {dir} is in use by another halflife process (pid {pid}); stop it or choose another --data',
    domain: 'user',
    retryable: false,
  },
  DATA_DIR_UNUSABLE: {
    status: 500,
    message: 'cannot use data folder {dir}: {reason}',
    domain: 'user',
    retryable: false,
  },
  PORT_IN_USE: {
    status: 500,
    message: 'port {port} is in use (is another halflife running?)',
    domain: 'user',
    retryable: false,
  },
  LISTEN_FAILED: {
    status: 500,
    message: 'cannot listen on {host}:{port}: {reason}',
    domain: 'user',
    retryable: false,
  },
  UNAUTHENTICATED: {
    status: 401,
    message: 'this request needs an API key: send "Authorization: Bearer <key>" (or HTTP Basic with the key as user name)',
    domain: 'user',
    retryable: false,
  },
  KEYS_FILE_INVALID: {
    status: 500,
    message: 'the API key file {path} cannot be used: {reason}',
    domain: 'internal',
    retryable: false,
  },
  AUTH_REQUIRED: {
    status: 500,
    message: 'refusing to listen on {host} without API keys: create one with "halflife keys create --data DIR --scope admin", or set auth: off to serve without authentication on purpose',
    domain: 'user',
    retryable: false,
  },
  KEY_LAST_ADMIN: {
    status: 409,
    message: 'key {id} is the last admin key; create another admin key first (halflife keys create --scope admin), then revoke this one',
    domain: 'user',
    retryable: false,
  },
  KEY_NOT_FOUND: {
    status: 404,
    message: 'no API key has id {id}',
    domain: 'user',
    retryable: false,
  },
  AT_CAPACITY: {
    status: 503,
    message: 'the server is at capacity ({reason}); the request was refused before it was read; retry after the Retry-After delay',
    domain: 'external',
    retryable: true,
  },
  REQUEST_TIMEOUT: {
    status: 408,
    message: 'the request did not arrive within {timeoutMs} ms (server.requestTimeoutMs); the connection is closed',
    domain: 'user',
    retryable: false,
  },
});
