/** An archive file's name: its partition, first and last offset (16 digits each, so names sort by offset). */
export const ARCHIVE_FILE_RE = /^p(\d+)_(\d{16})-(\d{16})\.parquet$/;

export interface ArchiveFile {
  readonly name: string;
  readonly partition: number;
  readonly first: number;
  readonly last: number;
}

export function archiveFileName(partition: number, first: number, last: number): string {
  return `p${partition}_${String(first).padStart(16, '0')}-${String(last).padStart(16, '0')}.parquet`;
}

export function parseArchiveFile(name: string): ArchiveFile | undefined {
  const m = ARCHIVE_FILE_RE.exec(name);
  return m === null ? undefined : { name, partition: Number(m[1]), first: Number(m[2]), last: Number(m[3]) };
}

/**
 * The files of one folder a compacted file supersedes: those whose range lies within another file's range of the
 * same partition. A compaction renames its merged file into place before it removes the files merged, so after a
 * crash (or while a reader lists the folder) both are there: readers and recovery keep the wider one.
 */
export function superseded(files: readonly ArchiveFile[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    for (const g of files) {
      if (f === g || f.partition !== g.partition) continue;
      const within = g.first <= f.first && f.last <= g.last;
      // Two files of the same range cannot both exist (a name is its range); a strict container wins.
      if (within && (g.first < f.first || f.last < g.last)) {
        out.add(f.name);
        break;
      }
    }
  }
  return out;
}
