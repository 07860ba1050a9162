import { defineErrors } from '../core/index.js';

export const LogErrors = defineErrors({
  PARTITION_NOT_FOUND: {
    status: 400,
    message: 'partition {partition} does not exist (the log has {partitions} partitions: 0..{last})',
    domain: 'user',
    retryable: false,
  },
  LOG_PARTITIONS_MISMATCH: {
    status: 500,
    message:
      'the log in {where} was created with {existing} partitions but the config asks for {configured}; ' +
      'set log.partitions to {existing} (changing it would move keys between partitions)',
    domain: 'user',
    retryable: false,
  },
  KEY_TOO_LONG: {
    status: 400,
    message: 'a partition key may be at most {max} bytes (got {bytes})',
    domain: 'user',
    retryable: false,
  },
  LOG_WRITE_FAILED: {
    status: 503,
    message: 'the log could not write to disk: {reason}',
    domain: 'external',
    retryable: true,
  },
  SEGMENT_CORRUPT: {
    status: 500,
    message:
      'partition {partition}: segment {segment} is damaged at byte {position} ({reason}); nothing was cut. ' +
      'Stop halflife and run "halflife repair" on its data folder (--dry-run first) to set the damaged bytes aside',
    domain: 'internal',
    retryable: false,
  },
  LOG_POSITION_PAST_END: {
    status: 500,
    message:
      'the saved position of {consumer} in partition {partition} is {position}, past the end of the log ({end}): ' +
      'records it had seen are no longer in the log',
    domain: 'internal',
    retryable: false,
  },
  NATS_UNAVAILABLE: {
    status: 503,
    message: 'cannot use NATS JetStream at {servers}: {reason}',
    domain: 'external',
    retryable: true,
  },
  NATS_SETUP_FAILED: {
    status: 500,
    message: 'cannot create or open {what} on NATS JetStream: {reason}',
    domain: 'external',
    retryable: false,
  },
  INVALID_CONSUMER_NAME: {
    status: 400,
    message: 'consumer name {name} is not valid: use 1-200 letters, digits, ".", "_" or "-"',
    domain: 'user',
    retryable: false,
  },
});
