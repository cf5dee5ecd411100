// `pgferry cutover --state FILE`: the cutover of a run whose daemon is stopped, from its state file.
import type { Logger } from 'pino';
import { CheckpointStore } from '../checkpoints/store.js';
import type { ConnInfo } from './conn-info.js';
import { type CutoverResult, type CutoverSettings, cutover } from './cutover.js';
import { PgferryError } from './errors.js';
import { Replayer } from './replay.js';

export interface StandaloneCutoverOptions {
  source: ConnInfo;
  target: ConnInfo;
  statePath: string;
  jobs: number;
  log: Logger;
  signal: AbortSignal;
  settings: CutoverSettings;
}

/**
 * `pgferry cutover --state FILE`: the cutover of a run whose daemon is stopped. It takes the
 * state's lock like `migrate`, so it refuses to run beside a live daemon.
 */
export async function runCutover(opts: StandaloneCutoverOptions): Promise<CutoverResult> {
  const store = CheckpointStore.open(opts.statePath, { create: false });
  try {
    store.acquireLock();
    const setup = store.setup();
    if (!setup)
      throw new PgferryError('PGFERRY_STATE_INVALID', `${opts.statePath} holds no run`, { side: 'state' });
    store.bindSetup({ ...setup, source: opts.source.identity(), target: opts.target.identity() });
    if (setup.mode !== 'replicate' || !store.phaseDone('indexes') || !store.getMeta('unique_built')) {
      throw new PgferryError(
        'PGFERRY_CUTOVER_REFUSED',
        `this run is not replicating yet (phase ${store.phase() ?? 'none'}): the copy and index build must be done first`,
        { side: 'state' },
      );
    }
    if (store.phaseDone('done')) {
      throw new PgferryError('PGFERRY_CUTOVER_REFUSED', 'this run was already cut over', { side: 'state' });
    }
    const replayer = new Replayer({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      jobs: opts.jobs,
      signal: opts.signal,
    });
    try {
      return await cutover({
        source: opts.source,
        target: opts.target,
        store,
        log: opts.log,
        signal: opts.signal,
        jobs: opts.jobs,
        filter: { include: setup.include, exclude: setup.exclude },
        replayer,
        ...opts.settings,
      });
    } finally {
      await replayer.close();
    }
  } finally {
    store.close();
  }
}
