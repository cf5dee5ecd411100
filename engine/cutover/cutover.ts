// The cutover: refuse unless replication is close; freeze writes on the source; drain the log
// to empty; set the target's sequences; refresh materialized views; create the deferred foreign
// keys (NOT VALID), triggers, rules and policies; verify; report the write downtime. Foreign keys
// are validated after the target is declared ready (validation only reads, and writes may go on).
// A failure before the target is ready gives the source its writes back and replication goes on.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { crashPoint } from '../../lib/crash-point.js';
import { isPgferryError, PgferryError, stateOf } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { qualified } from '../../lib/sql.js';
import type { Replayer } from '../replay/replay.js';
import { dropRunMark } from '../run/identity.js';
import { createDeferred } from '../schema/deferred-objects.js';
import { refreshMatviews } from '../schema/matviews.js';
import { syncSequences } from '../schema/sequences.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, q, withClient } from '../shared/db.js';
import { DEFAULT_RETRY_FOR_MS, isConnectionLoss, OutageTracker, sideOf } from '../shared/outage.js';
import type { TableFilter } from '../shared/table-filter.js';
import { verify } from '../verify/verify.js';
import {
  applyFreeze,
  type FreezeMethod,
  type FreezeRecord,
  planFreeze,
  stopWriters,
  unfreezeWrites,
  waitForQuiet,
} from './freeze.js';
import {
  type CutoverRecord,
  type CutoverStep,
  clearCutoverRecord,
  describeInterrupted,
  interruptedCutover,
  pastNoReturn,
  readCutoverRecord,
  writeCutoverRecord,
} from './freeze-record.js';
import { removeCutoverObjects } from './undo.js';

export interface CutoverOptions {
  source: ConnInfo;
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  signal: AbortSignal;
  jobs: number;
  filter: TableFilter;
  replayer: Replayer;
  freeze: FreezeMethod;
  maxLagSeconds: number;
  force: boolean;
  /** --freeze external: how long the log must stay quiet before pgferry believes writes stopped. */
  settleMs: number;
  verify: 'counts' | 'checksums';
  /** How long a lost connection is waited out with writes frozen (--retry-for). */
  retryForMs?: number;
  /** A side's lost connection is about to be retried (metrics). */
  onReconnect?: (side: 'source' | 'target') => void;
}

export interface CutoverResult {
  /** Write downtime: from the freeze to the target declared ready. */
  downtimeSeconds: number;
  freeze: FreezeMethod;
  /** When writes were frozen on the source (ISO 8601). */
  frozenAt: string;
  /** Sessions ended on the source so that nothing could still write. */
  sessionsEnded: number;
  changesDrained: number;
  sequences: number;
  materializedViews: number;
  deferredObjects: number;
  foreignKeysValidated: number;
  /** The verification before the target was declared ready (a failed one stops the cutover). */
  verify: { checksums: boolean; equal: boolean; tables: number } | null;
  /** The steps this cutover completed, each with its time; none before where an interrupted one stopped. */
  steps: { step: CutoverStep; at: string }[];
  /** An interrupted cutover was completed (the counts cover only what was done now). */
  completedInterrupted: boolean;
}

const FK =
  /^ALTER TABLE (?:ONLY )?((?:"(?:[^"]|"")*"|[^\s."]+)\.(?:"(?:[^"]|"")*"|[^\s."]+))\s+ADD CONSTRAINT ((?:"(?:[^"]|"")*"|[^\s"]+)) FOREIGN KEY/;

/** Drains the log to empty: whole batches until a round applies nothing and nothing is left. */
async function drain(replayer: Replayer, control: pg.Client, signal: AbortSignal): Promise<number> {
  let total = 0;
  for (;;) {
    if (signal.aborted) throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped during the cutover drain');
    const applied = await replayer.catchUp();
    total += applied;
    const { total: left } = await replayer.backlog(control);
    if (applied === 0 && left === 0) return total;
  }
}

/**
 * The cutover, waiting out outages once writes are frozen: a connection lost after the freeze
 * leaves the freeze in place (the application stays stopped) and the cutover, recorded step by
 * step, is completed once the server answers again, for up to --retry-for. Then, or on any other
 * failure before the target is ready, the source gets its writes back.
 */
export async function cutover(opts: CutoverOptions): Promise<CutoverResult> {
  const outages = new OutageTracker({
    retryForMs: opts.retryForMs ?? DEFAULT_RETRY_FOR_MS,
    onRetry: opts.onReconnect,
  });
  for (;;) {
    try {
      return await cutoverOnce(opts);
    } catch (err) {
      if (!isConnectionLoss(err) || opts.signal.aborted || !interruptedCutover(opts.store)) throw err;
      const side = sideOf(err) ?? 'target';
      let wait: number;
      try {
        wait = outages.failed(side, err);
      } catch (giveUp) {
        throw await giveBackAfterOutage(opts, giveUp);
      }
      const why = (err as Error)?.message ?? String(err);
      opts.store.event(
        'warn',
        'cutover',
        `${side} unreachable during the cutover, writes stay frozen: ${why}`,
      );
      opts.log.warn(
        { side, err: why },
        `${side} unreachable during the cutover: writes stay frozen, retrying`,
      );
      await sleep(wait, opts.signal);
    }
  }
}

/** --retry-for ran out with writes frozen: give them back if the source answers, else leave the record. */
async function giveBackAfterOutage(opts: CutoverOptions, err: unknown): Promise<unknown> {
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

async function cutoverOnce(opts: CutoverOptions): Promise<CutoverResult> {
  const { store, log, replayer } = opts;
  const control = await connect(opts.source, 'control');
  let freeze: FreezeRecord | undefined;
  const steps: CutoverResult['steps'] = [];
  const step = (done: CutoverStep) => {
    writeCutoverRecord(store, freeze!, done);
    steps.push({ step: done, at: new Date().toISOString() });
    store.event('info', 'cutover', `cutover: ${done}`);
    crashPoint(`cutover:${done}`);
  };
  try {
    const interrupted = interruptedCutover(store);
    if (interrupted && pastNoReturn(interrupted)) {
      log.warn(
        { step: interrupted.step },
        `${describeInterrupted(interrupted)}: finishing it (the target was already declared ready)`,
      );
      return await finish(opts, interrupted.freeze, {
        downtimeSeconds: Number(store.getMeta('cutover_downtime_seconds')) || 0,
        changesDrained: 0,
        sequences: 0,
        materializedViews: 0,
        deferredObjects: 0,
        verify: null,
        steps,
        completedInterrupted: true,
      });
    }
    if (interrupted) {
      // The freeze recorded before the crash is applied again as recorded (its grants were read
      // before anything was revoked), whatever --freeze says now.
      freeze = interrupted.freeze;
      store.setPhase('cutover');
      store.event('warn', 'cutover', `${describeInterrupted(interrupted)}: completing it`);
      log.warn({ freeze: freeze.method, since: freeze.startedAt }, 'completing an interrupted cutover');
    } else {
      const { lagSeconds } = await replayer.backlog(control);
      if (lagSeconds > opts.maxLagSeconds && !opts.force) {
        throw new PgferryError(
          'PGFERRY_CUTOVER_REFUSED',
          `replication lag is ${lagSeconds.toFixed(1)}s, above --max-lag ${opts.maxLagSeconds}s`,
          { side: 'source' },
        );
      }
      // Catch up while the application still writes: what is left for the freeze is seconds.
      await replayer.catchUp();
      store.setPhase('cutover');
      store.event('info', 'cutover', `cutover started: freezing writes (${opts.freeze})`);
      const tables = store.captures().map((c) => ({ schema: c.schema, name: c.name }));
      // Recorded before it is applied: a crash from here on leaves a freeze every command sees.
      freeze = await planFreeze(control, opts.freeze, tables);
      step('freezing');
    }
    const started = Date.parse(freeze.startedAt);
    await applyFreeze(control, opts.source, freeze);
    step('frozen');
    log.info({ freeze: freeze.method }, 'writes frozen on the source');

    // With external, nothing new may reach the log for the settle time. Then, with every method,
    // the sessions that could still write are ended and the transactions that were writing at the
    // freeze are waited for: after that, no write can commit on the source.
    if (freeze.method === 'external') {
      const position = async () => String((await replayer.backlog(control)).total);
      await waitForQuiet(position, opts.settleMs, 120_000, opts.signal);
    }
    const relations = store
      .captures()
      .flatMap((c) => [qualified(c.schema, c.name), qualified(PGFERRY_SCHEMA, c.logTable)]);
    freeze.sessionsEnded = await stopWriters(control, freeze, relations);
    step('writers stopped');
    log.info({ sessionsEnded: freeze.sessionsEnded }, 'no write in flight on the source');

    const drained = await drain(replayer, control, opts.signal);
    step('drained');
    log.info({ changes: drained }, 'change log drained to empty');

    const result = await withClient(opts.target, 'index', async (target) => {
      const sequences = await syncSequences(control, target);
      step('sequences set');
      const views = await refreshMatviews(control, target);
      step('materialized views refreshed');
      return { sequences: sequences.length, views: views.length };
    });
    const notValid = (sql: string) => (FK.test(sql) ? sql.replace(/;\s*$/, ' NOT VALID;') : sql);
    const deferred = await createDeferred({
      target: opts.target,
      store,
      log,
      stage: 'cutover',
      concurrency: 1,
      signal: opts.signal,
      errorCode: 'PGFERRY_CUTOVER_FAILED',
      transform: notValid,
      // NOT VALID foreign keys on partitioned tables arrive only in PostgreSQL 18: plain there.
      fallbackOn: ['0A000', '42809'],
    });
    step('constraints and triggers created');
    const report = await verify({
      source: opts.source,
      target: opts.target,
      filter: opts.filter,
      checksums: opts.verify === 'checksums',
      jobs: opts.jobs,
    });
    if (!report.equal) {
      const bad = report.tables.filter((t) => !t.equal).map((t) => t.table);
      throw new PgferryError(
        'PGFERRY_CUTOVER_FAILED',
        `verification found differences in ${bad.join(', ')}`,
        {
          side: 'target',
        },
      );
    }
    step('verified');
    const verified = { checksums: report.checksums, equal: report.equal, tables: report.tables.length };
    // The point of no return: the target is ready for writes.
    const downtimeSeconds = (Date.now() - started) / 1000;
    store.setMeta('cutover_downtime_seconds', String(downtimeSeconds));
    step('target ready');
    store.event('info', 'cutover', `target ready: write downtime ${downtimeSeconds.toFixed(2)}s`);
    log.info({ downtimeSeconds }, 'target ready for writes');
    return await finish(opts, freeze, {
      downtimeSeconds,
      changesDrained: drained,
      sequences: result.sequences,
      materializedViews: result.views,
      deferredObjects: deferred,
      verify: verified,
      steps,
      completedInterrupted: interrupted !== null,
    });
  } catch (err) {
    const record = readCutoverRecord(store);
    // A lost connection keeps the freeze: cutover() waits the outage out and completes.
    if (isConnectionLoss(err) && !opts.signal.aborted) throw err;
    if (freeze && record && !pastNoReturn(record) && store.phase() !== 'done') {
      throw await giveWritesBack(opts, control, record, err);
    }
    throw err;
  } finally {
    await control.end().catch(() => {});
  }
}

/** After the target was declared ready: foreign keys validated, the run done, the target's mark removed. */
async function finish(
  opts: CutoverOptions,
  freeze: FreezeRecord,
  done: Omit<CutoverResult, 'freeze' | 'frozenAt' | 'sessionsEnded' | 'foreignKeysValidated'>,
): Promise<CutoverResult> {
  const { store } = opts;
  const validated = await validateForeignKeys(opts, store);
  store.setPhase('done');
  store.finishPhase('cutover');
  store.finishPhase('done');
  await withClient(opts.target, 'control', dropRunMark);
  return {
    downtimeSeconds: done.downtimeSeconds,
    freeze: freeze.method,
    frozenAt: freeze.startedAt,
    sessionsEnded: freeze.sessionsEnded ?? 0,
    changesDrained: done.changesDrained,
    sequences: done.sequences,
    materializedViews: done.materializedViews,
    deferredObjects: done.deferredObjects,
    foreignKeysValidated: validated,
    verify: done.verify,
    steps: done.steps,
    completedInterrupted: done.completedInterrupted,
  };
}

/**
 * A cutover that failed before the target was ready gives the source its writes back, removes
 * what it created on the target, and replication goes on. If that fails (a server unreachable),
 * the record stays: every command then reports the interrupted cutover and `cutover --abort`
 * finishes the undo.
 */
async function giveWritesBack(
  opts: CutoverOptions,
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
  log.error({ err: why }, 'cutover failed: writes on the source were given back; replication goes on');
  if (
    isPgferryError(err) &&
    (err.code === 'PGFERRY_CUTOVER_FAILED' || err.code === 'PGFERRY_RUN_CANCELLED')
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
async function undoCutover(
  control: pg.Client,
  opts: Pick<CutoverOptions, 'source' | 'target' | 'store' | 'log'>,
  record: CutoverRecord,
): Promise<void> {
  await unfreezeWrites(control, opts.source, record.freeze);
  await undoOnTarget(opts.target, opts.store, opts.log);
  clearCutoverRecord(opts.store);
  opts.store.setPhase('replicating');
}

/**
 * Replay goes on after a cutover that did not go through: the foreign keys and user triggers it
 * created on the target go (see cutover-undo.ts). Until they are gone the cutover stays recorded
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

async function validateForeignKeys(opts: CutoverOptions, store: CheckpointStore): Promise<number> {
  const fks = store.schemaObjects('cutover').filter((o) => o.kind === 'FK CONSTRAINT');
  let n = 0;
  await withClient(opts.target, 'index', async (target) => {
    for (const fk of fks) {
      const m = FK.exec(fk.sql);
      if (!m) continue;
      await q(target, 'target', `ALTER TABLE ${m[1]} VALIDATE CONSTRAINT ${m[2]}`, [], fk.name);
      n++;
    }
  });
  opts.log.info({ foreignKeys: n }, 'foreign keys validated');
  return n;
}

/** The cutover's operator settings (flags, environment, POST /cutover body). */
export type CutoverSettings = Pick<
  CutoverOptions,
  'freeze' | 'maxLagSeconds' | 'force' | 'settleMs' | 'verify'
>;

export const DEFAULT_CUTOVER: CutoverSettings = {
  freeze: 'readonly',
  maxLagSeconds: 5,
  force: false,
  settleMs: 2000,
  verify: 'counts',
};
