import { defineErrors } from '../core/index.js';

export const SqlErrors = defineErrors({
  SQL_SYNTAX: {
    status: 400,
    message: 'SQL syntax error at line {line}, column {column}: {reason}',
    domain: 'user',
    retryable: false,
  },
  SQL_TOO_LARGE: {
    status: 400,
    message: 'the SQL text is {length} characters long; at most {max} are accepted',
    domain: 'user',
    retryable: false,
  },
  SQL_TOO_DEEP: {
    status: 400,
    message: 'SQL too deeply nested at line {line}, column {column}: expressions may nest at most {max} levels (parentheses, operators, NOT, CASE, function arguments)',
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
