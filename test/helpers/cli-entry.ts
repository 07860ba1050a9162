// Runs the CLI from source (tests spawn this instead of the built bin).
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`halflife: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
