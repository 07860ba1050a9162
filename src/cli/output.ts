/** Terminal output helpers: aligned tables, a progress line, human numbers. */

export interface Io {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  get isTTY() {
    return process.stderr.isTTY === true;
  },
};

export function table(rows: readonly (readonly unknown[])[], header: readonly string[]): string {
  const all = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

export function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

export function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A single redrawn progress line on a TTY; nothing elsewhere (logs stay clean). */
export class Progress {
  readonly #io: Io;
  #last = 0;
  #shown = false;

  constructor(io: Io) {
    this.#io = io;
  }

  update(fraction: number | undefined, text: string, force = false): void {
    if (!this.#io.isTTY) return;
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const width = 30;
    const bar =
      fraction === undefined
        ? ''
        : `[${'#'.repeat(Math.round(Math.min(1, fraction) * width)).padEnd(width, '.')}] ${(Math.min(1, fraction) * 100).toFixed(0).padStart(3)}% `;
    this.#io.err(`\r\x1b[2K${bar}${text}`);
    this.#shown = true;
  }

  done(): void {
    if (this.#shown) this.#io.err('\n');
    this.#shown = false;
  }
}
