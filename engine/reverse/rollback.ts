// The rollback: the cutover in the other direction. Reverse replication has kept the old source
// current with what the application wrote on the new side; the rollback freezes the new side,
// drains the reverse log to empty, sets the old source's sequences to at least the new side's,
// refreshes its materialized views, restores its foreign keys and triggers (old-side.ts), verifies
// both sides, and gives the old source its writes back: the cutover's freeze undone exactly as
// recorded. The new side stays frozen, its reverse capture and the objects the cutover created on
// it are removed, its run mark is back, and the run replicates forward again from the old source
// (the next cutover gives the new side its writes back). Each step is recorded (meta `rollback`)
// before the next: a failure before `source ready` gives the new side its writes back.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { crashPoint } from '../../lib/crash-point.js';
import { isPgferryError, PgferryError, stateOf } from '../../lib/errors.js';
import { qualified } from '../../lib/sql.js';
import { DRAIN_WIDTH, drain } from '../cutover/drain.js';
import {
  applyFreeze,
  type FreezeMethod,
  planFreeze,
  stopWriters,
  unfreezeWrites,
  waitForQuiet,
} from '../cutover/freeze.js';
import { clearCutoverRecord, readCutoverRecord } from '../cutover/freeze-record.js';
import { removeCutoverObjects } from '../cutover/undo.js';
import { differences, replicatedTables } from '../cutover/verified-point.js';
import type { Replayer } from '../replay/replay.js';
import { restoreRunMark } from '../run/identity.js';
import { refreshMatviews } from '../schema/matviews.js';
import { syncSequences } from '../schema/sequences.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, withClient } from '../shared/db.js';
import type { TableFilter } from '../shared/table-filter.js';
import { verify } from '../verify/verify.js';
import { reverseChangeSource } from './install.js';
import { restoreOnOldSide, suspendOnOldSide, validateOnOldSide } from './old-side.js';
import {
  clearRollbackRecord,
  forgetReverse,
  interruptedRollback,
  type RollbackStep,
  readRollbackRecord,
  reverseInstalledAt,
  writeRollbackRecord,
} from './state.js';

export interface RollbackSettings {
  /** How the new side's writes are frozen (revoke is refused: forward replay needs pgferry's grants there). */
  freeze: FreezeMethod;
  maxLagSeconds: number;
  force: boolean;
  settleMs: number;
  verify: 'counts' | 'checksums';
}

export const DEFAULT_ROLLBACK: RollbackSettings = {
  freeze: 'readonly',
  maxLagSeconds: 5,
  force: false,
  settleMs: 2000,
  verify: 'counts',
};

export interface RollbackOptions extends RollbackSettings {
  /** The run's source: the old side, which gets its writes back. */
  source: ConnInfo;
  /** The run's target: the new side, frozen. */
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  signal: AbortSignal;
  jobs: number;
  filter: TableFilter;
  /** The reverse direction's Replayer (reads the new side, writes the old one). */
  replayer: Replayer;
}

export interface RollbackResult {
  /** Write downtime: from the new side's freeze to the old side's writes given back. */
  downtimeSeconds: number;
  freeze: FreezeMethod;
  frozenAt: string;
  sessionsEnded: number;
  changesDrained: number;
  sequences: number;
  materializedViews: number;
  /** Foreign keys and triggers of the old source restored. */
  objectsRestored: number;
  foreignKeysValidated: number;
  verify: { checksums: boolean; equal: boolean; tables: number };
  completedInterrupted: boolean;
}

const refused = (message: string, hint?: string) =>
  new PgferryError('PGFERRY_ROLLBACK_REFUSED', message, { side: 'state', hint });

export async function rollback(opts: RollbackOptions): Promise<RollbackResult> {
  const { store, log, replayer } = opts;
  const interrupted = interruptedRollback(store);
  // An interrupted rollback is completed whatever it changed already (the phase, the reverse capture).
  if (!interrupted && !store.phaseDone('done')) {
    throw refused(
      `this run has not been cut over (phase ${store.phase() ?? 'none'}): there is nothing to roll back`,
    );
  }
  if (!interrupted && !reverseInstalledAt(store)) {
    throw refused(
      'this run has no reverse replication: the old source does not have the writes made on the new side since the cutover',
      'Start it with `pgferry reverse` (it checks that the new side has taken no write yet), or cut over with `--reverse-after-cutover`.',
    );
  }
  const freezeMethod = interrupted?.freeze.method ?? opts.freeze;
  if (freezeMethod === 'revoke') {
    throw refused(
      '--freeze revoke is not possible for a rollback: it revokes pgferry’s own write grants on the new side (on Heroku and RDS the application often shares its role), which forward replication needs after the rollback',
      'Use --freeze readonly (the default) or --freeze external.',
    );
  }
  const oldSide = await connect(opts.source, 'control');
  let newSide: pg.Client;
  try {
    newSide = await connect(opts.target, 'control');
  } catch (err) {
    await oldSide.end().catch(() => {});
    throw err;
  }
  const tables = store.captures().map((c) => ({ schema: c.schema, name: c.name }));
  let freeze = interrupted?.freeze;
  const step = (done: RollbackStep, extra: { downtimeSeconds?: number } = {}) => {
    store.atomically(() => {
      writeRollbackRecord(store, { freeze: freeze!, step: done, ...extra });
      store.event('info', 'done', `rollback: ${done}`);
    });
    crashPoint(`rollback:${done}`);
  };
  const width = Math.max(opts.jobs, Math.min(tables.length, DRAIN_WIDTH));
  try {
    // Idempotent while the old side is frozen for the application (since the cutover); never
    // once it has its writes back (an interrupted rollback past `source ready`).
    const oldFrozen = interrupted?.step !== 'source ready';
    if (oldFrozen) await suspendOnOldSide(oldSide, store, tables);
    if (!interrupted) {
      // The backlog first, while the new side still takes writes (with no reverse daemon running,
      // all of it is waiting): the lag that counts is what is left after it.
      await replayer.catchUp();
      const { lagSeconds } = await replayer.backlog(newSide);
      if (lagSeconds > opts.maxLagSeconds && !opts.force) {
        throw refused(
          `reverse replication lag is ${lagSeconds.toFixed(1)}s after a catch-up, above --max-lag ${opts.maxLagSeconds}s: the old source cannot keep up with the new side's writes`,
        );
      }
      await replayer.warm(width);
      await replayer.catchUp(newSide, width);
      freeze = await planFreeze(newSide, freezeMethod, tables);
      step('freezing');
    } else {
      log.warn({ step: interrupted.step }, 'completing an interrupted rollback');
    }
    const started = Date.parse(freeze!.startedAt);
    let result: Omit<RollbackResult, 'foreignKeysValidated' | 'completedInterrupted'> | null = null;
    if (oldFrozen) {
      await applyFreeze(newSide, opts.target, freeze!);
      step('frozen');
      if (freeze!.method === 'external') {
        const position = async () => String((await replayer.backlog(newSide)).total);
        await waitForQuiet(position, opts.settleMs, 120_000, opts.signal);
      }
      const relations = [
        ...tables.map((t) => qualified(t.schema, t.name)),
        ...replayer.changes.describe().relations,
      ];
      const sessionsEnded = await stopWriters(newSide, freeze!, relations);
      freeze!.sessionsEnded = sessionsEnded;
      step('writers stopped');
      const drained = await drain(replayer, newSide, opts.signal, width);
      step('drained');
      log.info({ changes: drained }, 'rollback: reverse log drained to empty');
      const sequences = await syncSequences(newSide, oldSide);
      step('sequences set');
      const views = await refreshMatviews(newSide, oldSide);
      step('materialized views refreshed');
      const restored = await restoreOnOldSide(oldSide, store);
      step('constraints and triggers restored');
      const report = await verify({
        source: opts.source,
        target: opts.target,
        filter: opts.filter,
        tables: await replicatedTables(opts),
        checksums: opts.verify === 'checksums',
        jobs: opts.jobs,
      });
      if (!report.equal) throw differences(report);
      step('verified');
      // The point of no return: the old source takes writes again, as it did before the cutover.
      const cut = readCutoverRecord(store);
      if (cut) await unfreezeWrites(oldSide, opts.source, cut.freeze);
      const downtimeSeconds = (Date.now() - started) / 1000;
      step('source ready', { downtimeSeconds });
      log.info({ downtimeSeconds }, 'rollback: the old source takes writes again');
      result = {
        downtimeSeconds,
        freeze: freeze!.method,
        frozenAt: freeze!.startedAt,
        sessionsEnded,
        changesDrained: drained,
        sequences: sequences.length,
        materializedViews: views.length,
        objectsRestored: restored,
        verify: { checksums: report.checksums, equal: true, tables: report.tables.length },
      };
    }
    const validated = await validateOnOldSide(oldSide, store);
    await reopenForward(opts);
    const downtimeSeconds = readRollbackRecord(store)?.downtimeSeconds ?? 0;
    step('done', { downtimeSeconds });
    store.event(
      'info',
      'replicating',
      `rolled back: write downtime ${downtimeSeconds.toFixed(2)}s; the run replicates forward again`,
    );
    return {
      ...(result ?? {
        downtimeSeconds,
        freeze: freeze!.method,
        frozenAt: freeze!.startedAt,
        sessionsEnded: freeze!.sessionsEnded ?? 0,
        changesDrained: 0,
        sequences: 0,
        materializedViews: 0,
        objectsRestored: 0,
        verify: { checksums: opts.verify === 'checksums', equal: true, tables: 0 },
      }),
      foreignKeysValidated: validated,
      completedInterrupted: interrupted !== null,
    };
  } catch (err) {
    const record = readRollbackRecord(store);
    if (freeze && record && record.step !== 'source ready' && record.step !== 'done') {
      throw await giveNewSideBack(opts, oldSide, newSide, freeze, err);
    }
    throw err;
  } finally {
    await Promise.all([oldSide.end().catch(() => {}), newSide.end().catch(() => {})]);
  }
}

/** A rollback that failed before `source ready`: the new side's writes back, the old side suspended again. */
async function giveNewSideBack(
  opts: RollbackOptions,
  oldSide: pg.Client,
  newSide: pg.Client,
  freeze: NonNullable<ReturnType<typeof readRollbackRecord>>['freeze'],
  err: unknown,
): Promise<PgferryError> {
  const { store, log } = opts;
  const why = isPgferryError(err) ? err.message : String((err as Error)?.message ?? err);
  try {
    await unfreezeWrites(newSide, opts.target, freeze);
    await suspendOnOldSide(oldSide, store, store.captures());
    clearRollbackRecord(store);
  } catch (e) {
    const msg = `rollback failed (${why}) and the new side's writes could not be given back (${(e as Error).message}): run \`pgferry rollback\` again with the same --state`;
    store.event('error', 'done', msg);
    return new PgferryError('PGFERRY_ROLLBACK_FAILED', msg, { side: 'target', cause: err });
  }
  store.event('error', 'done', `rollback failed, writes given back to the new side: ${why}`);
  log.error({ err: why }, 'rollback failed: the new side has its writes back; reverse replication goes on');
  if (
    isPgferryError(err) &&
    (err.code === 'PGFERRY_ROLLBACK_REFUSED' || err.code === 'PGFERRY_RUN_CANCELLED')
  )
    return err;
  return new PgferryError('PGFERRY_ROLLBACK_FAILED', why, {
    side: isPgferryError(err) ? err.side : undefined,
    sqlstate: stateOf(err),
    cause: err,
  });
}

/**
 * The run goes forward again: the reverse capture leaves the new side (nothing is written there
 * but by pgferry now), the objects the cutover created there go as an undone cutover's do, the
 * new side carries the run's mark again, and the run is replicating.
 */
async function reopenForward(opts: RollbackOptions): Promise<void> {
  const { store } = opts;
  await reverseChangeSource(store).remove(opts.target, { force: true });
  forgetReverse(store);
  await removeCutoverObjects(opts.target, store);
  const setup = store.setup()!;
  await withClient(opts.target, 'control', (c) => restoreRunMark(c, setup.runId, setup.source));
  store.atomically(() => {
    clearCutoverRecord(store);
    store.finishPhase('done', false);
    store.finishPhase('cutover', false);
    store.setPhase('replicating');
  });
}
