// Copy benchmark: pgferry's `migrate --copy-only` against psql COPY pipes (binary and text) and, for
// the whole clone, against `pg_dump -Fd -j` + `pg_restore -j` and `pgcopydb clone`, on the same
// data, same parallelism, same pair of throwaway clusters. Each round runs them all, in an order
// rotated from round to round so that none always goes first; the tables show medians.
// Run on its own, prints a markdown table and writes bench/results/copy-<date>.json; `copyBench` is
// also called by bench/index.ts (`npm run bench`).
//
//   npm run bench:copy -- [--rows N] [--quick] [--rounds N]
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, requireBuiltCli, wholeNumber, withCleanup, writeResults } from './cli.js';
import { ActivitySampler } from './clone-activity.js';
import { dumpScript, restoreScript, runDumpRestore } from './clone-dump-restore.js';
import { ensurePgcopydb, pgcopydbArgs, runPgcopydb, writePgpass } from './clone-pgcopydb.js';
import {
  type BenchSummary,
  type CopyBenchResult,
  markdown,
  type PgcopydbVariant,
  type Sampled,
  summarize,
} from './copy-report.js';
import {
  BENCH_TABLES,
  loadDataset,
  type TableDigest,
  tableDigests,
  tableSizes,
  wideRowsFor,
} from './dataset.js';
import { PGFERRY_COMMAND, type PgferryRun, runPgferry } from './pgferry-run.js';
import {
  bash,
  type Endpoint,
  PG_BIN,
  type PipeRun,
  pipeScript,
  runPipes,
  schemaScript,
  streamBytes,
} from './pipe.js';

export const DEFAULT_ROWS = 3_000_000;
export const QUICK_ROWS = 100_000;
const JOBS = 2;
/** pgcopydb's same-table split threshold in the split variant: pgferry's default chunk size. */
const PGCOPYDB_SPLIT = '128MB';

export interface CopyBenchOptions {
  /** Rows of `accounts`; `wide` gets a fifth as many. */
  accountsRows: number;
  rounds: number;
  quick: boolean;
  /** apt-get install pgcopydb when it is missing (else its runs are skipped, and the JSON says why). */
  installPgcopydb: boolean;
  say?: (msg: string) => void;
}

async function sql(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

/**
 * Before a timed run: CHECKPOINT, then sync(1) (the clusters run with fsync off, so the kernel's
 * dirty pages are what is left), so that no run pays for the writeback of the previous one's data.
 */
async function settle(...urls: string[]): Promise<void> {
  await Promise.all(urls.map((u) => sql(u, 'CHECKPOINT')));
  execFileSync('sync');
}

/** Never report figures for a broken clone: rows, content, primary key and index count, per table. */
async function assertClone(who: string, source: Map<string, TableDigest>, targetUrl: string): Promise<void> {
  const target = await tableDigests(targetUrl).catch((err: Error) => {
    throw new Error(`${who}'s clone cannot be read: ${err.message}`);
  });
  for (const table of BENCH_TABLES) {
    const s = source.get(table)!;
    const t = target.get(table);
    if (!t || t.rows !== s.rows || t.hash !== s.hash || !t.primaryKey || t.indexes !== s.indexes) {
      throw new Error(
        `${who}'s clone of ${table} differs: source ${JSON.stringify(s)}, target ${JSON.stringify(t)}`,
      );
    }
  }
}

const RUNS = ['binary', 'text', 'pgferry', 'dump-restore', 'pgcopydb', 'pgcopydb-split'] as const;
type RunKind = (typeof RUNS)[number];

/** Runs the whole copy benchmark on a pair of clusters of its own, always torn down. */
export async function copyBench(
  opts: CopyBenchOptions,
): Promise<{ result: CopyBenchResult; summary: BenchSummary; markdown: string }> {
  const { accountsRows, rounds } = opts;
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-'));
  const clusters: Cluster[] = [];
  const cleanup = async () => {
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  return withCleanup(say, 'the clusters', cleanup, run);

  async function run(): Promise<{ result: CopyBenchResult; summary: BenchSummary; markdown: string }> {
    const pgcopydbTool = ensurePgcopydb(say, { install: opts.installPgcopydb });
    if (!pgcopydbTool.available) say(`pgcopydb unavailable (${pgcopydbTool.reason}); carrying on without it`);
    say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    await Promise.all([src.query('CREATE DATABASE bench'), dst.query('CREATE DATABASE bench_pipe')]);
    const srcUrl = src.url({ db: 'bench' });
    const dstUrl = dst.url({ db: 'bench' });
    const pipeUrl = dst.url({ db: 'bench_pipe' });

    say(
      `loading ${accountsRows.toLocaleString('en-US')} accounts and ${wideRowsFor(accountsRows).toLocaleString('en-US')} wide rows`,
    );
    const t0 = performance.now();
    await loadDataset(srcUrl, accountsRows);
    const sizes = await tableSizes(srcUrl);
    const sourceDigests = await tableDigests(srcUrl);
    say(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s:`);
    for (const t of sizes) {
      say(
        `  ${t.table}: ${t.rows.toLocaleString('en-US')} rows, heap ${(t.heapBytes / 1e6).toFixed(1)} MB, ` +
          `with indexes ${(t.totalBytes / 1e6).toFixed(1)} MB, ~${t.avgRowBytes} B/row`,
      );
    }

    // The pipes' target: pre-data only (no primary key, no index), like pgferry's during its copy.
    const passwords = { SRC_PW: SUPERUSER_PASSWORD, DST_PW: SUPERUSER_PASSWORD };
    const srcEnd: Endpoint = { port: src.port, user: 'postgres', db: 'bench', passwordVar: 'SRC_PW' };
    const pipeEnd: Endpoint = { port: dst.port, user: 'postgres', db: 'bench_pipe', passwordVar: 'DST_PW' };
    await bash(schemaScript(srcEnd, pipeEnd), passwords);
    const emptyPipeTarget = () => sql(pipeUrl, `TRUNCATE ${BENCH_TABLES.join(', ')}`);

    const expected = new Map(sizes.map((t) => [t.table, t.rows]));
    const pipeRuns: Record<'binary' | 'text', PipeRun[]> = { binary: [], text: [] };
    const pgferryRuns: Sampled<PgferryRun>[] = [];
    const loadAverages: number[] = [];
    const schedule: CopyBenchResult['machine']['schedule'] = [];
    let current = { round: 0, run: '' };
    /** Just before a timed run: when it starts and how busy the machine is (other work shows here). */
    const noteStart = () => {
      const loadAverage1m = os.loadavg()[0]!;
      loadAverages.push(loadAverage1m);
      schedule.push({ ...current, startedAt: new Date().toISOString(), loadAverage1m });
    };

    // Whole-clone peers: each into an empty database of its own on the target cluster, created
    // before and dropped after every run (untimed).
    const restoreEnd: Endpoint = { ...pipeEnd, db: 'bench_restore' };
    const dumpRestoreRuns: CopyBenchResult['dumpRestore']['runs'] = [];
    const pgpassFile = path.join(workDir, 'pgpass');
    writePgpass(pgpassFile, [
      { port: src.port, user: 'postgres', password: SUPERUSER_PASSWORD },
      { port: dst.port, user: 'postgres', password: SUPERUSER_PASSWORD },
    ]);
    const pgcopydbEnds = {
      src: { port: src.port, user: 'postgres', db: 'bench' },
      dst: { port: dst.port, user: 'postgres', db: 'bench_pgcopydb' },
    };
    const pgcopydbVariants: Record<'pgcopydb' | 'pgcopydb-split', PgcopydbVariant & { split?: string }> = {
      pgcopydb: { label: 'pgcopydb clone', commandLine: '', runs: [], failures: [] },
      'pgcopydb-split': {
        label: `pgcopydb clone --split-tables-larger-than ${PGCOPYDB_SPLIT}`,
        split: PGCOPYDB_SPLIT,
        commandLine: '',
        runs: [],
        failures: [],
      },
    };
    const runKinds = RUNS.filter((k) => pgcopydbTool.available || !k.startsWith('pgcopydb'));

    /** An empty database on the target, a settled machine, and a sampler for the run that follows. */
    const prepareClone = async (db: string) => {
      await dst.query(`DROP DATABASE IF EXISTS ${db}`);
      await dst.query(`CREATE DATABASE ${db}`);
      await settle(srcUrl, dst.url({ db }));
      noteStart();
      return ActivitySampler.start([
        { name: 'source', url: srcUrl, db: 'bench' },
        { name: 'target', url: dst.url({ db }), db },
      ]);
    };

    for (let round = 0; round < rounds; round++) {
      const order: RunKind[] = runKinds.map((_, i) => runKinds[(i + round) % runKinds.length]!);
      for (const kind of order) {
        const tag = `round ${round + 1}/${rounds}`;
        current = { round: round + 1, run: kind };
        if (kind === 'pgferry') {
          const sampler = await prepareClone('bench');
          say(`${tag}: pgferry migrate --copy-only --jobs ${JOBS}`);
          const run = await runPgferry({
            sourceUrl: srcUrl,
            targetUrl: dstUrl,
            stateFile: path.join(workDir, `state-${round}.sqlite`),
            jobs: JOBS,
            workDir,
          }).finally(() => sampler.stop());
          const activity = await sampler.stop();
          say(
            `  copy ${run.phases.copy.toFixed(2)} s, whole clone ${run.wallSeconds.toFixed(2)} s; verifying`,
          );
          await assertClone('pgferry', sourceDigests, dstUrl);
          pgferryRuns.push({ ...run, activity });
        } else if (kind === 'dump-restore') {
          const sampler = await prepareClone(restoreEnd.db);
          say(`${tag}: pg_dump -Fd -j ${JOBS} + pg_restore -j ${JOBS}`);
          const run = await runDumpRestore({
            src: srcEnd,
            dst: restoreEnd,
            jobs: JOBS,
            dir: path.join(workDir, `dump-${round}`),
            passwords,
          }).finally(() => sampler.stop());
          const activity = await sampler.stop();
          say(
            `  dump ${run.dumpSeconds.toFixed(2)} s + restore ${run.restoreSeconds.toFixed(2)} s; verifying`,
          );
          await assertClone('pg_dump + pg_restore', sourceDigests, dst.url({ db: restoreEnd.db }));
          await dst.query(`DROP DATABASE ${restoreEnd.db}`);
          dumpRestoreRuns.push({ ...run, activity });
        } else if (kind === 'pgcopydb' || kind === 'pgcopydb-split') {
          const variant = pgcopydbVariants[kind];
          const dir = path.join(workDir, `${kind}-${round}`);
          const args = pgcopydbArgs({
            ...pgcopydbEnds,
            jobs: JOBS,
            dir,
            splitTablesLargerThan: variant.split,
          });
          variant.commandLine =
            `PGPASSFILE=<tmp>/pgpass PG_CONFIG=${PG_BIN}/pg_config PATH=${PG_BIN}:$PATH ` +
            `pgcopydb ${args.join(' ').replaceAll(dir, `<tmp>/${kind}-<round>`).replaceAll(workDir, '<tmp>')}`;
          const sampler = await prepareClone(pgcopydbEnds.dst.db);
          say(`${tag}: ${variant.label} --table-jobs ${JOBS} --index-jobs ${JOBS}`);
          try {
            const run = await runPgcopydb(args, pgpassFile, dir).finally(() => sampler.stop());
            const activity = await sampler.stop();
            say(`  ${run.seconds.toFixed(2)} s; verifying`);
            await assertClone(variant.label, sourceDigests, dst.url({ db: pgcopydbEnds.dst.db }));
            variant.runs.push({ ...run, activity });
          } catch (err) {
            // A peer's failure is recorded and left out of the figures; the bench carries on.
            const msg = err instanceof Error ? err.message : String(err);
            say(`  FAILED, left out of the figures: ${msg.split('\n')[0]}`);
            variant.failures.push(msg);
          }
          await dst.query(`DROP DATABASE IF EXISTS ${pgcopydbEnds.dst.db}`);
        } else {
          await settle(srcUrl, pipeUrl);
          noteStart();
          say(`${tag}: psql pipe, ${kind}: ${BENCH_TABLES.length} tables at once`);
          const run = await runPipes(BENCH_TABLES, kind, srcEnd, pipeEnd, passwords);
          for (const t of run.tables) {
            if (t.rows !== expected.get(t.table)) {
              throw new Error(
                `${kind} pipe wrote ${t.rows} rows into ${t.table}, expected ${expected.get(t.table)}`,
              );
            }
          }
          say(`  ${run.seconds.toFixed(2)} s`);
          await emptyPipeTarget();
          pipeRuns[kind].push(run);
        }
      }
    }
    await dst.query('DROP DATABASE bench_pipe');

    say('counting the bytes of each COPY stream (untimed)');
    const pipes: CopyBenchResult['pipes'] = [];
    for (const format of ['binary', 'text'] as const) {
      const bytesPerTable = await streamBytes(BENCH_TABLES, format, srcEnd, passwords);
      pipes.push({
        format,
        runs: pipeRuns[format],
        bytes: Object.values(bytesPerTable).reduce((a, b) => a + b, 0),
        bytesPerTable,
        commandLines: BENCH_TABLES.map((t) => pipeScript(t, format, srcEnd, pipeEnd)),
      });
    }

    const last = pgferryRuns[pgferryRuns.length - 1]!;
    const sameFormat = last.tables.map((t) => {
      const pipe = pipes.find((p) => p.format === t.format)!;
      return `${t.table} ${t.format}: pgferry ${t.bytes} vs pipe ${pipe.bytesPerTable[t.table]}`;
    });
    const [ver] = (await sql(srcUrl, 'SHOW server_version')).rows as { server_version: string }[];
    const date = new Date().toISOString().slice(0, 10);
    const result: CopyBenchResult = {
      date,
      scale: { accountsRows, wideRows: wideRowsFor(accountsRows), quick: opts.quick },
      rounds,
      machine: {
        ...hostFacts(),
        postgres: ver?.server_version ?? '?',
        loadAverage1mBeforeRuns: loadAverages,
        schedule,
      },
      jobs: JOBS,
      tables: sizes,
      pgferry: {
        runs: pgferryRuns,
        commandLine:
          `PGFERRY_SOURCE_URL=… PGFERRY_TARGET_URL=… ` +
          `${last.rssSource === 'gnu-time' ? '/usr/bin/time -v -o <tmp>/gnu-time.txt ' : ''}` +
          `${PGFERRY_COMMAND} ${last.args.join(' ').replace(workDir, '<tmp>')}`,
      },
      pipes,
      dumpRestore: {
        runs: dumpRestoreRuns,
        commandLines: [dumpScript(srcEnd, '<tmp>/dump', JOBS), restoreScript(restoreEnd, '<tmp>/dump', JOBS)],
      },
      pgcopydb: {
        tool: pgcopydbTool,
        variants: Object.values(pgcopydbVariants).map(({ split: _, ...v }) => v),
      },
      bytesNote:
        'Bytes: pgferry\'s from its "copy finished" log line; the pipes\' from a separate, untimed ' +
        '`COPY … TO STDOUT | wc -c` of each table in that format (pgferry sends one COPY per chunk, so each ' +
        `binary chunk adds its own 21-byte header and trailer): ${sameFormat.join('; ')}.`,
      verified:
        `Verified after every pgferry, pg_restore and pgcopydb run: row count, an order-independent hash of ` +
        `every row's text form, the primary key and the number of valid indexes are equal on both sides for ` +
        `${BENCH_TABLES.join(', ')} (a pgcopydb run that fails this is left out of the figures and listed ` +
        "under its variant's failures); every pipe's COPY row counts were checked.",
    };
    const summary = summarize(result);
    return { result, summary, markdown: markdown(result, summary) };
  }
}

// `npm run bench:copy`: this file run on its own.
if (isMain(import.meta.url)) {
  const { values: flags } = parseArgs({
    options: {
      rows: { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
    },
  });
  const quick = flags.quick ?? false;
  const accountsRows = wholeNumber('rows', flags.rows, quick ? QUICK_ROWS : DEFAULT_ROWS, 10);
  const rounds = wholeNumber('rounds', flags.rounds, quick ? 1 : 3);
  requireBuiltCli();
  try {
    // --quick never spends its time on apt: a missing pgcopydb is skipped (the JSON says so).
    const {
      result,
      summary,
      markdown: md,
    } = await copyBench({
      accountsRows,
      rounds,
      quick,
      installPgcopydb: !quick,
    });
    console.log(md);
    const suffix =
      accountsRows === DEFAULT_ROWS ? '' : quick && !flags.rows ? '-quick' : `-${accountsRows}rows`;
    writeResults('copy', result.date, suffix, { ...summary, ...result, markdown: md });
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
