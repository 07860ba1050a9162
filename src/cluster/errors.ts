import { defineErrors } from '../core/index.js';

export const ClusterErrors = defineErrors({
  LEASE_HELD: {
    status: 409,
    message: 'partition {partition} is leased to {owner}; it can be taken once that lease expires or is released',
    domain: 'internal',
    retryable: true,
  },
  LEASE_LOST: {
    status: 409,
    message: 'the lease on partition {partition} was lost ({reason}): this process no longer owns it',
    domain: 'internal',
    retryable: false,
  },
  FENCED_WRITE: {
    status: 409,
    message: 'a write to {key} with fencing token {token} was refused: a newer owner (token {current}) wrote it',
    domain: 'internal',
    retryable: false,
  },
});
