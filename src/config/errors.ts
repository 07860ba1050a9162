import { defineErrors } from '../core/index.js';

export const ConfigErrors = defineErrors({
  CONFIG_INVALID: {
    status: 500,
    message: 'configuration is invalid:\n{problems}',
    domain: 'user',
    retryable: false,
  },
  CONFIG_NOT_FOUND: {
    status: 500,
    message: 'config file {path} does not exist',
    domain: 'user',
    retryable: false,
  },
});
