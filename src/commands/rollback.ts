import { runRollback } from '../../engine/reverse/standalone.js';
import {
  type CutoverFlags,
  loadCutoverSettings,
  parseJobs,
  sourceConn,
  statePath,
  targetConn,
} from '../config.js';
import { createLogger } from '../logger.js';
import { onStopSignal } from '../signals.js';
import { rollbackLine } from './migrate.js';

interface Flags extends CutoverFlags {
  source?: string;
  target?: string;
  state?: string;
  jobs?: string;
  json?: boolean;
}

/** `pgferry rollback`: the cutover in reverse, for a run whose daemon is stopped (a daemon takes POST /rollback). */
export async function rollbackCommand(flags: Flags): Promise<void> {
  const settings = loadCutoverSettings(flags);
  // PGFERRY_FREEZE is the cutover's: a revoke there means readonly here unless --freeze says otherwise.
  if (flags.freeze === undefined && settings.freeze === 'revoke') settings.freeze = 'readonly';
  const source = sourceConn(flags.source);
  const target = targetConn(flags.target);
  const state = statePath(flags.state);
  const stop = new AbortController();
  // Short, and must finish or give the new side its writes back: a signal stops it at the next step.
  const onSignal = () => stop.abort();
  const releaseSignals = onStopSignal(onSignal);
  try {
    const result = await runRollback({
      source,
      target,
      statePath: state,
      jobs: parseJobs(flags.jobs ?? process.env.PGFERRY_JOBS ?? '4'),
      log: createLogger(),
      signal: stop.signal,
      settings,
    });
    if (flags.json)
      process.stdout.write(`${JSON.stringify({ ok: true, state, rollback: result }, null, 2)}\n`);
    else process.stdout.write(rollbackLine(result));
  } finally {
    releaseSignals();
  }
}
