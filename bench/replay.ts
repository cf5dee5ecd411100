// Replay benchmark, on pgbench's tables in a pair of throwaway PostgreSQL 15 clusters:
//   1. capture's cost to the source: pgbench tps with capture off, then on (pgferry not running);
//   2. replay's throughput draining a standing backlog (~1,000,000 changes) with --exit-when-synced;
//   3. replay's lag behind a steady pgbench load, and the time to converge once the load stops;
//   4. the pgferry process's peak RSS during 2 and 3;
//   5. native logical replication applying the same backlog (bench/replay-logical.ts).
// Run on its own, prints a markdown table and writes bench/results/replay-<date>.json;
// `replayBench` is also called by bench/index.ts (`npm run bench`).
//
//   npm run bench:replay -- [--scale N] [--quick]
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointStore } from '../checkpoints/store.js';
import type { ReplayStats } from '../engine/replay/replay.js';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, scaleBenchMain, withCleanup } from './cli.js';
import { copyLimit } from './copy-limit.js';
import { type PgbenchTarget, pgbenchInit, pgbenchRun } from './pgbench.js';
import { expectSuccess, type PgferryProc, startPgferry } from './pgferry-proc.js';
import { PGFERRY_COMMAND } from './pgferry-run.js';
import { assertEqual, EXCLUDED, logCounts, makeBacklog, REPLAYED, total, withClient } from './replay-data.js';
import { LOGICAL_DB, LogicalPeer, MARKER_SQL, markBacklogEnd } from './replay-logical.js';
import { type LagSample, markdown, percentile, type ReplayBenchResult } from './replay-report.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const JOBS = 2;
const PGBENCH_LOAD = { clients: 4, threads: 2 };

/** pgbench's scale when none is given (pgbench_accounts gets 100,000 rows per unit). */
export const REPLAY_DEFAULT_SCALE = { full: 20, quick: 2 } as const;

export interface ReplayBenchOptions {
  /** `pgbench -i -s N`; the backlog's size does not depend on it. */
  scale: number;
  /** 50,000 changes and 5 s + 10 s of load instead of 1,000,000 and 30 s + 60 s. */
  quick: boolean;
  say?: (msg: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Which pgferry was measured: the commit, the sources changed since, and when dist/ was built. */
function buildInfo(): ReplayBenchResult['build'] {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: path.join(HERE, '..'), stdio: 'pipe' })
        .toString()
        .trimEnd(); // not trim(): porcelain lines start with a space (" M engine/…")
    } catch {
      return '';
    }
  };
  return {
    gitHead: git('rev-parse', '--short', 'HEAD') || 'unknown',
    uncommitted: git('status', '--porcelain', '--', 'engine', 'sinks', 'src', 'checkpoints', 'bin')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(3)),
    distBuiltAt: fs.statSync(path.join(HERE, '../dist/src/cli.js')).mtime.toISOString(),
  };
}

/** Runs the whole replay benchmark on a pair of clusters of its own, always torn down. */
export async function replayBench(
  opts: ReplayBenchOptions,
): Promise<{ result: ReplayBenchResult; markdown: string }> {
  const { scale, quick } = opts;
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const overheadSeconds = quick ? 5 : 30;
  const lagSeconds = quick ? 10 : 60;
  const backlogWanted = quick ? 50_000 : 1_000_000;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-replay-'));
  const stateFile = path.join(workDir, 'state.sqlite');
  const clusters: Cluster[] = [];
  const procs = new Set<PgferryProc>();
  let logical: LogicalPeer | undefined;
  const cleanup = async () => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.done.catch(() => {});
      }
    }
    await logical?.drop().catch((err: Error) => say(err.message));
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  const loadavg: Record<string, number> = {};

  function pgferry(args: string[], urls: { source: string; target: string }): PgferryProc {
    const p = startPgferry(args, urls);
    procs.add(p);
    return p;
  }

  function readReplayStats(): ReplayStats | null {
    try {
      const store = CheckpointStore.open(stateFile, { create: false, readonly: true });
      try {
        const text = store.getMeta('replay');
        return text ? (JSON.parse(text) as ReplayStats) : null;
      } finally {
        store.close();
      }
    } catch {
      return null; // busy or being written: the next poll reads it
    }
  }

  /** Before a timed part: what pgbench does without -n (vacuum, empty history), then CHECKPOINT and sync. */
  async function settle(srcUrl: string, dstUrl: string, label: string, vacuum: boolean): Promise<void> {
    if (vacuum) {
      await withClient(srcUrl, async (c) => {
        await c.query('VACUUM (ANALYZE) pgbench_branches, pgbench_tellers, pgbench_accounts');
        await c.query('TRUNCATE pgbench_history');
      });
    }
    await Promise.all([srcUrl, dstUrl].map((u) => withClient(u, (c) => c.query('CHECKPOINT'))));
    execFileSync('sync');
    loadavg[label] = os.loadavg()[0]!;
  }

  return withCleanup(say, 'pgferry, logical replication and the clusters', cleanup, run);

  async function run(): Promise<{ result: ReplayBenchResult; markdown: string }> {
    const build = buildInfo();
    say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    await Promise.all([src.query('CREATE DATABASE bench'), dst.query('CREATE DATABASE bench')]);
    const urls = { source: src.url({ db: 'bench' }), target: dst.url({ db: 'bench' }) };
    const bench: PgbenchTarget = {
      port: src.port,
      user: 'postgres',
      db: 'bench',
      password: SUPERUSER_PASSWORD,
    };
    const migrateArgs = ['migrate', '--jobs', String(JOBS), '--state', stateFile, '--exclude', EXCLUDED];
    const commands: Record<string, string> = {};
    const port = (line: string) => line.replace(` -p ${src.port} `, ' -p <port> ');
    const cmd = (args: string[]) =>
      `PGFERRY_SOURCE_URL=… PGFERRY_TARGET_URL=… ${PGFERRY_COMMAND} ${args.join(' ').replace(workDir, '<tmp>')}`;

    say(`pgbench -i -s ${scale}`);
    commands.init = port(await pgbenchInit(scale, bench));
    const load = (seconds: number) => ({ ...PGBENCH_LOAD, seconds });

    // 1. Capture's cost to the source.
    await settle(urls.source, urls.target, 'capture off', true);
    say(`pgbench ${overheadSeconds} s, capture off`);
    const off = await pgbenchRun(bench, load(overheadSeconds));
    say(`  ${off.tps.toFixed(1)} tps`);

    say('pgferry migrate --exit-when-synced: schema, capture, copy');
    const initialArgs = [...migrateArgs, '--exit-when-synced'];
    commands.initialMigrate = cmd(initialArgs);
    const initial = await expectSuccess(pgferry(initialArgs, urls));
    say(`  done in ${initial.wallSeconds.toFixed(1)} s; verifying`);
    const verified = [
      `after the initial copy: ${await assertEqual(urls.source, urls.target, 'initial copy')}`,
    ];

    // The logical replication peer's subscriber and slot, made now: source and target are equal and
    // nothing writes to either, so every change from here on is in the slot, as in pgferry's logs.
    say('native logical replication: subscriber database, publication, disabled subscription');
    logical = await LogicalPeer.create(src, dst, 'bench');

    await settle(urls.source, urls.target, 'capture on', true);
    say(`pgbench ${overheadSeconds} s, capture on (pgferry not running)`);
    const on = await pgbenchRun(bench, load(overheadSeconds));
    say(`  ${on.tps.toFixed(1)} tps (ratio ${(on.tps / off.tps).toFixed(3)})`);
    const loggedByPgbench = await withClient(urls.source, async (c) => total(await logCounts(c)));

    // 2. A standing backlog, drained by --exit-when-synced.
    say(`making a backlog of about ${backlogWanted.toLocaleString('en-US')} changes`);
    const statements = await makeBacklog(urls.source, scale, backlogWanted);
    const markerLsn = await markBacklogEnd(urls.source);
    statements.push({ sql: MARKER_SQL, rows: 1, seconds: 0 });
    const perTable = await withClient(urls.source, logCounts);
    const backlog = total(perTable);
    say(`  ${backlog.toLocaleString('en-US')} captured changes: ${JSON.stringify(perTable)}`);
    const tables = await withClient(urls.source, async (c) => {
      const out: Record<string, number> = {};
      for (const t of REPLAYED) out[t] = Number((await c.query(`SELECT count(*) AS n FROM ${t}`)).rows[0].n);
      return out;
    });
    await settle(urls.source, urls.target, 'drain', false);
    say('pgferry migrate --exit-when-synced: draining the backlog');
    commands.drain = cmd(initialArgs);
    const drain = await expectSuccess(pgferry(initialArgs, urls));
    const first = drain.log[0];
    const synced = drain.log.find((l) => l.msg.startsWith('synced:'));
    if (!first || !synced)
      throw new Error(`the drain logged no "synced" line:\n${drain.stderr.slice(-2000)}`);
    const drainSeconds = (synced.time - first.time) / 1000;
    const applied = Number(synced.appliedTotal);
    if (applied < backlog)
      throw new Error(`the drain applied ${applied} changes, fewer than the ${backlog} logged`);
    const left = await withClient(urls.source, async (c) => total(await logCounts(c)));
    if (left !== 0) throw new Error(`the drain exited with ${left} changes still in the logs`);
    say(`  ${drainSeconds.toFixed(2)} s, ${Math.round(backlog / drainSeconds)} changes/s; verifying`);
    verified.push(`after the drain: ${await assertEqual(urls.source, urls.target, 'drain')}`);

    // 2b. The same backlog applied by native logical replication (pgferry's drain changed no
    // replicated table on the source, so the source is still where the backlog left it).
    await settle(urls.source, urls.target, 'logical', false);
    say('native logical replication: ALTER SUBSCRIPTION … ENABLE, applying the same backlog');
    const logicalRun = await logical.catchUp(markerLsn, backlog);
    say(
      `  ${logicalRun.catch_up_s.toFixed(2)} s, ${Math.round(logicalRun.changes_per_s)} changes/s ` +
        `(pgferry ÷ logical ${(backlog / drainSeconds / logicalRun.changes_per_s).toFixed(2)}); verifying`,
    );
    verified.push(
      `logical replication's subscriber after its catch-up: ${await assertEqual(urls.source, dst.url({ db: LOGICAL_DB }), 'logical replication')}`,
    );
    await logical.drop();

    // 2c. The target's write limits: a plain COPY of the same table into it, then every row replaced.
    await settle(urls.source, urls.target, 'copy limit', false);
    say(
      'the write limits: binary COPY into an empty keyed copy on the target, then every row of it replaced',
    );
    const limit = await copyLimit(
      { port: src.port, user: 'postgres', db: 'bench' },
      { port: dst.port, user: 'postgres', db: 'bench' },
      SUPERUSER_PASSWORD,
      (sql) => dst.query(sql, [], 'bench'),
    );
    say(
      `  ${limit.rows} rows in ${limit.seconds.toFixed(2)} s, ${Math.round(limit.rows_per_s)} rows/s ` +
        `(pgferry's replay ÷ this ${(backlog / drainSeconds / limit.rows_per_s).toFixed(2)}); ` +
        `every row replaced: ${Math.round(limit.rewrite.rows_per_s)} rows/s ` +
        `(÷ this ${(backlog / drainSeconds / limit.rewrite.rows_per_s).toFixed(2)})`,
    );

    // 3. Lag behind a steady load.
    await settle(urls.source, urls.target, 'lag', true);
    say(`pgferry migrate (daemon) + pgbench ${lagSeconds} s`);
    commands.daemon = cmd(migrateArgs);
    const startedAt = new Date().toISOString();
    const daemon = pgferry(migrateArgs, urls);
    for (const deadline = Date.now() + 120_000; ; ) {
      if (daemon.child.exitCode !== null) {
        const exit = await daemon.done;
        throw new Error(`pgferry exited with ${exit.code} before replicating:\n${exit.stderr.slice(-2000)}`);
      }
      if ((readReplayStats()?.at ?? '') > startedAt) break;
      if (Date.now() > deadline) throw new Error('pgferry did not start replicating within 2 minutes');
      await sleep(100);
    }
    const samples: LagSample[] = [];
    const t0 = Date.now();
    const poll = setInterval(() => {
      const s = readReplayStats();
      if (s && s.at !== samples[samples.length - 1]?.at && s.at > new Date(t0).toISOString()) {
        samples.push({
          t: Date.now() - t0,
          lagSeconds: s.lagSeconds,
          backlog: s.backlog,
          changesPerSec: s.changesPerSec,
          at: s.at,
        });
      }
    }, 500);
    let lagRun: Awaited<ReturnType<typeof pgbenchRun>>;
    try {
      lagRun = await pgbenchRun(bench, load(lagSeconds));
    } finally {
      clearInterval(poll);
    }
    const ended = performance.now();
    let atEnd = -1;
    let convergeSeconds = Number.NaN;
    await withClient(urls.source, async (c) => {
      for (const deadline = Date.now() + 600_000; Date.now() < deadline; ) {
        const n = total(await logCounts(c));
        if (atEnd < 0) atEnd = n;
        if (n === 0) {
          convergeSeconds = (performance.now() - ended) / 1000;
          return;
        }
        await sleep(100);
      }
      throw new Error('pgferry did not empty the logs within 10 minutes of the load ending');
    });
    say(`  ${lagRun.tps.toFixed(1)} tps; converged ${convergeSeconds.toFixed(2)} s after pgbench ended`);
    daemon.child.kill('SIGTERM');
    const stopped = await expectSuccess(daemon);
    verified.push(`after the lag run: ${await assertEqual(urls.source, urls.target, 'lag run')}`);

    if (samples.length === 0) throw new Error('no replay stats were read during the pgbench run');
    const lags = samples.map((s) => s.lagSeconds);
    const [ver] = await src.query<{ server_version: string }>('SHOW server_version');
    const date = new Date().toISOString().slice(0, 10);
    const grouped = new Map<string, ReplayBenchResult['replay']['backlog_statements'][number]>();
    for (const s of statements) {
      const g = grouped.get(s.sql);
      if (g) {
        g.times += 1;
        g.rows += s.rows;
        g.seconds += s.seconds;
      } else grouped.set(s.sql, { ...s, times: 1 });
    }
    const result: ReplayBenchResult = {
      date,
      scale,
      quick,
      machine: {
        ...hostFacts(),
        postgres: ver?.server_version ?? '?',
        loadAverage1m: loadavg,
      },
      build: { ...build, rebuiltDuringRun: buildInfo().distBuiltAt !== build.distBuiltAt },
      jobs: JOBS,
      excluded: [EXCLUDED],
      commands: {
        ...commands,
        pgbenchOff: port(off.commandLine),
        pgbenchOn: port(on.commandLine),
        pgbenchLag: port(lagRun.commandLine),
        note: 'pgbench gets the password from PGPASSWORD; <port> is the source cluster, <tmp> a temporary directory',
      },
      tables,
      initialMigrate: { wallSeconds: initial.wallSeconds, peakRssMB: initial.peakRssMB },
      capture: {
        tps_off: off.tps,
        tps_on: on.tps,
        tps_ratio: on.tps / off.tps,
        pgbench_off: off,
        pgbench_on: on,
        logged_by_pgbench: loggedByPgbench,
      },
      replay: {
        backlog_statements: [...grouped.values()],
        backlog_per_table: perTable,
        backlog_changes: backlog,
        applied_total: applied,
        batches: Number(synced.batches),
        drain_seconds: drainSeconds,
        drain_wall_seconds: drain.wallSeconds,
        drain_cpu_seconds: drain.cpuSeconds,
        changes_per_s: backlog / drainSeconds,
        logical: logicalRun,
        ratio_vs_logical: backlog / drainSeconds / logicalRun.changes_per_s,
        copy_limit: limit,
        ratio_vs_copy: backlog / drainSeconds / limit.rows_per_s,
        ratio_vs_rewrite: backlog / drainSeconds / limit.rewrite.rows_per_s,
        lag_pgbench: lagRun,
        lag_pgbench_tps: lagRun.tps,
        lag_p50_s: percentile(lags, 50),
        lag_p95_s: percentile(lags, 95),
        lag_max_s: Math.max(...lags),
        lag_samples: samples,
        backlog_max: Math.max(...samples.map((s) => s.backlog)),
        backlog_at_pgbench_end: atEnd,
        converge_seconds: convergeSeconds,
        lag_run_cpu_seconds: stopped.cpuSeconds,
      },
      memory: {
        drain_mb: drain.peakRssMB,
        lag_run_mb: stopped.peakRssMB,
        initial_migrate_mb: initial.peakRssMB,
      },
      rss_peak_mb: Math.max(drain.peakRssMB, stopped.peakRssMB),
      verified,
    };
    return { result, markdown: markdown(result) };
  }
}

// `npm run bench:replay`: this file run on its own.
if (isMain(import.meta.url)) await scaleBenchMain('replay', REPLAY_DEFAULT_SCALE, replayBench);
