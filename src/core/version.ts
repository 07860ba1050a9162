import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** halflife's version, from its package.json (run from source or built). */
export function packageVersion(): string {
  if (cached !== undefined) return cached;
  // From src/core (tsx) or dist/src/core (built): the nearest package.json up the tree named halflife is ours.
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'halflife') return (cached = pkg.version);
    } catch {
      // try the next level
    }
  }
  return (cached = 'unknown');
}
