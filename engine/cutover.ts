// The cutover: refuse unless replication is close; freeze writes on the source; drain the log
// to empty; set the target's sequences; refresh materialized views; create the deferred foreign
// keys (NOT VALID), triggers, rules and policies; verify; report the write downtime. Foreign keys
// are validated after the target is declared ready (validation only reads, and writes may go on).
// A failure before the target is ready gives the source its writes back and replication goes on.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../checkpoints/store.js';
import type { ConnInfo } from './conn-info.js';
import { connect, q, withClient } from './db.js';
import { createDeferred } from './deferred-objects.js';
import { isPgferryError, PgferryError, sqlstateOf } from './errors.js';
import {
  type FreezeMethod,
  type FreezeRecord,
  freezeWrites,
  unfreezeWrites,
  waitForQuiet,
  waitForSessionsGone,
} from './freeze.js';
import { refreshMatviews } from './matviews.js';
import type { Replayer } from './replay.js';
import { syncSequences } from './sequences.js';
import type { TableFilter } from './table-filter.js';
import { verify } from './verify.js';

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
}

export interface CutoverResult {
  downtimeSeconds: number;
  freeze: FreezeMethod;
  changesDrained: number;
  sequences: number;
  materializedViews: number;
  deferredObjects: number;
  foreignKeysValidated: number;
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

export async function cutover(opts: CutoverOptions): Promise<CutoverResult> {
  const { store, log, replayer } = opts;
  const control = await connect(opts.source, 'control');
  let frozen: FreezeRecord | undefined;
  try {
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
    const started = Date.now();
    frozen = await freezeWrites(control, opts.source, opts.freeze, tables);
    store.setMeta('cutover_freeze', JSON.stringify(frozen));
    log.info(
      { freeze: opts.freeze, sessionsEnded: frozen.sessionsEnded ?? 0 },
      'writes frozen on the source',
    );

    // Confirm writes have stopped. With readonly or revoke pgferry ended the writers' sessions
    // itself: once they are gone no write is in flight. With external, nothing new may reach
    // the log for the settle time.
    if (opts.freeze === 'external') {
      const position = async () => String((await replayer.backlog(control)).total);
      await waitForQuiet(position, opts.settleMs, 120_000, opts.signal);
    } else {
      await waitForSessionsGone(control, frozen);
    }
    const drained = await drain(replayer, control, opts.signal);
    log.info({ changes: drained }, 'change log drained to empty');

    const result = await withClient(opts.target, 'index', async (target) => {
      const sequences = await syncSequences(control, target);
      const views = await refreshMatviews(control, target);
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
    // The point of no return: the target is ready for writes.
    const downtimeSeconds = (Date.now() - started) / 1000;
    store.setMeta('cutover_downtime_seconds', String(downtimeSeconds));
    store.event('info', 'cutover', `target ready: write downtime ${downtimeSeconds.toFixed(2)}s`);
    log.info({ downtimeSeconds }, 'target ready for writes');

    const validated = await validateForeignKeys(opts, store);
    store.setPhase('done');
    store.finishPhase('cutover');
    store.finishPhase('done');
    return {
      downtimeSeconds,
      freeze: opts.freeze,
      changesDrained: drained,
      sequences: result.sequences,
      materializedViews: result.views,
      deferredObjects: deferred,
      foreignKeysValidated: validated,
    };
  } catch (err) {
    if (frozen && store.phase() !== 'done') {
      await unfreezeWrites(control, opts.source, frozen).catch((e) =>
        log.error({ err: (e as Error).message }, 'could not give the source its writes back: do it by hand'),
      );
      store.setMeta('cutover_freeze', '');
      store.setPhase('replicating');
      const why = isPgferryError(err) ? err.message : String((err as Error)?.message ?? err);
      store.event('error', 'cutover', `cutover failed, writes given back to the source: ${why}`);
      log.error({ err: why }, 'cutover failed: writes on the source were given back; replication goes on');
      if (isPgferryError(err) && err.code === 'PGFERRY_CUTOVER_FAILED') throw err;
      throw new PgferryError('PGFERRY_CUTOVER_FAILED', why, {
        side: isPgferryError(err) ? err.side : undefined,
        sqlstate: isPgferryError(err) ? err.sqlstate : sqlstateOf(err),
        cause: err,
      });
    }
    throw err;
  } finally {
    await control.end().catch(() => {});
  }
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
