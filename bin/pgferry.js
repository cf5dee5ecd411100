#!/usr/bin/env node
import { holdStopSignals } from '../dist/src/signals.js';

// From the first line: a SIGTERM while the CLI loads is held for the command (src/signals.ts).
holdStopSignals();
const { main } = await import('../dist/src/cli.js');

// `pgferry status | head`: a reader that has gone away ends the output, not with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

process.exitCode = await main(process.argv);
// Everything pgferry opened is closed by now; this only ends a process that something forgot to
// release, after giving piped stdout time to drain.
setTimeout(() => process.exit(), 2_000).unref();
