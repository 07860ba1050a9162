import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(prefix = 'halflife-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Collects warn/info/error calls, to assert on what a component logged. */
export class RecordingLogger {
  readonly lines: { level: string; obj: Record<string, unknown>; msg: string | undefined }[] = [];
  info(obj: object, msg?: string): void {
    this.lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg });
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg });
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg });
  }
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: 'debug', obj: obj as Record<string, unknown>, msg });
  }
  child(): RecordingLogger {
    return this;
  }
}
