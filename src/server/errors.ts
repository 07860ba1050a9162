import { defineErrors } from '../core/index.js';

export const ServerErrors = defineErrors({
  ROUTE_NOT_FOUND: {
    status: 404,
    message: 'no route {method} {url}',
    domain: 'user',
    retryable: false,
  },
  SHUTTING_DOWN: {
    status: 503,
    message: 'the server is shutting down; retry against another instance or after restart',
    domain: 'external',
    retryable: true,
  },
  ENGINE_UNAVAILABLE: {
    status: 503,
    message: 'the view engine is unavailable ({reason}); retry shortly',
    domain: 'internal',
    retryable: true,
  },
  DATA_DIR_LOCKED: {
    status: 500,
    message: 'data folder {dir} is in use by another halflife process (pid {pid}); stop it or choose another --data',
    domain: 'user',
    retryable: false,
  },
});
