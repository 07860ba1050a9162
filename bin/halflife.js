#!/usr/bin/env node
// The compiled CLI (built by `npm install` through the `prepare` script).
import { main } from '../dist/src/cli/main.js';

// `halflife tail | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`halflife: ${err?.stack ?? err}\n`); process.exitCode = 1; },
);
