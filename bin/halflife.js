#!/usr/bin/env node
// The compiled CLI (built by `npm install` through the `prepare` script).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`halflife: ${err?.stack ?? err}\n`); process.exitCode = 1; },
);
