// `pgferry cutover --state FILE`: the cutover of a run whose daemon is stopped, from its state file;
// with --abort, the undo of an interrupted one.
import type { Logger } from 'pino';
import { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { DriftWatch } from '../drift/drift.js';
import { Replayer } from '../replay/replay.js';
import { checkResumedTarget, readServers } from '../run/binding.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import { type CutoverResult, type CutoverSettings, cutover } from './cutover.js';
import type { FreezeRecord } from './freeze.js';
import { interruptedCutover } from './freeze-record.js';
import { abortCutover } from './give-back.js';

export interface StandaloneCutoverOptions {
  source: ConnInfo;
  target: ConnInfo;
  statePath: string;
  jobs: number;
  log: Logger;
  signal: AbortSignal;
  settings: CutoverSettings;
  /** How long a lost connection is waited out once writes are frozen (--retry-for). */
  retryForMs?: number;
}

/**
 * Opens the run's state under its lock (so nothing runs beside a live daemon) and checks that the
 * servers are the run's own, identified by what they are, with the target carrying its mark.
 */
export async function openRun<T>(
  opts: Pick<StandaloneCutoverOptions, 'source' | 'target' | 'statePath'>,
  fn: (store: CheckpointStore) => Promise<T>,
): Promise<T> {
  const store = CheckpointStore.open(opts.statePath, { create: false });
  try {
    store.acquireLock();
    const setup = store.setup();
    if (!setup) {
      throw new PgferryError('PGFERRY_STATE_INVALID', `${opts.statePath} holds no run`, { side: 'state' });
    }
    const src = await connect(opts.source, 'control');
    try {
      const dst = await connect(opts.target, 'control');
      try {
        const servers = await readServers(src, dst, opts.source, opts.target);
        await checkResumedTarget(store, { ...setup, ...servers }, dst, opts.target);
      } finally {
        await dst.end().catch(() => {});
      }
    } finally {
      await src.end().catch(() => {});
    }
    return await fn(store);
  } finally {
    store.close();
  }
}

/** `pgferry cutover --state FILE`: the cutover of a run whose daemon is stopped, or the end of an interrupted one. */
export async function runCutover(opts: StandaloneCutoverOptions): Promise<CutoverResult> {
  return openRun(opts, async (store) => {
    const setup = store.setup()!;
    if (store.phaseDone('done')) {
      throw new PgferryError('PGFERRY_CUTOVER_REFUSED', 'this run was already cut over', { side: 'state' });
    }
    if (
      !interruptedCutover(store) &&
      (setup.mode !== 'replicate' || !store.phaseDone('indexes') || !store.getMeta('unique_built'))
    ) {
      throw new PgferryError(
        'PGFERRY_CUTOVER_REFUSED',
        `this run is not replicating yet (phase ${store.phase() ?? 'none'}): the copy and index build must be done first`,
        { side: 'state' },
      );
    }
    const replayer = new Replayer({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      jobs: opts.jobs,
      signal: opts.signal,
      // Checks only: a drift refuses the cutover before it freezes anything.
      drift: new DriftWatch({
        source: opts.source,
        target: opts.target,
        store,
        log: opts.log,
        mode: 'pause',
      }),
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
        retryForMs: opts.retryForMs,
        ...opts.settings,
      });
    } finally {
      await replayer.close();
    }
  });
}

/** `pgferry cutover --abort`: gives the source its writes back as recorded; null when nothing was frozen. */
export async function runCutoverAbort(
  opts: Pick<StandaloneCutoverOptions, 'source' | 'target' | 'statePath' | 'log'>,
): Promise<{ freeze: FreezeRecord } | null> {
  return openRun(opts, (store) => abortCutover(store, opts.source, opts.target, opts.log));
}
