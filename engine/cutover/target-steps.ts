// The cutover's work on the target once the log is drained: sequences set to at least the
// source's values, materialized views refreshed, the deferred foreign keys (NOT VALID), triggers,
// rules and policies created, then both sides verified; after the target is declared ready, the
// foreign keys validated (validation only reads, and writes may go on meanwhile).
import type pg from 'pg';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { createDeferred } from '../schema/deferred-objects.js';
import { refreshMatviews } from '../schema/matviews.js';
import { syncSequences } from '../schema/sequences.js';
import { displayName, type TableInfo } from '../shared/catalog.js';
import { q, withClient } from '../shared/db.js';
import { verify } from '../verify/verify.js';
import type { CutoverOptions, CutoverResult } from './cutover.js';
import type { CutoverStep } from './freeze-record.js';
import { differences, provenByLedger, type VerifiedPoint } from './verified-point.js';

const FK =
  /^ALTER TABLE (?:ONLY )?((?:"(?:[^"]|"")*"|[^\s."]+)\.(?:"(?:[^"]|"")*"|[^\s."]+))\s+ADD CONSTRAINT ((?:"(?:[^"]|"")*"|[^\s"]+)) FOREIGN KEY/;

/** Sequences, materialized views and the deferred objects, each step recorded through `step` as it completes. */
export async function prepareTarget(
  opts: CutoverOptions,
  control: pg.Client,
  target: pg.Client,
  step: (done: CutoverStep) => void,
): Promise<Pick<CutoverResult, 'sequences' | 'materializedViews' | 'deferredObjects'>> {
  const { store, log } = opts;
  const sequences = await syncSequences(control, target);
  step('sequences set');
  const views = await refreshMatviews(control, target);
  step('materialized views refreshed');
  const result = { sequences: sequences.length, views: views.length };
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
  return { sequences: result.sequences, materializedViews: result.views, deferredObjects: deferred };
}

/**
 * The verification before the target is declared ready: any difference fails the cutover. With a
 * verified point, the tables its ledger proves equal are not counted again (verified-point.ts).
 */
export async function verifyTarget(
  opts: CutoverOptions,
  point: VerifiedPoint | null,
  tables: TableInfo[],
): Promise<NonNullable<CutoverResult['verify']>> {
  let proven = 0;
  const report = await verify({
    source: opts.source,
    target: opts.target,
    filter: opts.filter,
    tables,
    checksums: opts.verify === 'checksums',
    jobs: opts.jobs,
    known: point
      ? (t) => {
          const v = provenByLedger(point, t);
          if (v) proven++;
          const d = v ? null : point.ledger.delta(t);
          if (d && d.source !== d.target)
            opts.log.warn(
              { table: displayName(t), sourceChange: d.source, targetChange: d.target },
              'row count changes since the verified point differ: the table is counted in full',
            );
          return v;
        }
      : undefined,
  });
  if (!report.equal) throw differences(report);
  return {
    checksums: report.checksums,
    equal: report.equal,
    tables: report.tables.length,
    counted: report.tables.length - proven,
  };
}

export async function validateForeignKeys(opts: CutoverOptions, store: CheckpointStore): Promise<number> {
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
