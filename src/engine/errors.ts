import { defineErrors } from '../core/index.js';

export const EngineErrors = defineErrors({
  ENGINE_UNAVAILABLE: {
    status: 503,
    message: 'the view engine is unavailable ({reason}); retry shortly',
    domain: 'internal',
    retryable: true,
  },
  VIEW_NOT_FOUND: {
    status: 404,
    message: 'no view named {name}',
    domain: 'user',
    retryable: false,
  },
  VIEW_EXISTS: {
    status: 409,
    message: 'a view named {name} already exists; drop it first or use CREATE OR REPLACE VIEW',
    domain: 'user',
    retryable: false,
  },
  INVALID_VIEW_NAME: {
    status: 400,
    message: 'view name {name} is not valid: use 1-128 letters, digits or "_", starting with a letter',
    domain: 'user',
    retryable: false,
  },
  TABLE_NOT_FOUND: {
    status: 404,
    message: 'no table named {name}',
    domain: 'user',
    retryable: false,
  },
  INVALID_TABLE: {
    status: 400,
    message: 'the table {name} cannot be loaded: {reason}',
    domain: 'user',
    retryable: false,
  },
  CHECKPOINT_CORRUPT: {
    status: 500,
    message: 'the checkpoint of view {name} cannot be read ({reason}); the view is rebuilt from the log',
    domain: 'internal',
    retryable: false,
  },
});
