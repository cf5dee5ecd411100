// `pgferry dump-restore`: pg_dump and pg_restore with the checks, progress and resumability they
// lack, for databases small enough to move during a downtime window. The steps: preflight
// (preflight.ts: migrate's checks for a copy, plus pg_restore and the extensions), the dump
// (dump.ts) and the restore (restore.ts) through a work directory that makes both resumable
// (workdir.ts), or --stream (stream.ts: pg_dump -Fc piped into pg_restore, no directory); then
// the finish: sequences set to the source's positions, materialized views refreshed, and the
// tables counted on both sides (engine/verify).
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { readIdentity, refuseSameDatabase } from '../run/identity.js';
import { refreshMatviews } from '../schema/matviews.js';
import { syncSequences } from '../schema/sequences.js';
import { splitTables } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, q } from '../shared/db.js';
import type { TableFilter } from '../shared/table-filter.js';
import { type VerifyReport, verify } from '../verify/verify.js';
import { dump } from './dump.js';
import { createExtensions, type DumpRestorePreflight, dumpRestorePreflight } from './preflight.js';
import { Progress, type ProgressEvent } from './progress.js';
import { restore } from './restore.js';
import { streamDump } from './stream.js';
import { type ServerMark, sameServer, Workdir } from './workdir.js';

export interface DumpRestoreOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  jobs: number;
  /** The work directory (resumable); null with stream. */
  workdir: string | null;
  stream: boolean;
  /** Create extensions the target has only at another version at that version (and say so). */
  adaptExtensions: boolean;
  signal: AbortSignal;
  log: (level: 'info' | 'warn', message: string, data?: Record<string, unknown>) => void;
  onProgress?: (e: ProgressEvent) => void;
}

export interface DumpRestoreResult {
  resumed: boolean;
  tables: number;
  bytes: number;
  seconds: number;
  sequences: number;
  materializedViews: number;
  /** Extensions created at the target's version, not the source's. */
  adaptedExtensions: { name: string; from: string; to: string }[];
  /** The dump was taken in more than one snapshot (resumed): consistent only if writes were stopped. */
  snapshots: number;
  preflight: DumpRestorePreflight;
  verify: VerifyReport;
}

const markOf = (i: {
  systemIdentifier: string | null;
  databaseOid: number;
  databaseName: string;
}): ServerMark => ({
  systemIdentifier: i.systemIdentifier,
  databaseOid: i.databaseOid,
  databaseName: i.databaseName,
});

export async function dumpRestore(opts: DumpRestoreOptions): Promise<DumpRestoreResult> {
  const started = Date.now();
  const progress = new Progress(opts.onProgress);
  const src = await connect(opts.source, 'control');
  let dst: pg.Client | undefined;
  let unlock: (() => void) | undefined;
  try {
    dst = await connect(opts.target, 'control');
    const [sourceId, targetId] = await Promise.all([
      readIdentity(src, opts.source),
      readIdentity(dst, opts.target),
    ]);
    refuseSameDatabase(sourceId, targetId);
    const before = opts.workdir ? Workdir.existing(opts.workdir, markOf(sourceId)) : null;
    // The target of a resumed restore is the one it started with, and may hold what it restored.
    const resumingTarget = before?.record.target ? sameServer(before.record.target, markOf(targetId)) : false;
    if (before?.record.target && !resumingTarget) {
      throw new PgferryError(
        'PGFERRY_STATE_MISMATCH',
        `${before.dir} was being restored into database ${before.record.target.databaseName} of another server than --target`,
        { side: 'state', hint: 'Use the same --target, or a new --workdir for this one.' },
      );
    }
    progress.start('preflight');
    const report = await dumpRestorePreflight({ ...opts, src, dst, targetMayHoldRestore: resumingTarget });
    for (const w of report.warnings) opts.log('warn', `${w.message} (${w.fix})`, { code: w.code });
    const { selected, excluded } = await splitTables(src, opts.filter);
    // Made (or taken) only once preflight passed: a refused run leaves no directory behind.
    const opened = opts.workdir ? Workdir.open(opts.workdir, markOf(sourceId)) : null;
    const workdir = opened?.workdir ?? null;
    unlock = workdir?.lock();
    let adapted: DumpRestoreResult['adaptedExtensions'] = workdir?.record.adaptedExtensions ?? [];
    if (!workdir?.record.preDataRestored) {
      adapted = await createExtensions(dst, report.extensions);
      for (const a of adapted)
        opts.log(
          'warn',
          `extension ${a.name} created at the target's version ${a.to} (the source has ${a.from})`,
        );
    }
    const extensionSchemas = report.extensionSchemas;
    // Change capture triggers of pgferry runs on the source call functions in the pgferry
    // schema, which is not dumped: their triggers are left out of the restore.
    const captureTriggers = await q<{ schema: string; name: string; trigger: string }>(
      src,
      'source',
      `SELECT n.nspname AS schema, c.relname || ' ' || t.tgname AS name, t.tgname AS trigger
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE p.pronamespace::regnamespace::text = 'pgferry' AND t.tgparentid = 0`,
    );
    if (workdir) {
      const pgDump = report.pgDump!;
      await dump(workdir, {
        pgDump,
        source: opts.source,
        jobs: opts.jobs,
        selected,
        excluded,
        signal: opts.signal,
        progress,
        log: opts.log,
      });
      workdir.update((r) => {
        r.target = markOf(targetId);
        if (adapted.length > 0) r.adaptedExtensions = adapted;
      });
      await restore(workdir, {
        pgRestore: report.pgRestore!,
        target: opts.target,
        dst,
        jobs: opts.jobs,
        signal: opts.signal,
        progress,
        extensionSchemas,
        extensionsCreated: report.extensions.map((e) => e.name),
        leaveOut: captureTriggers,
        log: opts.log,
      });
    } else {
      await streamDump({
        pgDump: report.pgDump!,
        pgRestore: report.pgRestore!,
        source: opts.source,
        target: opts.target,
        dst,
        excluded,
        extensionSchemas,
        leaveOut: captureTriggers,
        progress,
        log: opts.log,
      });
    }
    progress.start('finish');
    const sequences = await syncSequences(src, dst);
    const views = await refreshMatviews(src, dst);
    opts.log(
      'info',
      `sequences set (${sequences.length}), materialized views refreshed (${views.length}); counting rows on both sides`,
    );
    const report2 = await verify({
      source: opts.source,
      target: opts.target,
      filter: opts.filter,
      checksums: false,
      jobs: opts.jobs,
    });
    workdir?.update((r) => {
      r.finishedAt = new Date().toISOString();
    });
    progress.start('done');
    const bytes = workdir
      ? workdir.record.tables.reduce((a, t) => a + t.bytes, 0)
      : Number(
          (await q<{ n: string }>(src, 'source', 'SELECT pg_database_size(current_database())::text AS n'))[0]
            ?.n ?? 0,
        );
    return {
      resumed: opened?.resumed ?? false,
      tables: workdir ? workdir.record.tables.length : selected.filter((t) => t.kind === 'r').length,
      bytes,
      seconds: (Date.now() - started) / 1000,
      sequences: sequences.length,
      materializedViews: views.length,
      adaptedExtensions: adapted,
      snapshots: workdir?.record.snapshots.length ?? 1,
      preflight: report,
      verify: report2,
    };
  } finally {
    unlock?.();
    await Promise.all([src.end().catch(() => {}), dst?.end().catch(() => {})]);
  }
}
