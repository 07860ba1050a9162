export { WebhookSender, redactUrl } from './webhook.js';
export type { WebhookOptions, DeliveryResult } from './webhook.js';
export { Archive } from './archive.js';
export type { ArchiveOptions } from './archive.js';
export { dataColumns, kindOf, METADATA_COLUMNS, EXTRA_COLUMN, EXTRA, HOUR_MS, appendEventRow, bufferTableSql, fileSelect, ident } from './archive-columns.js';
export { ARCHIVE_FILE_RE } from './archive.js';
export type { ArchiveColumn, ColumnKind } from './archive-columns.js';
export { ArchiveHost } from './archive-host.js';
export type { ArchiveHostOptions, ArchiveStatus } from './archive-host.js';
