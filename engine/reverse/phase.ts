// Reverse replication after the cutover: the changes the application makes on the new side (the
// run's target), captured there by the run's triggers (install.ts), replayed into the old source
// (frozen for the application, writable for pgferry), with the Replayer of the forward direction
// and the sides swapped; until the daemon stops, or a rollback (rollback.ts) requested through the
// API makes the old source the application's database again. Entered by `migrate
// --reverse-after-cutover` once its cutover is done (and on a restart of such a run), and by
// `pgferry reverse` on a finished run, which may start reverse replication only while the new
// side still equals the old one: writes made before its capture went on would be lost to a rollback.
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { CaptureHeartbeat } from '../capture/heartbeat.js';
import { ExportedSnapshot } from '../copy/snapshot.js';
import type { MigrateOptions } from '../migrate.js';
import type { TwoWayContext } from '../replay/batch-retry.js';
import { Replayer, type ReplayStats } from '../replay/replay.js';
import type { RunContext } from '../run/context.js';
import { withClient } from '../shared/db.js';
import { type ConflictRule, requestTwoWay } from '../two-way/state.js';
import { verifiedTables, verify } from '../verify/verify.js';
import { installReverse, type ReverseContext, reverseChangeSource } from './install.js';
import { restoreOnOldSide, suspendOnOldSide, validateOnOldSide } from './old-side.js';
import { DEFAULT_ROLLBACK, type RollbackResult, rollback } from './rollback.js';
import {
  forgetReverse,
  interruptedRollback,
  markReverseInstalled,
  REVERSE_STATS_KEY,
  requestReverse,
  reverseCaptures,
  reverseInstalledAt,
  reverseRequested,
} from './state.js';

/** What `migrate` takes for the reverse direction. */
export interface ReverseOptions {
  /** --reverse-after-cutover: the cutover installs capture on the target; a daemon (mode run) then replays it into the source. */
  reverseAfterCutover?: boolean;
  /** `pgferry reverse`: reverse replication on a run already cut over (then, after a rollback, forward again). */
  reverse?: boolean;
  /** The reverse replay's figures (metrics). */
  onReverseStats?: (s: ReplayStats) => void;
  /** --two-way: both sides' changes replayed into the other once the copy is done, conflicts by this rule. */
  twoWay?: { conflict: ConflictRule };
  /** Two-way conflicts of one batch, by the side whose version was kept (metrics). */
  onTwoWayConflicts?: (table: string, winner: 'source' | 'target', n: number) => void;
}

/**
 * Records what this invocation asks of the run's directions (each stays asked); returns whether
 * the run replays in reverse once it is cut over: a daemon (mode run) that asked, or `pgferry reverse`.
 */
export function recordDirections(
  store: CheckpointStore,
  opts: ReverseOptions & Pick<MigrateOptions, 'mode'>,
): () => boolean {
  if (opts.reverseAfterCutover && !reverseRequested(store)) requestReverse(store);
  if (opts.twoWay) requestTwoWay(store, opts.twoWay.conflict);
  return () => opts.reverse === true || (opts.mode === 'run' && reverseRequested(store));
}

/** The reverse direction's Replayer: reads the new side (the run's target), writes the old one. */
export function reverseReplayer(
  store: CheckpointStore,
  opts: Pick<MigrateOptions, 'source' | 'target' | 'log' | 'jobs' | 'signal' | 'batchSize' | 'onRetry'>,
  onStats?: (s: ReplayStats) => void,
  extra: { twoWay?: TwoWayContext; untilSynced?: boolean } = {},
): Replayer {
  return new Replayer({
    source: opts.target,
    target: opts.source,
    store,
    log: opts.log.child({ direction: 'reverse' }),
    jobs: opts.jobs,
    signal: opts.signal,
    batchSize: opts.batchSize,
    captures: reverseCaptures(store),
    changes: reverseChangeSource(store),
    statsKey: REVERSE_STATS_KEY,
    onStats,
    onRetry: opts.onRetry,
    ...(extra.twoWay ? { twoWay: extra.twoWay, minSliceChanges: Number.POSITIVE_INFINITY } : {}),
    untilSynced: extra.untilSynced,
  });
}

const contextOf = (run: RunContext): ReverseContext => ({
  source: run.opts.source,
  target: run.opts.target,
  store: run.store,
  log: run.opts.log,
  signal: run.opts.signal,
});

/**
 * Reverse replication on a run cut over without it: capture goes on on the new side, then every
 * change it logged is drained into the old source at a snapshot of the new side, where both
 * sides are compared. Equal: nothing was written on the new side before its capture, and reverse
 * replication goes on. Different: the capture is removed and the command refused, naming the tables.
 */
async function startLate(run: RunContext, replayer: () => Replayer): Promise<void> {
  const ctx = contextOf(run);
  const { store, opts } = run;
  await installReverse({ ...ctx, deferMark: true });
  await withClient(opts.source, 'control', (c) => suspendOnOldSide(c, store, store.captures()));
  const r = replayer();
  const snapshot = await ExportedSnapshot.take(opts.target);
  try {
    await r.drainAt(snapshot.id);
    const names = new Set(reverseCaptures(store).map((c) => `${c.schema}.${c.name}`));
    const report = await verify({
      source: opts.target,
      target: opts.source,
      filter: opts.filter,
      tables: (await verifiedTables(opts.target, opts.filter)).filter((t) =>
        names.has(`${t.schema}.${t.name}`),
      ),
      checksums: true,
      jobs: opts.jobs,
      sourceSnapshot: snapshot.id,
    });
    if (!report.equal) {
      const differing = report.tables.filter((t) => !t.equal).map((t) => t.table);
      await reverseChangeSource(store).remove(opts.target, { force: true });
      forgetReverse(store);
      await withClient(opts.source, 'control', async (c) => {
        await restoreOnOldSide(c, store);
        await validateOnOldSide(c, store);
      });
      throw new PgferryError(
        'PGFERRY_ROLLBACK_REFUSED',
        `the new side differs from the old source in ${differing.length} table(s) (${differing.slice(0, 5).join(', ')}${differing.length > 5 ? ', …' : ''}): it took writes before reverse replication started, which a rollback would lose`,
        {
          side: 'target',
          hint: 'Reverse replication must start before the new side takes writes: next time cut over with `migrate --reverse-after-cutover`. To go back now, migrate the new side into a fresh database with a new run.',
        },
      );
    }
  } finally {
    await snapshot.release();
    await r.close();
  }
  markReverseInstalled(store);
  store.event('info', 'done', 'reverse replication started on a finished run: both sides were equal');
}

/**
 * Replays the new side's changes into the old source until the run stops, or runs a rollback
 * requested through the API (returned: the run then replicates forward again).
 */
export async function reversePhase(
  run: RunContext,
  onStats?: (s: ReplayStats) => void,
): Promise<RollbackResult | null> {
  const { store, opts } = run;
  if (interruptedRollback(store)?.step === 'source ready') {
    throw new PgferryError(
      'PGFERRY_ROLLBACK_REFUSED',
      'a rollback of this run was interrupted after the old source took its writes back: reverse replication must not go on',
      {
        side: 'state',
        hint: 'Complete it with `pgferry rollback` and the same --state (the daemon stopped).',
      },
    );
  }
  const make = () => reverseReplayer(store, opts, savedStats(store, REVERSE_STATS_KEY, onStats));
  if (!reverseInstalledAt(store)) await startLate(run, make);
  // A run cut over by an older pgferry, or a crash before the install finished: idempotent.
  else await installReverse(contextOf(run));
  await withClient(opts.source, 'control', (c) => suspendOnOldSide(c, store, store.captures()));
  const heartbeat = await targetHeartbeat(run);
  const replayer = make();
  store.event('info', 'done', 'reverse replication running: the new side’s changes go to the old source');
  opts.log.info('reverse replication: replaying the new side’s changes into the old source');
  try {
    opts.control?.attachReverse(replayer);
    for (;;) {
      const stats = await replayer.run();
      store.setMeta(REVERSE_STATS_KEY, JSON.stringify(stats));
      const request = opts.control?.takeRollback();
      if (!request) return null;
      if (opts.signal.aborted) {
        request.reject(new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before the rollback started'));
        return null;
      }
      try {
        const result = await rollback({
          ...DEFAULT_ROLLBACK,
          ...request.settings,
          source: opts.source,
          target: opts.target,
          store,
          log: opts.log,
          signal: opts.signal,
          jobs: opts.jobs,
          filter: opts.filter,
          replayer,
        });
        request.resolve(result);
        return result;
      } catch (err) {
        request.reject(err);
        if (opts.signal.aborted || !store.phaseDone('done')) throw err;
        opts.log.warn(
          { err: (err as Error).message },
          'rollback did not happen: reverse replication goes on',
        );
      }
    }
  } finally {
    opts.control?.attachReverse(null);
    await replayer.close();
    await heartbeat.stop();
  }
}

/** A replay's figures kept in the state file (at most once a second), and reported. */
export function savedStats(
  store: CheckpointStore,
  key: string,
  report?: (s: ReplayStats) => void,
): (s: ReplayStats) => void {
  let last = 0;
  return (s) => {
    if (Date.now() - last >= 1000) {
      store.setMeta(key, JSON.stringify(s));
      last = Date.now();
    }
    report?.(s);
  };
}

/** The run's heartbeat on the target, where its reverse capture is registered (cleanup refuses while it beats). */
export async function targetHeartbeat(run: RunContext): Promise<CaptureHeartbeat> {
  const { opts, store } = run;
  const changes = reverseChangeSource(store);
  const heartbeat = new CaptureHeartbeat({
    source: opts.target,
    runId: store.runId()!,
    statePath: opts.statePath,
    log: opts.log,
    onRemoved: (err) => run.captureLost.abort(err),
    measure: (client) => changes.logSize(client),
  });
  await heartbeat.start();
  return heartbeat;
}
