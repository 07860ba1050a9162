// Type tests: what the server produces must be assignable to the SDK's wire types, so the two cannot drift
// apart silently (the SDK imports nothing of ours, by design). `npm test` type-checks this file first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as Wire from '../sdk/index.js';
import type { EventRecord, Offset, PartitionId } from '../src/core/index.js';
import type { IngestResult, ReplayResult, StoredDeadLetter } from '../src/ingest/index.js';
import type { LogStats } from '../src/log/index.js';
import type { RegisterResult, SchemaVersion, TypeSummary } from '../src/schema/index.js';

type Assignable<From, To> = [From] extends [To] ? true : false;
const checks: [
  Assignable<IngestResult, Wire.IngestResponse>,
  Assignable<StoredDeadLetter, Wire.DeadLetter>,
  Assignable<ReplayResult, Wire.ReplayResponse>,
  Assignable<LogStats, Wire.StreamStats>,
  Assignable<RegisterResult, Wire.RegisterResponse>,
  Assignable<SchemaVersion, Wire.SchemaVersion>,
  Assignable<TypeSummary, Wire.SchemaSummary>,
  Assignable<EventRecord & { partition: PartitionId; offset: Offset }, Wire.StoredEvent>,
] = [true, true, true, true, true, true, true, true];

test('server result types are assignable to the SDK wire types', () => {
  assert.ok(checks.every(Boolean));
});
