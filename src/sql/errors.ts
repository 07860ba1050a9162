import { defineErrors } from '../core/index.js';

export const SqlErrors = defineErrors({
  SQL_SYNTAX: {
    status: 400,
    message: 'SQL syntax error at line {line}, column {column}: {reason}',
    domain: 'user',
    retryable: false,
  },
  SQL_PLAN: {
    status: 400,
    message: 'SQL error at line {line}, column {column}: {reason}',
    domain: 'user',
    retryable: false,
  },
});
