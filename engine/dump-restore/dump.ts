// The dump of `pgferry dump-restore`: the schema once (pg_dump -Fd --schema-only), then each
// table's data in a directory of its own (pg_dump -Fd --data-only --table), `jobs` at a time, all
// in one exported snapshot that pgferry holds for the dump's length: the per-table dumps are as
// consistent as one pg_dump -j. A dump that dies halfway (a dropped link) keeps every table dumped
// completely; running it again dumps the rest in a new snapshot. The consistency rule: with
// writes stopped on the source, any mix of snapshots is the same database; with writes going on,
// tables dumped in different snapshots may disagree (a row in one, its parent's change not in the
// other), which the run says, and the verification afterwards shows.
import fs from 'node:fs';
import PQueue from 'p-queue';
import { crashPoint } from '../../lib/crash-point.js';
import { PgferryError, redact } from '../../lib/errors.js';
import { ExportedSnapshot } from '../copy/snapshot.js';
import { copyUnits, displayName, type TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { DUMP_FLAGS, exactPattern, lostConnection, type PgTool, runAgainst } from '../shared/pg-tools.js';
import type { Progress } from './progress.js';
import type { Workdir } from './workdir.js';

const COMMON = ['--format=directory', ...DUMP_FLAGS];

export interface DumpOptions {
  pgDump: PgTool;
  source: ConnInfo;
  jobs: number;
  selected: TableInfo[];
  excluded: TableInfo[];
  signal: AbortSignal;
  progress: Progress;
  log: (level: 'info' | 'warn', message: string) => void;
}

async function pgDump(opts: DumpOptions, args: string[], what: string): Promise<void> {
  const res = await runAgainst(opts.pgDump, opts.source, args);
  if (res.code === 0) return;
  const message = redact(res.stderr.trim().split('\n').slice(-3).join(' | '));
  if (lostConnection(opts.pgDump, res)) {
    throw new PgferryError(
      'PGFERRY_SOURCE_CONNECT',
      `pg_dump lost the source while dumping ${what}: ${message}`,
      {
        side: 'source',
        hint: 'Run the same command again: what was dumped completely is kept.',
      },
    );
  }
  throw new PgferryError('PGFERRY_SCHEMA_DUMP_FAILED', `pg_dump of ${what} failed: ${message}`, {
    side: 'source',
  });
}

/** Dumps what the workdir's record says is not dumped yet. */
export async function dump(workdir: Workdir, opts: DumpOptions): Promise<void> {
  if (workdir.record.tables.length === 0) {
    // The plan: every table that holds rows (partitions, not their roots), biggest first.
    const units = copyUnits(opts.selected).sort((a, b) => b.bytes - a.bytes);
    workdir.update((r) => {
      r.tables = units.map((t, i) => ({
        name: displayName(t),
        schema: t.schema,
        table: t.name,
        dir: `data/${String(i + 1).padStart(5, '0')}`,
        bytes: t.bytes,
        dumped: false,
        restored: false,
      }));
    });
  }
  const record = workdir.record;
  const todo = record.tables.filter((t) => !t.dumped);
  if (record.schemaDumped && todo.length === 0) return;
  const snapshot = await ExportedSnapshot.take(opts.source);
  try {
    if (record.snapshots.length > 0) {
      opts.log(
        'warn',
        `resuming the dump in a new snapshot: ${record.tables.length - todo.length} table(s) were dumped in an earlier one; consistent if writes to the source were stopped, else verify afterwards`,
      );
    }
    workdir.update((r) => r.snapshots.push(snapshot.id));
    const withSnapshot = [`--snapshot=${snapshot.id}`];
    if (!record.schemaDumped) {
      fs.rmSync(workdir.path('schema'), { recursive: true, force: true });
      await pgDump(
        opts,
        [
          ...COMMON,
          ...withSnapshot,
          '--schema-only',
          `--file=${workdir.path('schema')}`,
          ...opts.excluded.map((t) => `--exclude-table=${exactPattern(t.schema, t.name)}`),
        ],
        'the schema',
      );
      workdir.update((r) => {
        r.schemaDumped = true;
      });
      opts.log('info', 'schema dumped');
    }
    fs.mkdirSync(workdir.path('data'), { recursive: true });
    opts.progress.start(
      'dump',
      record.tables.length,
      record.tables.reduce((a, t) => a + t.bytes, 0),
    );
    for (const t of record.tables.filter((x) => x.dumped)) opts.progress.done(t.name, t.bytes, true);
    const queue = new PQueue({ concurrency: Math.max(1, opts.jobs) });
    let failure: unknown;
    for (const t of todo) {
      void queue.add(async () => {
        if (failure || opts.signal.aborted) return;
        try {
          // A table whose dump did not finish is dumped again from scratch.
          fs.rmSync(workdir.path(t.dir), { recursive: true, force: true });
          await pgDump(
            opts,
            [
              ...COMMON,
              ...withSnapshot,
              '--data-only',
              `--table=${exactPattern(t.schema, t.table)}`,
              `--file=${workdir.path(t.dir)}`,
            ],
            t.name,
          );
          workdir.update((r) => {
            r.tables.find((x) => x.dir === t.dir)!.dumped = true;
          });
          opts.progress.done(t.name, t.bytes);
          crashPoint('dump-restore:table-dumped');
        } catch (err) {
          failure ??= err;
        }
      });
    }
    await queue.onIdle();
    if (failure) throw failure;
    if (opts.signal.aborted) throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped during the dump');
  } finally {
    await snapshot.release();
  }
}
