export type { Log, AppendRecord, AppendAck, LogRecord, LogStats, PartitionStats, ReadOptions, RecordValue, RecordEncoder, RecordBatch } from './log.js';
export { valueByteLength, valueBytes, recordsToBatch, batchKey } from './log.js';
export { SegmentLog } from './segment-log.js';
export type { SegmentLogOptions, FsyncPolicy, LogObserver } from './segment-log.js';
export { MemoryLog } from './memory-log.js';
export { Partitioner } from './partitioner.js';
export { LogErrors } from './errors.js';
export { repairLog } from './repair.js';
export type { RepairAction, RepairOptions } from './repair.js';
