import { open, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface AtomicWriteOptions {
  /** Permission bits of a new file (the process umask applies too). */
  readonly mode?: number;
  /** Flush the file and its folder (default true); false for fsync: never. */
  readonly durable?: boolean;
  /** Suffix of the temporary file beside `path` (default `.tmp`). */
  readonly tmpSuffix?: string;
}

/**
 * Writes `data` to `path` so that a crash leaves the old content or the new, never a mix: a temporary file in the
 * same folder, flushed, renamed over `path`, then the folder flushed so the rename survives a crash as well. The
 * one implementation every room uses (schemas, tables, views, keys, alerts, consumer offsets, repair).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const durable = options.durable ?? true;
  const tmp = `${path}${options.tmpSuffix ?? '.tmp'}`;
  await writeFile(tmp, data, { flush: durable, ...(options.mode === undefined ? {} : { mode: options.mode }) });
  await rename(tmp, path);
  if (durable) await syncDir(dirname(path));
}

/**
 * Makes a complete file written by someone else (DuckDB's COPY) visible under `path`, durably: the file flushed,
 * renamed from `tmp`, the folder flushed. A crash before the rename leaves only `tmp` (the caller removes it).
 */
export async function publishFile(tmp: string, path: string): Promise<void> {
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/** Flushes a folder's entries (a created, renamed or removed file) to disk. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
