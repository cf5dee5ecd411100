// Binding a run to its state file, or resuming it. A new run's setup is recorded only after every
// check has passed (so a refused run, run again, is a new run, never a "resume" that deletes rows
// on a database pgferry did not fill); a resume must find the same servers, identified by what
// they are, and a target carrying this run's mark.

import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore, RunSetup } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { ChangeSourceKind } from '../capture/change-source.js';
import { foreignObjects, schemaTaken } from '../capture/own-objects.js';
import { captureProblems } from '../capture/sources.js';
import { refuseInterruptedCutover } from '../cutover/freeze-record.js';
import { sortingDifference } from '../preflight/collations.js';
import { encodingDifferenceOf } from '../preflight/encodings.js';
import { dependentFix, describeDependent, excludedDependents } from '../preflight/excluded-dependents.js';
import { standbyProblems } from '../preflight/standbys.js';
import { targetUserTables } from '../preflight/target-checks.js';
import { displayName, splitTables, tablesWithoutKey } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import type { TableFilter } from '../shared/table-filter.js';
import { type LiveIdentity, readIdentity, readRunMark, refuseSameDatabase } from './identity.js';

export interface BindOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  store: CheckpointStore;
  src: pg.Client;
  dst: pg.Client;
  log: Logger;
  copyOnly: boolean;
  /** Where replay will read the source's changes (--capture). */
  capture: ChangeSourceKind;
  /** How long a table locked by someone else is waited for (--capture-lock-wait). */
  lockWaitMs?: number;
  /** This command finishes an interrupted cutover (`migrate --cutover-when-synced`), so it may go on. */
  completesCutover: boolean;
}

export const newRunId = (): string => randomBytes(5).toString('hex');

const stored = ({ startedAt: _, ...id }: LiveIdentity) => id;

/** Binds a new run (returns false) or checks a resumed one (returns true). */
export async function bindRun(opts: BindOptions): Promise<boolean> {
  const { store } = opts;
  const { source, target } = await readServers(opts.src, opts.dst, opts.source, opts.target);
  const wanted: Omit<RunSetup, 'runId'> = {
    source,
    target,
    include: [...opts.filter.include],
    exclude: [...opts.filter.exclude],
    mode: opts.copyOnly ? 'copy-only' : 'replicate',
    ...(opts.copyOnly ? {} : { capture: opts.capture }),
  };
  if (store.setup()) {
    if (!opts.completesCutover) refuseInterruptedCutover(store);
    await checkResumedTarget(store, wanted, opts.dst, opts.target);
    return true;
  }
  await checkNewRun(opts);
  store.bindSetup({ runId: newRunId(), ...wanted });
  return false;
}

/** What the two servers are, refusing one database on both sides however its URLs are spelled. */
export async function readServers(
  src: pg.Client,
  dst: pg.Client,
  source: ConnInfo,
  target: ConnInfo,
): Promise<Pick<RunSetup, 'source' | 'target'>> {
  const [s, t] = await Promise.all([readIdentity(src, source), readIdentity(dst, target)]);
  refuseSameDatabase(s, t);
  return { source: stored(s), target: stored(t) };
}

/**
 * A resume must find the run's own servers and, unless the run is done (its target then belongs
 * to the application and carries no mark), a target carrying the run's mark.
 */
export async function checkResumedTarget(
  store: CheckpointStore,
  wanted: Omit<RunSetup, 'runId'>,
  dst: pg.Client,
  target: ConnInfo,
): Promise<void> {
  const setup = store.checkResume(wanted);
  if (!store.phaseDone('done')) await checkRunTarget(store, setup, dst, target);
}

/**
 * A resumed run writes only into the target it has been filling: the one whose pgferry.run holds
 * this run's id. Before the schema was created the target must still be empty.
 */
async function checkRunTarget(
  store: CheckpointStore,
  setup: RunSetup,
  dst: pg.Client,
  target: ConnInfo,
): Promise<void> {
  const mark = await readRunMark(dst);
  if (mark === setup.runId) {
    // A crash between the schema's commit and its bookkeeping leaves exactly the schema we wanted.
    if (!store.getMeta('predata_applied')) store.setMeta('predata_applied', new Date().toISOString());
    return;
  }
  if (store.getMeta('predata_applied') || mark !== null) {
    throw new PgferryError(
      'PGFERRY_TARGET_MISMATCH',
      `${target.label()} ${mark ? `carries the mark of another run (${mark})` : 'does not carry the mark of this run'}, whose id is ${setup.runId}: it is not the database this run has been filling`,
      { side: 'target' },
    );
  }
  await refuseNonEmptyTarget(dst, target);
}

/**
 * Refuses a target that holds tables. `meanwhile`: they appeared after this run found the target
 * empty (another run started into it at the same time), and this run wrote nothing there.
 */
export async function refuseNonEmptyTarget(
  dst: pg.Client,
  target: ConnInfo,
  meanwhile = false,
): Promise<void> {
  const existing = await targetUserTables(dst);
  if (existing.length === 0) return;
  const mark = await readRunMark(dst);
  throw new PgferryError(
    'PGFERRY_TARGET_NOT_EMPTY',
    `${target.label()} ${meanwhile ? 'was empty when this run started, but now has' : 'already has'} ${existing.length} table(s), e.g. ${existing.slice(0, 3).join(', ')}${mark ? ` (it is the target of pgferry run ${mark})` : ''}${meanwhile ? ': another run or someone else created them meanwhile; this run wrote nothing to it' : ''}`,
    { side: 'target' },
  );
}

/** Every reason a new run would fail before it writes anything anywhere. */
async function checkNewRun(opts: BindOptions): Promise<void> {
  const [standby] = await standbyProblems(opts.src, opts.dst, opts.copyOnly);
  if (standby) {
    throw new PgferryError('PGFERRY_PREFLIGHT_PROBLEMS', standby.message, {
      side: standby.code === 'target-standby' ? 'target' : 'source',
      hint: standby.fix,
    });
  }
  const { selected, excluded } = await splitTables(opts.src, opts.filter, { lockWaitMs: opts.lockWaitMs });
  if (selected.length === 0) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      'no table on the source matches the --include/--exclude patterns',
      { side: 'config' },
    );
  }
  const dependents = await excludedDependents(
    opts.src,
    selected.map((t) => t.oid),
    excluded.map((t) => t.oid),
  );
  if (dependents.length > 0) {
    const first = dependents[0]!;
    throw new PgferryError(
      'PGFERRY_PREFLIGHT_PROBLEMS',
      `${dependents.map(describeDependent).join('; ')}: ${dependentFix(first)}`,
      { side: 'source', object: first.object },
    );
  }
  const foreign = await foreignObjects(opts.src, 'source');
  if (foreign.length > 0) {
    const taken = schemaTaken(foreign);
    throw new PgferryError('PGFERRY_PREFLIGHT_PROBLEMS', taken.message, {
      side: 'source',
      object: taken.object,
      hint: taken.fix,
    });
  }
  for (const t of tablesWithoutKey(selected)) {
    if (!opts.copyOnly) {
      throw new PgferryError('PGFERRY_TABLE_NO_PRIMARY_KEY', `${displayName(t)} has no primary key`, {
        side: 'source',
        object: displayName(t),
      });
    }
    opts.log.warn({ table: displayName(t) }, 'table has no primary key: it is copied whole, in one chunk');
  }
  if (!opts.copyOnly) {
    const [problem] = await captureProblems(opts.capture, opts.src, selected);
    if (problem) {
      throw new PgferryError('PGFERRY_PREFLIGHT_PROBLEMS', problem.message, {
        side: 'source',
        object: problem.object,
        hint: problem.fix,
      });
    }
  }
  await refuseNonEmptyTarget(opts.dst, opts.target);
  const sorting = await sortingDifference(opts.src, opts.dst);
  if (sorting) opts.log.warn({ code: sorting.code, fix: sorting.fix }, sorting.message);
  const encoding = await encodingDifferenceOf(opts.src, opts.dst);
  if (encoding) opts.log.warn({ code: encoding.code, fix: encoding.fix }, encoding.message);
}
