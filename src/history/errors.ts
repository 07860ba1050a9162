import { defineErrors } from '../core/index.js';

export const HistoryErrors = defineErrors({
  SQL_ERROR: {
    status: 400,
    message: 'the SQL over history failed: {reason}',
    domain: 'user',
    retryable: false,
  },
  SQL_FORBIDDEN: {
    status: 403,
    message: 'not allowed in SQL over history: {reason}',
    domain: 'user',
    retryable: false,
  },
});
