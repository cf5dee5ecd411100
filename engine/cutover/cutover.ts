// The cutover: refuse unless replication is close; freeze writes on the source; drain the log
// to empty; set the target's sequences; refresh materialized views; create the deferred foreign
// keys (NOT VALID), triggers, rules and policies; verify; report the write downtime. Foreign keys
// are validated after the target is declared ready (validation only reads, and writes may go on).
// A failure before the target is ready gives the source its writes back and replication goes on.
// This module runs the steps in order and records each; the target's steps are in target-steps.ts,
// the giving back of writes (and `cutover --abort`) in give-back.ts. The folder uses the Replayer,
// engine/schema's deferred objects, sequences and matviews, engine/verify and engine/shared.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { allOrFirstError } from '../../lib/all-settled.js';
import { crashPoint } from '../../lib/crash-point.js';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { qualified } from '../../lib/sql.js';
import { recordCaptureLost } from '../capture/phase.js';
import type { Replayer } from '../replay/replay.js';
import { reverseInstalledAt, reverseRequested } from '../reverse/state.js';
import { dropRunMark } from '../run/identity.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, withClient } from '../shared/db.js';
import { DEFAULT_RETRY_FOR_MS, isConnectionLoss, OutageTracker, sideOf } from '../shared/outage.js';
import type { TableFilter } from '../shared/table-filter.js';
import { twoWayOf } from '../two-way/state.js';
import { DRAIN_WIDTH, drain } from './drain.js';
import {
  applyFreeze,
  type FreezeMethod,
  type FreezeRecord,
  planFreeze,
  stopWriters,
  waitForQuiet,
} from './freeze.js';
import {
  type CutoverStep,
  describeInterrupted,
  interruptedCutover,
  pastNoReturn,
  readCutoverRecord,
  writeCutoverRecord,
} from './freeze-record.js';
import { giveBackAfterOutage, giveWritesBack } from './give-back.js';
import { prepareReverse, unfreezeAfterRollback } from './reverse-steps.js';
import { prepareTarget, validateForeignKeys, verifyTarget } from './target-steps.js';
import { replicatedTables, takeVerifiedPoint, type VerifiedPoint } from './verified-point.js';

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
  verify: {
    checksums: boolean;
    equal: boolean;
    tables: number;
    /** Tables counted (or hashed) on both sides; the others were proven by the verified point's ledger. */
    counted: number;
  } | null;
  /** The steps this cutover completed, each with its time; none before where an interrupted one stopped. */
  steps: { step: CutoverStep; at: string }[];
  /** An interrupted cutover was completed (the counts cover only what was done now). */
  completedInterrupted: boolean;
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

async function cutoverOnce(opts: CutoverOptions): Promise<CutoverResult> {
  const { store, log, replayer } = opts;
  const control = await connect(opts.source, 'control');
  // Opened before anything is frozen: the target's steps do not wait for a connection.
  let target: pg.Client;
  try {
    target = await connect(opts.target, 'index');
  } catch (err) {
    await control.end().catch(() => {});
    throw err;
  }
  let freeze: FreezeRecord | undefined;
  const steps: CutoverResult['steps'] = [];
  let point: VerifiedPoint | null = null;
  // The drain applies every table's backlog at once (up to DRAIN_WIDTH, or --jobs if more).
  const drainWidth = Math.max(opts.jobs, Math.min(store.captures().length, DRAIN_WIDTH));
  // Each step is recorded in one transaction of the state file, with `also` (more writes) in it.
  const step = (done: CutoverStep, also?: () => void) => {
    store.atomically(() => {
      writeCutoverRecord(store, freeze!, done);
      store.event('info', 'cutover', `cutover: ${done}`);
      also?.();
    });
    steps.push({ step: done, at: new Date().toISOString() });
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
      if (twoWayOf(store)) {
        throw new PgferryError(
          'PGFERRY_CUTOVER_REFUSED',
          'a two-way run keeps both sides in service: it has no cutover',
          {
            side: 'state',
          },
        );
      }
      const joining = store.tableRequests({ states: ['pending', 'running'] });
      if (joining.length > 0) {
        throw new PgferryError(
          'PGFERRY_CUTOVER_REFUSED',
          `tables are still joining or leaving the migration: ${joining.map((r) => `tables ${r.action} ${r.pattern} (${r.step ?? r.state})`).join('; ')}`,
          {
            side: 'state',
            hint: 'Wait until `pgferry status` shows the table requests done, then cut over.',
          },
        );
      }
      const { lagSeconds } = await replayer.backlog(control);
      if (lagSeconds > opts.maxLagSeconds && !opts.force) {
        throw new PgferryError(
          'PGFERRY_CUTOVER_REFUSED',
          `replication lag is ${lagSeconds.toFixed(1)}s, above --max-lag ${opts.maxLagSeconds}s`,
          { side: 'source' },
        );
      }
      // Before the target takes writes, and before the freeze (installing costs no downtime).
      if (reverseRequested(store)) await prepareReverse(opts);
      // While the application still writes: the verified point (verified-point.ts), from which
      // only what changed is verified after the freeze; then a catch-up, so that what is left for
      // the freeze is a fraction of a second.
      if (opts.verify === 'counts') {
        point = await takeVerifiedPoint(opts);
        log.info({ tables: point.counts.size }, 'cutover: verified point taken (both sides counted)');
      }
      await replayer.catchUp();
      // The drain's sessions are opened now, and a second catch-up leaves the drain only what
      // is written while it runs.
      await replayer.warm(drainWidth);
      await replayer.catchUp(control, drainWidth);
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
    const relations = [
      ...store.captures().map((c) => qualified(c.schema, c.name)),
      ...replayer.changes.describe().relations,
    ];
    freeze.sessionsEnded = await stopWriters(control, freeze, relations);
    // A capture trigger disabled since the last heartbeat would leave its table short.
    const broken = await replayer.changes.removed(control);
    if (broken) {
      recordCaptureLost(store, broken);
      throw broken;
    }
    step('writers stopped');
    log.info({ sessionsEnded: freeze.sessionsEnded }, 'no write in flight on the source');
    // No schema change commits now either: the tables to verify are listed while the log drains.
    const listing = replicatedTables(opts);
    listing.catch(() => {});

    const drained = await drain(replayer, control, opts.signal, drainWidth);
    step('drained');
    log.info({ changes: drained }, 'change log drained to empty');

    // The verification reads while the target's objects are created (neither changes a row).
    const [prepared, verified] = await allOrFirstError([
      prepareTarget(opts, control, target, (done) => {
        step(done);
        log.info(`cutover: ${done}`);
      }),
      listing.then((tables) => verifyTarget(opts, point, tables)),
    ] as const);
    step('verified');
    log.info({ ...verified }, 'cutover: verified');
    if (reverseRequested(store) && !reverseInstalledAt(store)) await prepareReverse(opts);
    await unfreezeAfterRollback(target, opts.target, store);
    // The point of no return: the target is ready for writes.
    const downtimeSeconds = (Date.now() - started) / 1000;
    step('target ready', () => {
      store.setMeta('cutover_downtime_seconds', String(downtimeSeconds));
      store.event('info', 'cutover', `target ready: write downtime ${downtimeSeconds.toFixed(2)}s`);
    });
    log.info({ downtimeSeconds }, 'target ready for writes');
    return await finish(opts, freeze, {
      downtimeSeconds,
      changesDrained: drained,
      ...prepared,
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
    if (point) replayer.stopLedger();
    await Promise.all([control.end().catch(() => {}), target.end().catch(() => {})]);
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
