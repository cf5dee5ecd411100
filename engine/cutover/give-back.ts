// Giving the source its writes back after a cutover that did not reach `target ready`: the freeze
// undone exactly as recorded, the objects the cutover created on the target removed, the run
// replicating again; by the failed cutover itself, after an outage outlasted --retry-for, or by
// `pgferry cutover --abort`.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { isPgferryError, PgferryError, stateOf } from '../../lib/errors.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, withClient } from '../shared/db.js';
import type { CutoverOptions } from './cutover.js';
import { type FreezeRecord, unfreezeWrites } from './freeze.js';
import { type CutoverRecord, clearCutoverRecord, interruptedCutover, pastNoReturn } from './freeze-record.js';
import { removeCutoverObjects } from './undo.js';

type Sides = Pick<CutoverOptions, 'source' | 'target' | 'store' | 'log'>;

/** --retry-for ran out with writes frozen: give them back if the source answers, else leave the record. */
export async function giveBackAfterOutage(opts: Sides, err: unknown): Promise<unknown> {
  const record = interruptedCutover(opts.store);
  if (!record || pastNoReturn(record)) return err;
  let control: pg.Client;
  try {
    control = await connect(opts.source, 'control');
  } catch {
    const msg = `${(err as Error).message}; writes on the source are still frozen: run \`pgferry cutover --abort\` (or the cutover again) once it answers`;
    opts.store.event('error', 'cutover', msg);
    return new PgferryError('PGFERRY_CUTOVER_INTERRUPTED', msg, { side: 'source', cause: err });
  }
  try {
    return await giveWritesBack(opts, control, record, err);
  } finally {
    await control.end().catch(() => {});
  }
}

/**
 * A cutover that failed before the target was ready gives the source its writes back, removes
 * what it created on the target, and replication goes on. If that fails (a server unreachable),
 * the record stays: every command then reports the interrupted cutover and `cutover --abort`
 * finishes the undo.
 */
export async function giveWritesBack(
  opts: Sides,
  control: pg.Client,
  record: CutoverRecord,
  err: unknown,
): Promise<PgferryError> {
  const { store, log } = opts;
  const why = isPgferryError(err) ? err.message : String((err as Error)?.message ?? err);
  try {
    await undoCutover(control, opts, record);
  } catch (e) {
    const msg = `cutover failed (${why}) and could not be undone (${(e as Error).message}): run \`pgferry cutover --abort\` with the same --state`;
    store.event('error', 'cutover', msg);
    log.error(msg);
    return new PgferryError('PGFERRY_CUTOVER_INTERRUPTED', msg, { side: 'source', cause: err });
  }
  store.event('error', 'cutover', `cutover failed, writes given back to the source: ${why}`);
  // A capture found broken ends the run itself: no replication goes on after it.
  const ended = isPgferryError(err) && err.code === 'PGFERRY_CAPTURE_REMOVED';
  log.error(
    { err: why },
    `cutover failed: writes on the source were given back; ${ended ? 'the run cannot go on' : 'replication goes on'}`,
  );
  if (
    isPgferryError(err) &&
    (ended || err.code === 'PGFERRY_CUTOVER_FAILED' || err.code === 'PGFERRY_RUN_CANCELLED')
  ) {
    return err;
  }
  return new PgferryError('PGFERRY_CUTOVER_FAILED', why, {
    side: isPgferryError(err) ? err.side : undefined,
    sqlstate: stateOf(err),
    cause: err,
  });
}

/**
 * Undoes a cutover that did not reach `target ready`: the source's writes back exactly as
 * recorded, the target's cutover objects removed, and the run replicating again.
 */
async function undoCutover(control: pg.Client, opts: Sides, record: CutoverRecord): Promise<void> {
  await unfreezeWrites(control, opts.source, record.freeze);
  await undoOnTarget(opts.target, opts.store, opts.log);
  clearCutoverRecord(opts.store);
  opts.store.setPhase('replicating');
}

/**
 * Replay goes on after a cutover that did not go through: the foreign keys and user triggers it
 * created on the target go (see undo.ts). Until they are gone the cutover stays recorded
 * as interrupted, so that nothing replays into a target where they would fire.
 */
async function undoOnTarget(target: ConnInfo, store: CheckpointStore, log: Logger): Promise<void> {
  const removed = await removeCutoverObjects(target, store);
  if (removed > 0) {
    store.event(
      'info',
      'cutover',
      `${removed} foreign key(s), trigger(s), rule(s) or policies removed from the target until the next cutover`,
    );
    log.info({ removed }, 'objects the cutover created on the target removed: replay goes on without them');
  }
}

/** `pgferry cutover --abort`: undoes the recorded freeze exactly and puts the run back to replicating. */
export async function abortCutover(
  store: CheckpointStore,
  source: ConnInfo,
  target: ConnInfo,
  log: Logger,
): Promise<{ freeze: FreezeRecord } | null> {
  const record = interruptedCutover(store);
  if (!record) return null;
  if (pastNoReturn(record)) {
    throw new PgferryError(
      'PGFERRY_CUTOVER_REFUSED',
      `the target was declared ready at ${record.updatedAt}: the application may already write to it, so the freeze is not undone`,
      {
        side: 'state',
        hint: 'Finish the cutover with `pgferry cutover` and the same --state; to go back to the old source, use reverse replication and rollback.',
      },
    );
  }
  await withClient(source, 'control', (client) =>
    undoCutover(client, { source, target, store, log }, record),
  );
  const what =
    record.freeze.method === 'revoke'
      ? `${record.freeze.grants?.length ?? 0} grant(s) restored`
      : record.freeze.method === 'readonly'
        ? record.freeze.readonlyWasSet
          ? 'the database stays read-only, as it was before the freeze'
          : 'default_transaction_read_only reset'
        : 'nothing to undo on the source (--freeze external)';
  store.event('warn', 'cutover', `cutover aborted: writes given back to the source (${what})`);
  log.warn({ freeze: record.freeze.method }, `cutover aborted: ${what}`);
  return { freeze: record.freeze };
}
