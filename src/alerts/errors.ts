import { defineErrors } from '../core/index.js';

export const AlertErrors = defineErrors({
  ALERT_INVALID: {
    status: 400,
    message: 'alert rule {name} is invalid: {reason}',
    domain: 'user',
    retryable: false,
  },
  ALERT_NOT_FOUND: {
    status: 404,
    message: 'no alert rule is named {name}',
    domain: 'user',
    retryable: false,
  },
});
