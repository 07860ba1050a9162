import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError } from '../core/index.js';
import './errors.js';

/**
 * An exclusive lock on the data folder (a LOCK file holding the owner's pid), so two servers never write the
 * same log. A lock left by a process that no longer exists (kill -9) is taken over.
 */
export class DataDirLock {
  readonly #path: string;
  readonly #dir: string;
  #held = false;

  constructor(dir: string) {
    this.#dir = dir;
    this.#path = join(dir, 'LOCK');
  }

  async acquire(): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(this.#path, 'wx');
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        this.#held = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const pid = Number((await readFile(this.#path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new HalflifeError('DATA_DIR_LOCKED', { dir: this.#dir, pid });
      }
      await rm(this.#path, { force: true });
    }
    throw new HalflifeError('DATA_DIR_LOCKED', { dir: this.#dir, pid: 'unknown' });
  }

  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    await rm(this.#path, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
