// The restore of `pgferry dump-restore`, in the order a restore must go and resumable at each
// step: the schema's pre-data in one transaction (the extensions first, as pg_restore orders them;
// a schema the source's extensions live in, such as Heroku's heroku_ext, created beforehand; the
// COMMENT ON EXTENSION entries, which need the extension's owner, left out), then each table's data
// in a transaction of its own, `jobs` at a time, then the post-data (keys, indexes, constraints,
// triggers) with pg_restore -j. What committed is recorded in the workdir; after an interruption,
// a step not recorded is looked for on the target (a table with rows did commit, a pre-data whose
// tables exist did, an index or constraint that exists is left out), so nothing is restored twice.

import PQueue from 'p-queue';
import type pg from 'pg';
import { crashPoint, delayPoint } from '../../lib/crash-point.js';
import { PgferryError, redact } from '../../lib/errors.js';
import { qualified, quoteIdent } from '../../lib/sql.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q } from '../shared/db.js';
import { lostConnection, type PgTool, runAgainst } from '../shared/pg-tools.js';
import type { Progress } from './progress.js';
import { parseToc, type TocEntry } from './toc.js';
import type { Workdir } from './workdir.js';

export interface RestoreOptions {
  pgRestore: PgTool;
  target: ConnInfo;
  dst: pg.Client;
  jobs: number;
  signal: AbortSignal;
  progress: Progress;
  /** Schemas to create before the pre-data (those the source's extensions live in). */
  extensionSchemas: string[];
  /** Extensions created beforehand at the target's version: the dump's CREATE EXTENSION left out. */
  extensionsCreated: string[];
  /** Triggers left out (pgferry's capture triggers, whose functions are not dumped): schema, "table trigger". */
  leaveOut: { schema: string; name: string }[];
  log: (level: 'info' | 'warn', message: string) => void;
}

async function pgRestore(opts: RestoreOptions, args: string[], what: string, list?: string): Promise<void> {
  const res = await runAgainst(
    opts.pgRestore,
    opts.target,
    ['--no-owner', '--no-acl', '--exit-on-error', ...args],
    {
      files: list === undefined ? undefined : { list },
    },
  );
  if (res.code === 0) return;
  const message = redact(res.stderr.trim().split('\n').slice(-4).join(' | '));
  if (lostConnection(opts.pgRestore, res)) {
    throw new PgferryError(
      'PGFERRY_TARGET_CONNECT',
      `pg_restore lost the target while restoring ${what}: ${message}`,
      {
        side: 'target',
        hint: 'Run the same command again: what was restored completely is kept.',
      },
    );
  }
  throw new PgferryError('PGFERRY_SCHEMA_APPLY_FAILED', `pg_restore of ${what} failed: ${message}`, {
    side: 'target',
  });
}

/** The TOC lines of the schema dump to restore, as a pg_restore list (-L). */
const listOf = (entries: TocEntry[]) => `${entries.map((e) => e.line).join('\n')}\n`;

export async function restore(workdir: Workdir, opts: RestoreOptions): Promise<void> {
  const { dst } = opts;
  const toc = parseToc(
    (await runAgainst(opts.pgRestore, opts.target, ['--list', workdir.path('schema')], { noDatabase: true }))
      .stdout,
  );
  if (!workdir.record.preDataRestored) await restorePreData(workdir, opts, toc);
  await restoreData(workdir, opts);
  if (!workdir.record.postDataRestored) {
    opts.progress.start('post-data');
    // pg_restore --section picks the post-data entries (comments on them included); those already
    // on the target (an interrupted restore built them) are left out.
    const left = new Set(opts.leaveOut.map((t) => `${t.schema}|${t.name}`));
    const missing = (await notOnTarget(dst, toc)).filter(
      (e) => !(e.type === 'TRIGGER' && left.has(`${e.schema}|${e.name}`)),
    );
    if (missing.length > 0)
      await pgRestore(
        opts,
        [
          '--section=post-data',
          `--jobs=${Math.max(1, opts.jobs)}`,
          '--use-list=$list',
          workdir.path('schema'),
        ],
        'keys, indexes and constraints',
        listOf(missing),
      );
    workdir.update((r) => {
      r.postDataRestored = true;
    });
    opts.log('info', `keys, indexes, constraints and triggers restored (${missing.length} objects)`);
  }
}

async function restorePreData(workdir: Workdir, opts: RestoreOptions, toc: TocEntry[]): Promise<void> {
  const { dst } = opts;
  opts.progress.start('restore');
  // A pre-data that committed before an interruption left its tables: done (one transaction).
  const firstTable = workdir.record.tables[0];
  if (firstTable) {
    const [row] = await q<{ there: boolean }>(dst, 'target', 'SELECT to_regclass($1) IS NOT NULL AS there', [
      qualified(firstTable.schema, firstTable.table),
    ]);
    if (row?.there) {
      workdir.update((r) => {
        r.preDataRestored = true;
      });
      return;
    }
  }
  for (const s of opts.extensionSchemas) await dst.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(s)}`);
  const pre = toc.filter(
    (e) =>
      // COMMENT ON EXTENSION needs the extension's owner, which RDS's master user is not.
      !(e.type === 'COMMENT' && e.name.startsWith('EXTENSION ')) &&
      !(e.type === 'SCHEMA' && opts.extensionSchemas.includes(e.name)) &&
      !(e.type === 'EXTENSION' && opts.extensionsCreated.includes(e.name)),
  );
  await pgRestore(
    opts,
    ['--section=pre-data', '--single-transaction', '--use-list=$list', workdir.path('schema')],
    'the schema (pre-data)',
    listOf(pre),
  );
  workdir.update((r) => {
    r.preDataRestored = true;
  });
  opts.log('info', `schema restored (${pre.length} objects)`);
}

async function restoreData(workdir: Workdir, opts: RestoreOptions): Promise<void> {
  const { dst } = opts;
  const tables = workdir.record.tables;
  opts.progress.start(
    'restore',
    tables.length,
    tables.reduce((a, t) => a + t.bytes, 0),
  );
  for (const t of tables.filter((x) => x.restored)) opts.progress.done(t.name, t.bytes, true);
  const queue = new PQueue({ concurrency: Math.max(1, opts.jobs) });
  let failure: unknown;
  for (const t of tables.filter((x) => !x.restored)) {
    void queue.add(async () => {
      if (failure || opts.signal.aborted) return;
      try {
        // One transaction per table: rows on the target mean its restore committed.
        const [row] = await q<{ rows: boolean }>(
          dst,
          'target',
          `SELECT EXISTS (SELECT 1 FROM ${qualified(t.schema, t.table)}) AS rows`,
        );
        if (!row?.rows) {
          await pgRestore(opts, ['--data-only', '--single-transaction', workdir.path(t.dir)], t.name);
          crashPoint('dump-restore:table-committed');
        }
        workdir.update((r) => {
          r.tables.find((x) => x.dir === t.dir)!.restored = true;
        });
        opts.progress.done(t.name, t.bytes);
        crashPoint('dump-restore:table-restored');
        await delayPoint('dump-restore:table-restored');
      } catch (err) {
        failure ??= err;
      }
    });
  }
  await queue.onIdle();
  if (failure) throw failure;
  if (opts.signal.aborted) throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped during the restore');
  workdir.update((r) => {
    r.dataRestored = true;
  });
}

/** Post-data entries whose object is not on the target yet (indexes, constraints, triggers, rules, policies by name). */
async function notOnTarget(dst: pg.Client, entries: TocEntry[]): Promise<TocEntry[]> {
  const rows = await q<{ kind: string; schema: string; name: string }>(
    dst,
    'target',
    `SELECT 'INDEX' AS kind, n.nspname AS schema, c.relname AS name FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I')
     UNION ALL SELECT 'CONSTRAINT', n.nspname, r.relname || ' ' || k.conname FROM pg_constraint k
       JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
     UNION ALL SELECT 'TRIGGER', n.nspname, r.relname || ' ' || t.tgname FROM pg_trigger t
       JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE NOT t.tgisinternal
     UNION ALL SELECT 'RULE', n.nspname, r.relname || ' ' || w.rulename FROM pg_rewrite w
       JOIN pg_class r ON r.oid = w.ev_class JOIN pg_namespace n ON n.oid = r.relnamespace
     UNION ALL SELECT 'POLICY', n.nspname, r.relname || ' ' || p.polname FROM pg_policy p
       JOIN pg_class r ON r.oid = p.polrelid JOIN pg_namespace n ON n.oid = r.relnamespace`,
  );
  const there = new Set(rows.map((r) => `${r.kind}|${r.schema}|${r.name}`));
  const kindOf: Record<string, string> = {
    INDEX: 'INDEX',
    CONSTRAINT: 'CONSTRAINT',
    'FK CONSTRAINT': 'CONSTRAINT',
    'CHECK CONSTRAINT': 'CONSTRAINT',
    TRIGGER: 'TRIGGER',
    RULE: 'RULE',
    POLICY: 'POLICY',
  };
  return entries.filter((e) => {
    const kind = kindOf[e.type];
    return !kind || !there.has(`${kind}|${e.schema}|${e.name}`);
  });
}
