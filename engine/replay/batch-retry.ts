// What happens when one table's batch fails: a transient error (a lost connection, a deadlock)
// is retried with backoff on fresh sessions; a UNIQUE or EXCLUDE violation in a batch cut short by
// the batch size is redone with the table's whole backlog; a slice that conflicts with another
// makes the table unsliced from then on; an error caused by the capture's removal says so.
import type { Logger } from 'pino';
import { classify, dbError, isPgferryError, PgferryError, sqlstateOf } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { type ApplyTable, StageRefused } from '../../sinks/batch-applier.js';
import { CopyPipeError } from '../../sinks/copy-pipe.js';
import { type Conflict, ConflictRace, type TwoWayApply } from '../../sinks/two-way-apply.js';
import { type ChangeSource, explainRemoval, type Slice } from '../capture/change-source.js';
import type { ConnInfo } from '../shared/conn-info.js';
import type { CountLedger } from './count-ledger.js';
import type { SessionPool } from './sessions.js';
import { type BatchOutcome, replayTableBatch, UNSLICED } from './table-batch.js';
import type { TableLocks } from './table-locks.js';

/** Two-way sync: how a table is applied, one direction at a time, and its conflicts reported. */
export interface TwoWayContext {
  /** The side written's own change log for the table and the conflict rule; null before it is captured there. */
  apply: (t: ApplyTable) => TwoWayApply | null;
  locks: TableLocks;
  onConflicts: (t: ApplyTable, conflicts: Conflict[]) => void;
  /** Since when a table's batches are refused by a foreign key (its parent row comes in another table's batch). */
  refused: Map<ApplyTable, number>;
  /** Tables whose key ON CONFLICT refuses as arbiter (a DEFERRABLE primary key): updated, then inserted. */
  noUpsert: Set<ApplyTable>;
}

/** How long a two-way table's batches may be refused by a foreign key before the run stops. */
export const FK_WAIT_MS = 5 * 60_000;

export interface BatchRetryContext {
  changes: ChangeSource;
  source: ConnInfo;
  sessions: SessionPool;
  log: Logger;
  signal: AbortSignal;
  /** Most changes per batch, unless the batch is whole. */
  batchSize: number;
  /** Tables that replay unsliced from now on: a slice conflicting with another adds its table. */
  unsliceable: Set<ApplyTable>;
  /** Tables whose batches are never staged (a domain refused a gone row's nulls). */
  unstaged: Set<ApplyTable>;
  /** Row count changes since the cutover's verified point, while it keeps them. */
  ledger?: CountLedger;
  onRetry?: (code: string) => void;
  onLost?: (err: unknown) => void;
  onHealthy?: () => void;
  twoWay?: TwoWayContext;
}

/**
 * One batch of one table (or of one slice of it), with retries for transient errors and the
 * UNIQUE fallback. A slice that cannot be applied on its own returns UNSLICED.
 */
export async function retriedTableBatch(
  ctx: BatchRetryContext,
  t: ApplyTable,
  whole = false,
  snapshotId?: string,
  slice?: Slice,
  /** The table's pending changes the round saw (ReadOptions.pending). */
  pending?: number,
): Promise<BatchOutcome | null | typeof UNSLICED> {
  const name = `${t.schema}.${t.name}`;
  let limit: number | null = whole ? null : ctx.batchSize;
  const tw = ctx.twoWay;
  let deleteAll = false;
  let races = 0;
  for (let attempt = 1; ; attempt++) {
    const s = await ctx.sessions.take();
    try {
      const apply = tw?.apply(t);
      const batch = () =>
        replayTableBatch(
          s,
          ctx.changes,
          t,
          { limit, snapshotId, slice, pending },
          {
            mayStage: !ctx.unstaged.has(t),
            exactCounts: ctx.ledger !== undefined,
            twoWay: apply ? { ...apply, deleteAll, updateInsert: tw!.noUpsert.has(t) } : undefined,
          },
        );
      const out = tw ? await tw.locks.run(name, batch) : await batch();
      if (out && out !== UNSLICED) ctx.ledger?.record(t, out.counts);
      if (out && out !== UNSLICED && out.conflicts?.length) tw?.onConflicts(t, out.conflicts);
      tw?.refused.delete(t);
      ctx.sessions.give(s);
      ctx.onHealthy?.();
      return out;
    } catch (err) {
      // The target may have committed what the source did not consume: the table's count is not known.
      ctx.ledger?.lost(t);
      await ctx.sessions.discard(s);
      if (err instanceof StageRefused && !ctx.unstaged.has(t)) {
        ctx.log.info({ table: name, err: err.message }, 'staged rows refused: the table is applied unstaged');
        ctx.unstaged.add(t);
        attempt--;
        continue;
      }
      const cause = err instanceof CopyPipeError ? err.cause : err;
      const side = err instanceof CopyPipeError ? err.side : 'target';
      const state = sqlstateOf(cause);
      if (tw) {
        const next = twoWayFailure(ctx, t, err, state, deleteAll);
        if (next === 'later') return null;
        if (next === 'delete all') deleteAll = true;
        if (next === 'no upsert') {
          ctx.log.info(
            { table: name, err: (err as Error).message },
            'two-way: the primary key cannot arbitrate an upsert (DEFERRABLE): the table is updated, then inserted',
          );
          tw.noUpsert.add(t);
        }
        // A key raced again and again (an application rewriting it without pause) fails the run.
        if (next === 'again' && ++races > 50) {
          throw new PgferryError('PGFERRY_REPLAY_CONFLICT', `${(err as Error).message}, 50 times in a row`, {
            side: 'target',
            object: name,
          });
        }
        if (next !== 'fail') {
          attempt--;
          continue;
        }
      }
      // 23505 unique_violation, 23P01 exclusion_violation: what a batch cut short of its whole
      // set can break (two rows that swapped a value or a range in one transaction).
      const conflict = state === '23505' || state === '23P01';
      if (slice && (conflict || state === '40P01')) {
        // Slices are in different snapshots: two keys that swapped a unique value may be split
        // between them (a violation, or two slices each waiting on the other's deleted row).
        // The table replays unsliced from now on.
        ctx.log.info(
          { table: name, sqlstate: state },
          'unique conflict between slices: the table is no longer sliced',
        );
        ctx.unsliceable.add(t);
        return UNSLICED;
      }
      if (conflict && limit !== null) {
        // A cut-short batch can separate two rows that swapped a unique value: redo it whole.
        ctx.log.info(
          { table: name, sqlstate: state },
          'unique or exclusion violation in a partial batch: applying the whole backlog at once',
        );
        limit = null;
        continue;
      }
      const e = isPgferryError(cause) ? cause : dbError(side, cause, name);
      const removed = await explainRemoval(ctx.changes, ctx.source, e);
      if (removed !== e) throw removed;
      if (conflict) {
        throw new PgferryError('PGFERRY_REPLAY_CONFLICT', `${name}: ${e.message}`, {
          side: 'target',
          object: name,
          sqlstate: state,
          cause,
        });
      }
      ctx.onLost?.(e);
      if (classify(e) === 'retry' && attempt < 5 && !ctx.signal.aborted) {
        ctx.onRetry?.(e.code);
        ctx.log.warn({ table: name, attempt, err: e.message }, 'batch failed, retrying');
        await sleep(500 * 2 ** attempt, ctx.signal);
        continue;
      }
      throw e;
    }
  }
}

/**
 * A two-way batch that failed: a key changed on the side written while it was applied (again),
 * a foreign key waiting for its parent row from another table's batch (later: the next round),
 * a unique constraint an upsert broke where the whole set deleted first would not, or a key that
 * cannot arbitrate an upsert (55000: DEFERRABLE).
 */
function twoWayFailure(
  ctx: BatchRetryContext,
  t: ApplyTable,
  err: unknown,
  state: string | undefined,
  deleteAll: boolean,
): 'again' | 'later' | 'delete all' | 'no upsert' | 'fail' {
  if (err instanceof ConflictRace) return 'again';
  if (state === '55000' && !ctx.twoWay!.noUpsert.has(t)) return 'no upsert';
  if (state === '23505' && !deleteAll) return 'delete all';
  if (state !== '23503') return 'fail';
  const refused = ctx.twoWay!.refused;
  const since = refused.get(t) ?? Date.now();
  if (!refused.has(t)) {
    refused.set(t, since);
    ctx.log.info(
      { table: `${t.schema}.${t.name}`, err: (err as Error).message },
      'two-way: a foreign key refused the batch for now (its parent comes in another batch): retried next round',
    );
  }
  return Date.now() - since < FK_WAIT_MS ? 'later' : 'fail';
}
