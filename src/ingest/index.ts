export { Ingestor } from './ingestor.js';
export type { IngestorOptions, IngestResult, IngestSource, EventError, ReplayResult, BodyFormat } from './ingestor.js';
export { DeadLetterStore } from './dead-letters.js';
export type { DeadLetter, StoredDeadLetter, DeadLetterFilter } from './dead-letters.js';
export { DedupWindow } from './dedup.js';
export type { Envelope } from './envelope.js';
export { IngestErrors } from './errors.js';
