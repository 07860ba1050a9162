import { defineErrors } from '../core/index.js';

export const SchemaErrors = defineErrors({
  SCHEMA_INVALID: {
    status: 400,
    message: 'the schema for {type} is not a valid JSON Schema (draft 2020-12): {reason}',
    domain: 'user',
    retryable: false,
  },
  SCHEMA_INCOMPATIBLE: {
    status: 409,
    message:
      'the new schema for {type} would reject events that version {version} accepted ({count} reason(s)); ' +
      'fix it, or set the type\'s compatibility to "none"',
    domain: 'user',
    retryable: false,
  },
  SCHEMA_NOT_FOUND: {
    status: 404,
    message: 'no schema is registered for type {type}',
    domain: 'user',
    retryable: false,
  },
  SCHEMA_VERSION_NOT_FOUND: {
    status: 404,
    message: 'type {type} has no version {version} (latest is {latest})',
    domain: 'user',
    retryable: false,
  },
  INVALID_TYPE_NAME: {
    status: 400,
    message: 'event type name {type} is not valid: use 1-128 letters, digits, "_", "." or "-", starting with a letter',
    domain: 'user',
    retryable: false,
  },
  INVALID_COMPATIBILITY: {
    status: 400,
    message: 'compatibility must be "backward" or "none" (got {value})',
    domain: 'user',
    retryable: false,
  },
});
