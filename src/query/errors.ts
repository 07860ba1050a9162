import { defineErrors } from '../core/index.js';

export const QueryErrors = defineErrors({
  SQL_TIMEOUT: {
    status: 400,
    message: 'the query ran for {timeoutMs} ms, its time limit (engine.queryTimeoutMs), and was stopped; narrow it with WHERE (window_start, keys) or LIMIT, or raise the limit',
    domain: 'user',
    retryable: false,
  },
});
