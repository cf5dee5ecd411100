import { runCutover, runCutoverAbort } from '../../engine/cutover/standalone.js';
import {
  type CutoverFlags,
  loadCutoverSettings,
  parseJobs,
  retryFor,
  sourceConn,
  statePath,
  targetConn,
} from '../config.js';
import { createLogger } from '../logger.js';
import { cutoverAbortReport, cutoverReport } from '../run-report.js';
import { onStopSignal } from '../signals.js';
import { cutoverLine } from './migrate.js';

interface Flags extends CutoverFlags {
  source?: string;
  target?: string;
  state?: string;
  jobs?: string;
  abort?: boolean;
  retryFor?: string;
  json?: boolean;
}

const printJson = (doc: unknown) => process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);

export async function cutoverCommand(flags: Flags): Promise<void> {
  const settings = loadCutoverSettings(flags);
  const source = sourceConn(flags.source);
  const target = targetConn(flags.target);
  const log = createLogger();
  const state = statePath(flags.state);
  if (flags.abort) {
    const undone = await runCutoverAbort({ source, target, statePath: state, log });
    if (flags.json) {
      printJson(cutoverAbortReport(state, undone));
      return;
    }
    process.stdout.write(
      undone
        ? `cutover aborted: writes given back to ${source.label()} (the freeze was ${undone.freeze.method}, since ${undone.freeze.startedAt}); the run is replicating again\n`
        : 'nothing to abort: no cutover of this run has frozen the source\n',
    );
    return;
  }
  const stop = new AbortController();
  // The cutover is short and must finish or roll back: a signal asks it to stop at the next step.
  const onSignal = () => stop.abort();
  const releaseSignals = onStopSignal(onSignal);
  try {
    const result = await runCutover({
      source,
      target,
      statePath: state,
      jobs: parseJobs(flags.jobs ?? process.env.PGFERRY_JOBS ?? '4'),
      log,
      signal: stop.signal,
      settings,
      retryForMs: retryFor(flags.retryFor),
    });
    if (flags.json) printJson(cutoverReport(state, result));
    else process.stdout.write(cutoverLine(result));
  } finally {
    releaseSignals();
  }
}
