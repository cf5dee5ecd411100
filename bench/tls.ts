// TLS benchmark (issue 15, target 5): pgferry's copy and replay over plain TCP and over TLS, on the
// same pair of throwaway clusters, interleaved round by round, so that TLS's cost is the only
// difference. Both servers have a certificate signed by a throwaway CA (test/support/tls.ts) and a
// pg_hba.conf that accepts TLS and plain TCP alike; pgferry's URLs say sslmode=disable (plain) or
// sslmode=verify-full&sslrootcert=<the CA> (TLS). A sampler of pg_stat_ssl on both servers checks
// that each run's sessions were what its URLs asked for.
//   copy:   `migrate --copy-only --jobs 2` of bench/dataset.ts's tables into a fresh database;
//           copy-phase rows/s, as the copy bench measures it;
//   replay: a standing backlog of UPDATEs on pgbench's tables drained by `migrate --exit-when-synced`;
//           changes/s, as the replay bench measures it.
// Run on its own, prints a markdown table and writes bench/results/tls-<date>.json; `tlsBench` is
// also called by bench/index.ts (`npm run bench`).
//
//   npm run bench:tls -- [--rows N] [--scale N] [--backlog N] [--rounds N] [--quick]
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, SUPERUSER_PASSWORD } from '../test/support/cluster.js';
import { makeCerts } from '../test/support/tls.js';
import { hostFacts, isMain, requireBuiltCli, wholeNumber, withCleanup, writeResults } from './cli.js';
import { loadDataset, tableDigests, wideRowsFor } from './dataset.js';
import { type Drain, drainBacklog, median, replayArgs, settle, updateBacklog } from './drain.js';
import { pgbenchInit } from './pgbench.js';
import { expectSuccess, startPgferry } from './pgferry-proc.js';
import { runPgferry } from './pgferry-run.js';
import { checkSsl, dualPair, type Mode, type SslSeen, watchSsl } from './tls-pair.js';

const JOBS = 2;
export const TLS_DEFAULTS = {
  full: { rows: 1_000_000, scale: 10, backlog: 300_000, rounds: 2 },
  quick: { rows: 100_000, scale: 1, backlog: 30_000, rounds: 1 },
} as const;

export interface TlsBenchOptions {
  /** `accounts` rows of the copy's dataset (`wide` gets half as many). */
  rows: number;
  /** `pgbench -i -s N` for the replay. */
  scale: number;
  /** Captured changes per drain. */
  backlog: number;
  rounds: number;
  quick: boolean;
  say?: (msg: string) => void;
}

interface CopyRun {
  round: number;
  mode: Mode;
  rows: number;
  copy_s: number;
  rows_per_s: number;
  wall_s: number;
  peak_rss_mb: number;
  /** CPU seconds of the pgferry process and the pg_dump it runs (GNU time; null without it). */
  cpu_s: number | null;
  ssl: SslSeen;
}

interface ReplayRun extends Drain {
  round: number;
  mode: Mode;
  ssl: SslSeen;
}

export interface TlsBenchResult {
  date: string;
  quick: boolean;
  machine: ReturnType<typeof hostFacts> & { loadAverage1m: number };
  rows: number;
  wide_rows: number;
  scale: number;
  backlog: number;
  rounds: number;
  tls: {
    copy_ratio: number;
    replay_ratio: number;
    copy_rows_per_s: Record<Mode, number>;
    replay_changes_per_s: Record<Mode, number>;
    rss_peak_mb: Record<Mode, number>;
    /** Medians of pgferry's CPU seconds per run: less noisy than rates on a shared machine. */
    cpu_s: { copy: Record<Mode, number | null>; replay: Record<Mode, number> };
    sslmode: string;
    ciphers: string[];
  };
  runs: { copy: CopyRun[]; replay: ReplayRun[] };
  notes: string[];
}

const r3 = (n: number) => Math.round(n * 1000) / 1000;

/** Runs the TLS benchmark on a pair of clusters of its own, always torn down. */
export async function tlsBench(opts: TlsBenchOptions): Promise<{ result: TlsBenchResult; markdown: string }> {
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-tls-'));
  const certs = makeCerts();
  const clusters: Cluster[] = [];
  const cleanup = async () => {
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    for (const d of [workDir, certs.dir]) fs.rmSync(d, { recursive: true, force: true });
  };
  return withCleanup(say, 'the clusters', cleanup, run);

  async function run(): Promise<{ result: TlsBenchResult; markdown: string }> {
    say(`starting two TLS-capable PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await dualPair(certs);
    clusters.push(src!, dst!);
    const plain = (c: Cluster, db: string) => c.url({ db, sslmode: 'disable' });
    const urlFor = (mode: Mode, c: Cluster, db: string) =>
      mode === 'plain' ? plain(c, db) : `${c.url({ db, sslmode: 'verify-full' })}&sslrootcert=${certs.ca}`;
    const orderOf = (round: number): Mode[] => (round % 2 === 1 ? ['plain', 'tls'] : ['tls', 'plain']);

    // Copy: the copy bench's dataset, cloned into a fresh database per run.
    await src!.query('CREATE DATABASE bench');
    say(
      `loading ${opts.rows.toLocaleString('en-US')} accounts and ${wideRowsFor(opts.rows).toLocaleString('en-US')} wide rows`,
    );
    await loadDataset(plain(src!, 'bench'), opts.rows);
    const want = await tableDigests(plain(src!, 'bench'));
    const copyRuns: CopyRun[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const mode of orderOf(round)) {
        await dst!.query('DROP DATABASE IF EXISTS bench_copy');
        await dst!.query('CREATE DATABASE bench_copy');
        await settle(plain(src!, 'postgres'), plain(dst!, 'postgres'));
        say(`round ${round}, ${mode}: pgferry migrate --copy-only --jobs ${JOBS}`);
        const watch = watchSsl([src!, dst!], ['bench', 'bench_copy']);
        const res = await runPgferry({
          sourceUrl: urlFor(mode, src!, 'bench'),
          targetUrl: urlFor(mode, dst!, 'bench_copy'),
          stateFile: path.join(workDir, `copy-${round}-${mode}.sqlite`),
          jobs: JOBS,
          workDir,
        });
        const ssl = await watch.stop();
        checkSsl('the copy', mode, ssl);
        const got = await tableDigests(plain(dst!, 'bench_copy'));
        for (const [table, d] of want) {
          const g = got.get(table);
          if (!g || g.rows !== d.rows || g.hash !== d.hash)
            throw new Error(
              `the ${mode} clone of ${table} differs: ${JSON.stringify(d)} vs ${JSON.stringify(g)}`,
            );
        }
        const rowsPerS = res.copy.rows / res.phases.copy;
        say(
          `  copy phase ${res.phases.copy.toFixed(2)} s, ${Math.round(rowsPerS)} rows/s, RSS ${res.peakRssMB.toFixed(0)} MB`,
        );
        copyRuns.push({
          round,
          mode,
          rows: res.copy.rows,
          copy_s: r3(res.phases.copy),
          rows_per_s: Math.round(rowsPerS),
          wall_s: r3(res.wallSeconds),
          peak_rss_mb: r3(res.peakRssMB),
          cpu_s: res.cpu ? r3(res.cpu.user + res.cpu.system) : null,
          ssl,
        });
      }
    }
    await dst!.query('DROP DATABASE bench_copy');
    await src!.query('DROP DATABASE bench');

    // Replay: pgbench's tables, one initial migrate, then a backlog per drain on the same state.
    await Promise.all([src!.query('CREATE DATABASE pgb'), dst!.query('CREATE DATABASE pgb')]);
    say(`pgbench -i -s ${opts.scale}`);
    await pgbenchInit(opts.scale, {
      port: src!.port,
      user: 'postgres',
      db: 'pgb',
      password: SUPERUSER_PASSWORD,
    });
    const check = { source: plain(src!, 'pgb'), target: plain(dst!, 'pgb') };
    const args = replayArgs(path.join(workDir, 'replay.sqlite'), JOBS);
    say('pgferry migrate --exit-when-synced: schema, capture, copy (plain)');
    await expectSuccess(startPgferry(args, check));
    const replayRuns: ReplayRun[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const mode of orderOf(round)) {
        const logged = await updateBacklog(check.source, opts.scale, opts.backlog);
        await settle(check.source, check.target);
        say(`round ${round}, ${mode}: draining ${logged.toLocaleString('en-US')} changes`);
        const watch = watchSsl([src!, dst!], ['pgb']);
        const d = await drainBacklog(
          args,
          { source: urlFor(mode, src!, 'pgb'), target: urlFor(mode, dst!, 'pgb') },
          check,
        );
        const ssl = await watch.stop();
        checkSsl('the drain', mode, ssl);
        say(
          `  ${d.seconds.toFixed(2)} s, ${Math.round(d.changes_per_s)} changes/s, RSS ${d.peak_rss_mb.toFixed(0)} MB`,
        );
        replayRuns.push({ ...d, round, mode, ssl });
      }
    }

    const med = <T extends { mode: Mode }>(runs: T[], f: (r: T) => number) => ({
      plain: median(runs.filter((r) => r.mode === 'plain').map(f)),
      tls: median(runs.filter((r) => r.mode === 'tls').map(f)),
    });
    const copyRate = med(copyRuns, (r) => r.rows_per_s);
    const replayRate = med(replayRuns, (r) => r.changes_per_s);
    const rss = (mode: Mode) =>
      Math.max(...[...copyRuns, ...replayRuns].filter((r) => r.mode === mode).map((r) => r.peak_rss_mb));
    const ciphers = [...new Set([...copyRuns, ...replayRuns].flatMap((r) => r.ssl.ciphers))];
    const result: TlsBenchResult = {
      date: new Date().toISOString().slice(0, 10),
      quick: opts.quick,
      machine: { ...hostFacts(), loadAverage1m: os.loadavg()[0]! },
      rows: opts.rows,
      wide_rows: wideRowsFor(opts.rows),
      scale: opts.scale,
      backlog: opts.backlog,
      rounds: opts.rounds,
      tls: {
        copy_ratio: r3(copyRate.tls / copyRate.plain),
        replay_ratio: r3(replayRate.tls / replayRate.plain),
        copy_rows_per_s: { plain: Math.round(copyRate.plain), tls: Math.round(copyRate.tls) },
        replay_changes_per_s: { plain: Math.round(replayRate.plain), tls: Math.round(replayRate.tls) },
        rss_peak_mb: { plain: r3(rss('plain')), tls: r3(rss('tls')) },
        cpu_s: {
          copy: copyRuns.some((r) => r.cpu_s === null)
            ? { plain: null, tls: null }
            : med(copyRuns, (r) => r.cpu_s!),
          replay: med(replayRuns, (r) => r.cpu_seconds),
        },
        sslmode: 'verify-full (sslrootcert: the throwaway CA)',
        ciphers,
      },
      runs: { copy: copyRuns, replay: replayRuns },
      notes: [
        "Plain runs: sslmode=disable; TLS runs: sslmode=verify-full with the CA that signed both servers' certificates.",
        'Each round runs plain and TLS back to back, the order alternating from round to round; figures are medians.',
        'Copy: copy-phase rows/s ("copy started" to "copy finished"), every clone verified (row count and content hash per table).',
        'Replay: UPDATE-only backlog drained by migrate --exit-when-synced, first log line to "synced:"; logs empty and tables equal after each drain.',
      ],
    };
    return { result, markdown: markdown(result) };
  }
}

function markdown(r: TlsBenchResult): string {
  const f = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 3 });
  const t = r.tls;
  const cpu = (n: number | null) => (n === null ? 'n/a' : f(n));
  return [
    `### TLS: plain TCP vs TLS (${r.date}${r.quick ? ', --quick' : ''})`,
    '',
    `Copy: ${f(r.rows)} accounts + ${f(r.wide_rows)} wide rows, \`migrate --copy-only --jobs ${JOBS}\`; replay: pgbench scale ` +
      `${r.scale}, ${f(r.backlog)}-change UPDATE backlog per drain. Median of ${r.rounds} round(s), plain and TLS interleaved. ` +
      `TLS: ${t.sslmode}; ${t.ciphers.join(', ') || 'no cipher seen'}.`,
    '',
    '| figure | plain | TLS | TLS ÷ plain (target ≥ 0.85) |',
    '|---|--:|--:|--:|',
    `| copy-phase rows/s | ${f(t.copy_rows_per_s.plain)} | ${f(t.copy_rows_per_s.tls)} | ${f(t.copy_ratio)} |`,
    `| replay changes/s | ${f(t.replay_changes_per_s.plain)} | ${f(t.replay_changes_per_s.tls)} | ${f(t.replay_ratio)} |`,
    `| peak RSS MB | ${f(t.rss_peak_mb.plain)} | ${f(t.rss_peak_mb.tls)} | |`,
    `| pgferry CPU s, copy | ${cpu(t.cpu_s.copy.plain)} | ${cpu(t.cpu_s.copy.tls)} | |`,
    `| pgferry CPU s, drain | ${cpu(t.cpu_s.replay.plain)} | ${cpu(t.cpu_s.replay.tls)} | |`,
  ].join('\n');
}

if (isMain(import.meta.url)) {
  const { values: flags } = parseArgs({
    options: {
      rows: { type: 'string' },
      scale: { type: 'string' },
      backlog: { type: 'string' },
      rounds: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = flags.quick ?? false;
  const d = quick ? TLS_DEFAULTS.quick : TLS_DEFAULTS.full;
  const opts: TlsBenchOptions = {
    rows: wholeNumber('rows', flags.rows, d.rows),
    scale: wholeNumber('scale', flags.scale, d.scale),
    backlog: wholeNumber('backlog', flags.backlog, d.backlog),
    rounds: wholeNumber('rounds', flags.rounds, d.rounds),
    quick,
  };
  requireBuiltCli();
  try {
    const { result, markdown: md } = await tlsBench(opts);
    console.log(md);
    const custom = opts.rows !== d.rows || opts.scale !== d.scale || opts.backlog !== d.backlog;
    writeResults(
      'tls',
      result.date,
      `${quick ? '-quick' : ''}${custom ? `-${opts.rows}rows-s${opts.scale}` : ''}`,
      {
        ...result,
        markdown: md,
      },
    );
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
