#!/usr/bin/env node
import { main } from '../dist/src/cli.js';

process.exitCode = await main(process.argv);
// Everything pgferry opened is closed by now; this only ends a process that something forgot to
// release, after giving piped stdout time to drain.
setTimeout(() => process.exit(), 2_000).unref();
