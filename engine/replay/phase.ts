// The replicate phase of `migrate`: replay until the run stops, is synced (--exit-when-synced) or
// is cut over. Unique constraints are built after the first whole catch-up; between batches the
// loop runs the operator's requests (a cutover, a task such as a verify at a drained point) with
// its own Replayer. `--cutover-when-synced` cuts over once the lag is small, and completes an
// interrupted cutover before anything else.

import { delayPoint } from '../../lib/crash-point.js';
import { isPgferryError, PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { type CutoverResult, type CutoverSettings, cutover, DEFAULT_CUTOVER } from '../cutover/cutover.js';
import { interruptedCutover } from '../cutover/freeze-record.js';
import { DriftWatch, isDriftError, maybeDrift } from '../drift/drift.js';
import type { RunContext } from '../run/context.js';
import { buildUniqueConstraints } from '../schema/index-phase.js';
import { TableRequests } from '../tables/requests.js';
import { twoWayPhase } from '../two-way/phase.js';
import { twoWayOf } from '../two-way/state.js';
import { Replayer, type ReplayStats } from './replay.js';

export interface ReplicateOutcome {
  /** The last replay figures. */
  replay: ReplayStats | null;
  cutover: CutoverResult | null;
}

export async function replicatePhase(run: RunContext): Promise<ReplicateOutcome> {
  const { store, opts } = run;
  // Only `--cutover-when-synced` gets here with an interrupted cutover (bindRun refuses the
  // rest): it completes that cutover before anything else.
  const interrupted = interruptedCutover(store) !== null;
  const outcome: ReplicateOutcome = { replay: null, cutover: null };
  let lastSaved = 0;
  const replayer = new Replayer({
    source: opts.source,
    target: opts.target,
    store,
    log: opts.log,
    jobs: opts.jobs,
    signal: opts.signal,
    batchSize: opts.batchSize,
    untilSynced: opts.mode === 'exit-when-synced' || opts.mode === 'cutover-when-synced',
    // Under a live load the log is never empty: the cutover starts once the lag is small.
    syncedLagSeconds:
      opts.mode === 'cutover-when-synced' ? (opts.cutover ?? DEFAULT_CUTOVER).maxLagSeconds / 2 : undefined,
    onStats: (s) => {
      outcome.replay = s;
      if (Date.now() - lastSaved >= 1000) {
        store.setMeta('replay', JSON.stringify(s));
        lastSaved = Date.now();
      }
      opts.onReplayStats?.(s);
    },
    onBatch: opts.onReplayBatch,
    onRetry: opts.onRetry,
    onLost: run.lost,
    onHealthy: run.healthy,
    drift: new DriftWatch({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      mode: opts.drift ?? 'pause',
      onCheck: opts.onDriftCheck,
    }),
  });
  // Its pooled sessions are closed whatever happens: after an outage the next attempt of the
  // run opens its own, and the source's connections stay bounded.
  try {
    // Both sides' shapes are compared before the phase says replicating (an operator's pause
    // holds the loop, not the first catch-up: it should find the catch-up done), and while they
    // differ, the first catch-up waits for the target to match.
    await replayer.checkShapes();
    // A two-way run says replicating only once both sides are replayed into each other: from
    // then on the application may write on the target (engine/two-way/phase.ts).
    if (store.phase() !== 'replicating' && !interrupted && !twoWayOf(store)) run.enter('replicating');
    await replicateWith(run, replayer, interrupted, outcome);
  } finally {
    await replayer.close();
  }
  return outcome;
}

async function replicateWith(
  run: RunContext,
  replayer: Replayer,
  interrupted: boolean,
  outcome: ReplicateOutcome,
): Promise<void> {
  const { store, opts } = run;
  if (interrupted) {
    outcome.cutover = await cutoverWith(run, replayer, opts.cutover ?? DEFAULT_CUTOVER);
    return;
  }
  if (!store.getMeta('unique_built')) {
    // Chunks copied under different snapshots may hold a unique value twice until replay has
    // applied every change once: one whole batch per table makes each table equal to the source
    // at that batch's snapshot, and unique constraints can then be built.
    const t0 = Date.now();
    await delayPoint('replay:first-catch-up');
    const applied = await firstCatchUp(run, replayer);
    opts.log.info(
      { changes: applied, seconds: (Date.now() - t0) / 1000 },
      'caught up once: building unique constraints',
    );
    await buildUniqueConstraints(run);
    store.event('info', 'replicating', 'unique constraints built after the first catch-up');
  }
  if (twoWayOf(store)) {
    // Both sides replayed into each other by Replayers of their own (engine/two-way/).
    outcome.replay = await twoWayPhase(
      run,
      { forward: opts.onReplayStats, reverse: opts.onReverseStats },
      opts.onTwoWayConflicts,
    );
    return;
  }
  const final = await replicateUntilDone(run, replayer, outcome);
  outcome.replay = final;
  store.setMeta('replay', JSON.stringify(final));
  if (outcome.cutover) return;
  if (opts.mode === 'cutover-when-synced' && !opts.signal.aborted) {
    opts.log.info(final, 'synced: starting the cutover');
    outcome.cutover = await cutoverWith(run, replayer, opts.cutover ?? DEFAULT_CUTOVER);
  } else if (opts.mode === 'exit-when-synced' && !opts.signal.aborted) {
    store.event('info', 'replicating', `synced: backlog drained (${final.appliedTotal} changes applied)`);
    opts.log.info(final, 'synced: the copy is done and the captured backlog is drained');
  } else {
    store.event('info', 'replicating', 'stopped by signal between batches');
  }
}

/**
 * The first catch-up, under the phase replicating already: a table whose shape changes meanwhile
 * (its batch refuses the new columns) waits, paused for drift, until the target matches and is
 * then caught up, as the replay loop does, instead of failing the run.
 */
async function firstCatchUp(run: RunContext, replayer: Replayer): Promise<number> {
  // A column guard's refusal is drift for sure; an error a shape difference may explain (a type
  // the target refuses) gets one forced check, and fails the run if it comes again.
  for (let force = false, unexplained = 0; ; force = true) {
    await replayer.checkShapes(force);
    try {
      return await replayer.catchUp();
    } catch (err) {
      const explained = isDriftError(err) || (maybeDrift(err) && unexplained++ === 0);
      if (!explained || run.opts.signal.aborted) throw err;
      run.opts.log.warn({ err: (err as Error).message }, 'first catch-up met a shape change: checking drift');
    }
  }
}

function cutoverWith(run: RunContext, replayer: Replayer, settings: CutoverSettings): Promise<CutoverResult> {
  const { store, opts } = run;
  return cutover({
    source: opts.source,
    target: opts.target,
    store,
    log: opts.log,
    signal: opts.signal,
    jobs: opts.jobs,
    filter: opts.filter,
    replayer,
    retryForMs: opts.retryForMs,
    onReconnect: opts.onReconnect,
    ...settings,
  });
}

/**
 * The replay loop. A cutover requested through the API (opts.control) stops it between batches
 * and runs with this Replayer; if the cutover is refused or fails before the target is ready
 * (writes given back, phase replicating again), the requester hears why and replay goes on.
 */
async function replicateUntilDone(
  run: RunContext,
  replayer: Replayer,
  outcome: ReplicateOutcome,
): Promise<ReplayStats> {
  const { store, opts } = run;
  opts.control?.attachReplayer(replayer);
  // Tables joining or leaving (pgferry tables add|remove) are worked on beside the replay.
  const requests = new TableRequests(run, replayer);
  requests.start();
  try {
    for (;;) {
      const stats = await replayer.run();
      const task = opts.control?.takeTask();
      if (task) {
        if (opts.signal.aborted) {
          task.reject(new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before the task started'));
          return stats;
        }
        await task.run(replayer).then(task.resolve, task.reject);
        continue;
      }
      const request = opts.control?.takeCutover();
      if (!request) {
        // Synced is not done while a table is still joining or leaving.
        if (replayerSynced(opts.mode) && requests.busy() && !opts.signal.aborted) {
          await sleep(200, opts.signal).catch(() => {});
          continue;
        }
        return stats;
      }
      if (opts.signal.aborted) {
        request.reject(new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before the cutover started'));
        return stats;
      }
      opts.log.info({ ...request.settings }, 'cutover requested through the API: replay stopped');
      try {
        outcome.cutover = await cutoverWith(run, replayer, request.settings);
        request.resolve(outcome.cutover);
        return stats;
      } catch (err) {
        request.reject(err);
        if (opts.signal.aborted || store.phase() !== 'replicating') throw err;
        opts.log.warn(
          { err: isPgferryError(err) ? err.code : String(err) },
          'cutover did not happen: replay goes on',
        );
      }
    }
  } finally {
    replayer.endMembership();
    await requests.stop();
    opts.control?.attachReplayer(null);
  }
}

const replayerSynced = (mode: string) => mode === 'exit-when-synced' || mode === 'cutover-when-synced';
