import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { loadConfig } from '../../config/index.js';
import { HalflifeError } from '../../core/index.js';
import { DataDirLock, repairLog, type RepairAction } from '../../server/index.js';
import type { Io } from '../output.js';

export interface RepairFlags {
  config?: string | undefined;
  data?: string | undefined;
  dryRun?: boolean | undefined;
}

const PARTITION_RE = /^p-\d{4}$/;

/**
 * `halflife repair`: with the server stopped (it takes the data folder's lock, as `serve` does), scans every segment
 * of every log in the data folder and sets damaged ranges aside into `<data>/quarantine/` (see `repairLog`), so a
 * server that refused to start with SEGMENT_CORRUPT starts again, with the damaged batches' offsets left as a gap.
 * Says what it did (or, with --dry-run, what it would do). Exit 0: the folder is consistent (or would be); 1: damage
 * remains that repair does not handle; 2: the folder is in use or unusable.
 */
export async function repair(flags: RepairFlags, io: Io): Promise<number> {
  const dataDir = loadConfig({ file: flags.config, flags: { dataDir: flags.data } }).config.dataDir;
  const dryRun = flags.dryRun === true;
  try {
    await stat(dataDir);
  } catch {
    io.err(`halflife: data folder ${dataDir} does not exist\n`);
    return 2;
  }
  const lock = new DataDirLock(dataDir);
  try {
    await lock.acquire();
  } catch (err) {
    if (err instanceof HalflifeError) {
      io.err(`halflife: ${err.code}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  try {
    const quarantineDir = join(dataDir, 'quarantine');
    const actions: RepairAction[] = [];
    for (const logDir of await findLogs(dataDir, quarantineDir)) {
      const label = relative(dataDir, logDir).split(sep).join('-') || 'log';
      actions.push(...(await repairLog({ dir: logDir, quarantineDir, label, dryRun })));
    }
    const verb = dryRun ? 'would set aside' : 'set aside';
    for (const a of actions) {
      const where = `partition ${a.partition}, ${relative(dataDir, a.segment)} byte ${a.position}`;
      if (a.kind === 'unsupported') {
        io.out(`cannot repair ${where}: ${a.reason}; nothing changed in this segment (restore it from a backup)\n`);
        continue;
      }
      const lost = a.lost.to > a.lost.from ? `offsets ${a.lost.from}..${a.lost.to - 1} (${a.lost.to - a.lost.from}) are lost and stay a gap` : 'no record lost';
      io.out(`${where}: ${a.reason}: ${verb} ${a.bytes} bytes into ${relative(dataDir, a.quarantineFile)}; ${lost}\n`);
    }
    const unsupported = actions.some((a) => a.kind === 'unsupported');
    const fixable = actions.filter((a) => a.kind !== 'unsupported').length;
    if (fixable === 0) io.out(unsupported ? 'no other damage found\n' : `no damage found in ${dataDir}\n`);
    else if (dryRun) io.out(`dry run: nothing changed; run without --dry-run to set ${fixable} range(s) aside\n`);
    else io.out(`repaired ${fixable} range(s); the reports are next to the set-aside bytes in ${quarantineDir}\n`);
    return unsupported ? 1 : 0;
  } finally {
    await lock.release();
  }
}

/** Folders holding a segment log (partition folders `p-NNNN`), anywhere below the data folder but the quarantine. */
async function findLogs(dir: string, skip: string, depth = 0): Promise<string[]> {
  if (depth > 4 || dir === skip) return [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const subdirs = entries.filter((e) => e.isDirectory());
  if (subdirs.some((e) => PARTITION_RE.test(e.name))) return [dir];
  const out: string[] = [];
  for (const e of subdirs.sort((a, b) => a.name.localeCompare(b.name))) out.push(...(await findLogs(join(dir, e.name), skip, depth + 1)));
  return out;
}
