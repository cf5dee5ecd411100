// `pgferry rollback --state FILE`: the rollback of a run whose daemon is stopped, from its state
// file, with a reverse Replayer of its own (a running daemon takes POST /rollback instead).
import type { Logger } from 'pino';
import { openRun } from '../cutover/standalone.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { reverseReplayer } from './phase.js';
import { type RollbackResult, type RollbackSettings, rollback } from './rollback.js';

export interface StandaloneRollbackOptions {
  source: ConnInfo;
  target: ConnInfo;
  statePath: string;
  jobs: number;
  log: Logger;
  signal: AbortSignal;
  settings: RollbackSettings;
}

export function runRollback(opts: StandaloneRollbackOptions): Promise<RollbackResult> {
  return openRun(opts, async (store) => {
    const setup = store.setup()!;
    const replayer = reverseReplayer(store, opts);
    try {
      return await rollback({
        ...opts.settings,
        source: opts.source,
        target: opts.target,
        store,
        log: opts.log,
        signal: opts.signal,
        jobs: opts.jobs,
        filter: { include: setup.include, exclude: setup.exclude },
        replayer,
      });
    } finally {
      await replayer.close();
    }
  });
}
