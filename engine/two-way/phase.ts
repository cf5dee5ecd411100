// Two-way sync (`migrate --two-way`), after the copy and the first catch-up: both sides in
// service, each side's changes replayed into the other by a Replayer of its own (the forward one
// and the reverse one of engine/reverse/), one direction at a time per table (TableLocks), every
// batch applied by upsert with its conflicts resolved where it is written (sinks/two-way-apply.ts).
// Start, once: the key sequences checked (sequences.ts), capture installed on the target and the
// source's made to skip pgferry's own writes (no echo), the target's foreign keys and triggers
// created (the application writes there now), and the user triggers of both sides made to fire
// for the application only (triggers.ts).
import { allOrFirstError } from '../../lib/all-settled.js';
import { PgferryError } from '../../lib/errors.js';
import { qualified } from '../../lib/sql.js';
import type { ApplyTable } from '../../sinks/batch-applier.js';
import type { Conflict, ConflictWinner, TwoWayApply } from '../../sinks/two-way-apply.js';
import type { TwoWayContext } from '../replay/batch-retry.js';
import { Replayer, type ReplayStats } from '../replay/replay.js';
import { TableLocks } from '../replay/table-locks.js';
import { installReverse } from '../reverse/install.js';
import { reverseReplayer, savedStats, targetHeartbeat } from '../reverse/phase.js';
import { REVERSE_STATS_KEY, reverseCaptures } from '../reverse/state.js';
import type { RunContext } from '../run/context.js';
import { createDeferred } from '../schema/deferred-objects.js';
import { syncSequences } from '../schema/sequences.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { planSequences } from './sequences.js';
import { type ConflictRule, countConflicts, markTwoWayStarted, twoWayOf } from './state.js';
import { skipReplayInTriggers } from './triggers.js';

const contextOf = (run: RunContext) => ({
  source: run.opts.source,
  target: run.opts.target,
  store: run.store,
  log: run.opts.log,
  signal: run.opts.signal,
});

async function startTwoWay(run: RunContext): Promise<void> {
  const { store, opts } = run;
  const tables = store.captures().map((c) => ({ schema: c.schema, name: c.name }));
  // The target's sequences at least the source's (as a cutover sets them), then apart from them.
  await syncSequences(run.src, run.dst);
  const sequences = await planSequences(run.src, run.dst, tables);
  const [problem] = sequences.problems;
  if (problem) {
    throw new PgferryError(
      'PGFERRY_PREFLIGHT_PROBLEMS',
      `two-way sync cannot start: ${sequences.problems.map((c) => c.message).join('; ')}`,
      { side: 'source', object: problem.object, hint: problem.fix },
    );
  }
  for (const a of sequences.adjust) {
    await run.dst.query(a.sql);
    opts.log.info({ key: a.key, sql: a.sql }, 'two-way: the target’s sequence takes the other residue');
    store.event('info', 'replicating', `two-way: ${a.sql} on the target (${a.key})`);
  }
  await installReverse(contextOf(run));
  // The application writes on the target from now on: its foreign keys and triggers are created.
  await createDeferred({
    target: opts.target,
    store,
    log: opts.log,
    stage: 'cutover',
    concurrency: 1,
    signal: opts.signal,
    errorCode: 'PGFERRY_TARGET_QUERY',
  });
  const runId = store.runId()!;
  const side = { log: opts.log, signal: opts.signal };
  await skipReplayInTriggers(run.dst, runId, tables, { ...side, side: 'target' });
  await skipReplayInTriggers(run.src, runId, tables, { ...side, side: 'source' });
  markTwoWayStarted(store);
  store.event('info', 'replicating', `two-way sync started (--conflict ${twoWayOf(store)?.conflict})`);
}

/** How a direction resolves a conflict: writing into the target (forward) or into the source. */
function applyRule(rule: ConflictRule, into: 'target' | 'source'): Pick<TwoWayApply, 'rule' | 'tie'> {
  const sourceIs: ConflictWinner = into === 'target' ? 'incoming' : 'own';
  const targetIs: ConflictWinner = sourceIs === 'own' ? 'incoming' : 'own';
  if (rule === 'latest') return { rule: 'latest', tie: sourceIs };
  return { rule: rule === 'source-wins' ? sourceIs : targetIs, tie: sourceIs };
}

export async function twoWayPhase(
  run: RunContext,
  onStats: { forward?: (s: ReplayStats) => void; reverse?: (s: ReplayStats) => void } = {},
  onConflicts?: (table: string, winner: 'source' | 'target', n: number) => void,
): Promise<ReplayStats> {
  const { store, opts } = run;
  if (!twoWayOf(store)?.startedAt) await startTwoWay(run);
  else await installReverse(contextOf(run));
  if (store.phase() !== 'replicating') run.enter('replicating');
  const rule = twoWayOf(store)!.conflict;
  const locks = new TableLocks();
  const logOf = (records: { schema: string; name: string; logTable: string }[], t: ApplyTable) => {
    const r = records.find((c) => c.schema === t.schema && c.name === t.name);
    return r ? qualified(PGFERRY_SCHEMA, r.logTable) : null;
  };
  const context = (into: 'target' | 'source'): TwoWayContext => ({
    apply: (t) => {
      const ownLog = logOf(into === 'target' ? reverseCaptures(store) : store.captures(), t);
      return ownLog ? { ownLog, ...applyRule(rule, into) } : null;
    },
    locks,
    refused: new Map(),
    noUpsert: new Set(),
    onConflicts: (t, conflicts: Conflict[]) => {
      const table = `${t.schema}.${t.name}`;
      const sourceSide: ConflictWinner = into === 'target' ? 'incoming' : 'own';
      const named = conflicts.map(
        (c) => ({ key: c.key, winner: c.winner === sourceSide ? 'source' : 'target' }) as const,
      );
      countConflicts(store, table, named);
      for (const c of named) {
        opts.log.info(
          { table, key: c.key, winner: c.winner, rule },
          `two-way conflict on ${table}: the ${c.winner}'s version kept`,
        );
      }
      for (const w of ['source', 'target'] as const) {
        const n = named.filter((c) => c.winner === w).length;
        if (n > 0) onConflicts?.(table, w, n);
      }
    },
  });
  const saved = (key: string, report?: (s: ReplayStats) => void) => savedStats(store, key, report);
  const untilSynced = opts.mode === 'exit-when-synced';
  const forward = new Replayer({
    source: opts.source,
    target: opts.target,
    store,
    log: opts.log,
    jobs: opts.jobs,
    signal: opts.signal,
    batchSize: opts.batchSize,
    untilSynced,
    minSliceChanges: Number.POSITIVE_INFINITY,
    onStats: saved('replay', onStats.forward),
    onBatch: opts.onReplayBatch,
    onRetry: opts.onRetry,
    onLost: run.lost,
    onHealthy: run.healthy,
    twoWay: context('target'),
  });
  const reverse = reverseReplayer(store, opts, saved(REVERSE_STATS_KEY, onStats.reverse), {
    twoWay: context('source'),
    untilSynced,
  });
  const heartbeat = await targetHeartbeat(run);
  opts.log.info({ conflict: rule }, 'two-way sync: each side’s changes replayed into the other');
  const both = [forward, reverse];
  try {
    // One direction failing stops the other between its batches.
    const [stats] = await allOrFirstError(
      both.map((r) =>
        r.run().catch((err: unknown) => {
          for (const other of both) other.stop();
          throw err;
        }),
      ),
    );
    return stats as ReplayStats;
  } finally {
    await Promise.all([forward.close(), reverse.close(), heartbeat.stop()]);
  }
}
