// What replication costs the production source, measured the way the source lives it: pgbench
// (`-c 4 -j 2`, 60 s) on the source while
//   none:    nothing replicates;
//   logical: native logical replication (publication + enabled subscription) applies live;
//   pgferry: `pgferry migrate` runs as a daemon, its capture triggers firing and its replay applying
//            live (its initial copy done before the run starts);
//   triggers: right after each pgferry run, its capture triggers alone (the daemon stopped, nothing
//            reading or deleting the logs): what trigger capture costs the application whatever
//            the replay does;
//   pgferry-logical: the same as pgferry with `--capture logical` (a slot instead of triggers).
// For each run: tps, and the source server's CPU per committed transaction (the postmaster and its
// children, from /proc: bench/source-cpu.ts), broken down by kind of process. Rounds of the
// modes are interleaved (none, logical, pgferry, triggers, pgferry-logical, none, …) and the
// medians reported.
// Run on its own, prints a markdown table and writes bench/results/source-cost-<date>.json;
// `sourceCostBench` is also called by bench/index.ts (`npm run bench`).
//
//   npm run bench:source-cost -- [--scale N] [--quick] [--rounds R] [mode …]
//
// The modes given (none, logical, pgferry, pgferry-logical) are one round's order (default: all, so);
// triggers runs after each pgferry run.
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CheckpointStore } from '../checkpoints/store.js';
import { CONFIRMED_META } from '../engine/capture/logical/logical-source.js';
import type { ReplayStats } from '../engine/replay/replay.js';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, requireBuiltCli, wholeNumber, withCleanup, writeResults } from './cli.js';
import { type PgbenchTarget, pgbenchInit, pgbenchRun } from './pgbench.js';
import { expectSuccess, type PgferryProc, startPgferry } from './pgferry-proc.js';
import { PGFERRY_COMMAND } from './pgferry-run.js';
import { assertEqual, EXCLUDED, logCounts, total, withClient } from './replay-data.js';
import { LogicalPeer, markBacklogEnd } from './replay-logical.js';
import {
  METHOD,
  MODES,
  type Mode,
  markdown,
  ROUND_MODES,
  type SourceCostResult,
  type SourceCostRun,
  summarise,
} from './source-cost-report.js';
import { CLK_TCK, processCpuMs, ServerCpuSampler } from './source-cpu.js';

const JOBS = 2;
const LOAD = { clients: 4, threads: 2 };
export const SOURCE_COST_DEFAULTS = {
  scale: { full: 20, quick: 2 },
  rounds: { full: 2, quick: 1 },
  seconds: { full: 60, quick: 10 },
} as const;

export interface SourceCostOptions {
  scale: number;
  quick: boolean;
  /** Rounds of every mode (default 2, 1 with quick). */
  rounds?: number;
  /** One round's modes, in order (default none, logical, pgferry, pgferry-logical; triggers follows pgferry). */
  order?: Exclude<Mode, 'triggers'>[];
  say?: (msg: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readMeta(stateFile: string, key: string): string | null {
  try {
    const store = CheckpointStore.open(stateFile, { create: false, readonly: true });
    try {
      return store.getMeta(key);
    } finally {
      store.close();
    }
  } catch {
    return null; // not there yet, busy or being written: the next poll reads it
  }
}

function readReplayStats(stateFile: string): ReplayStats | null {
  const text = readMeta(stateFile, 'replay');
  return text ? (JSON.parse(text) as ReplayStats) : null;
}

export async function sourceCostBench(
  opts: SourceCostOptions,
): Promise<{ result: SourceCostResult; markdown: string }> {
  const { scale, quick } = opts;
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const rounds =
    opts.rounds ?? (quick ? SOURCE_COST_DEFAULTS.rounds.quick : SOURCE_COST_DEFAULTS.rounds.full);
  const order = opts.order ?? [...ROUND_MODES];
  const seconds = quick ? SOURCE_COST_DEFAULTS.seconds.quick : SOURCE_COST_DEFAULTS.seconds.full;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-source-cost-'));
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
  return withCleanup(say, 'pgferry, logical replication and the clusters', cleanup, run);

  async function run(): Promise<{ result: SourceCostResult; markdown: string }> {
    say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    await Promise.all([src.query('CREATE DATABASE bench'), dst.query('CREATE DATABASE bench')]);
    const sourceUrl = src.url({ db: 'bench' });
    const bench: PgbenchTarget = {
      port: src.port,
      user: 'postgres',
      db: 'bench',
      password: SUPERUSER_PASSWORD,
    };
    const commands: Record<string, string> = {};
    const hide = (line: string) =>
      line.replace(` -p ${src.port} `, ' -p <port> ').replaceAll(workDir, '<tmp>');
    const cmd = (args: string[]) =>
      `PGFERRY_SOURCE_URL=… PGFERRY_TARGET_URL=… ${PGFERRY_COMMAND} ${hide(args.join(' '))}`;
    const pgferry = (args: string[], target: string) => {
      const p = startPgferry(args, { source: sourceUrl, target });
      procs.add(p);
      return p;
    };

    const runFlags = (state: string) => ['--jobs', String(JOBS), '--state', state, '--exclude', EXCLUDED];
    say(`pgbench -i -s ${scale}`);
    commands.init = hide(await pgbenchInit(scale, bench));

    if (order.includes('logical')) {
      // The subscriber starts from an exact copy: pgferry's copy-only clone into the target's
      // `bench` (no capture), TEMPLATE-copied by LogicalPeer.create before the slot is made.
      say('logical replication: copy-only clone, subscriber database, publication, disabled subscription');
      const copyArgs = ['migrate', '--copy-only', ...runFlags(path.join(workDir, 'copy.sqlite'))];
      commands.logicalSubscriberCopy = cmd(copyArgs);
      await expectSuccess(pgferry(copyArgs, dst.url({ db: 'bench' })));
      await assertEqual(sourceUrl, dst.url({ db: 'bench' }), 'copy-only clone for the subscriber');
      logical = await LogicalPeer.create(src, dst, 'bench');
      await dst.query('DROP DATABASE bench');
    }

    /** What pgbench does without -n (vacuum, empty history), then CHECKPOINT on both and sync. */
    async function settle(): Promise<void> {
      await withClient(sourceUrl, async (c) => {
        await c.query('VACUUM (ANALYZE) pgbench_branches, pgbench_tellers, pgbench_accounts');
        await c.query('TRUNCATE pgbench_history');
      });
      await Promise.all([src, dst].map((c) => c.query('CHECKPOINT')));
      execFileSync('sync');
    }

    /** No user trigger, pgferry schema or pgferry slot on the source: none and logical run on a clean source. */
    async function assertNoCapture(): Promise<void> {
      const [row] = await src.query<{ triggers: string; schema: boolean; slots: string }>(
        `SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
                EXISTS (SELECT FROM pg_namespace WHERE nspname = 'pgferry') AS schema,
                (SELECT count(*) FROM pg_replication_slots WHERE slot_name ~ '^pgferry_[0-9a-f]{10}$') AS slots`,
        [],
        'bench',
      );
      if (Number(row?.triggers) !== 0 || row?.schema || Number(row?.slots) !== 0)
        throw new Error(`pgferry's capture is still on the source: ${JSON.stringify(row)}`);
    }

    async function measure(mode: Mode, round: number, pgferryPid?: number) {
      await settle();
      const loadAverage1m = os.loadavg()[0]!;
      const srcCpu = new ServerCpuSampler(src.pid, src.url());
      const dstCpu = new ServerCpuSampler(dst.pid);
      await Promise.all([srcCpu.start(), dstCpu.start()]);
      const ferry0 = pgferryPid ? processCpuMs(pgferryPid) : Number.NaN;
      say(`round ${round}, ${mode}: pgbench ${seconds} s`);
      const load = await pgbenchRun(bench, { ...LOAD, seconds });
      const ferry1 = pgferryPid ? processCpuMs(pgferryPid) : Number.NaN;
      const [s, t] = await Promise.all([srcCpu.stop(), dstCpu.stop()]);
      commands[`pgbench_${mode}`] = hide(load.commandLine);
      const byKind: Record<string, number> = {};
      for (const [k, v] of Object.entries(s.byKindMs)) byKind[k] = v / load.transactions;
      const perTxn = s.totalMs / load.transactions;
      say(`  ${load.tps.toFixed(1)} tps, source CPU ${perTxn.toFixed(3)} ms/txn`);
      return {
        round,
        mode,
        pgbench: { ...load, commandLine: hide(load.commandLine) },
        tps: load.tps,
        transactions: load.transactions,
        source_cpu: s,
        source_cpu_ms_per_txn: perTxn,
        source_cpu_ms_per_txn_by_kind: byKind,
        target_cpu_ms: t.totalMs,
        pgferry_process_cpu_ms: pgferryPid ? ferry1 - ferry0 : null,
        loadAverage1m,
      };
    }

    async function runNone(round: number): Promise<SourceCostRun[]> {
      await assertNoCapture();
      const m = await measure('none', round);
      return [{ ...m, ready_s: null, catch_up_s: null, verified: null }];
    }

    async function runLogical(round: number): Promise<SourceCostRun[]> {
      const peer = logical!;
      await assertNoCapture();
      // What the slot kept from the other modes' runs is applied before the run, not during it.
      await peer.setEnabled(true);
      const ready = await peer.waitApplied(await markBacklogEnd(sourceUrl));
      const m = await measure('logical', round);
      const caughtUp = await peer.waitApplied(await markBacklogEnd(sourceUrl));
      await peer.setEnabled(false);
      const verified = await assertEqual(sourceUrl, peer.url, `logical replication, round ${round}`);
      say(`  caught up ${caughtUp.toFixed(2)} s after pgbench ended; subscriber equal`);
      return [{ ...m, ready_s: ready, catch_up_s: caughtUp, verified }];
    }

    async function runPgferry(round: number, mode: 'pgferry' | 'pgferry-logical'): Promise<SourceCostRun[]> {
      // A fresh run into a fresh target database every round; its capture removed afterwards.
      const logicalCapture = mode === 'pgferry-logical';
      const db = `ferry_${round}${logicalCapture ? '_logical' : ''}`;
      await dst.query(`CREATE DATABASE ${db}`);
      const target = dst.url({ db });
      const stateFile = path.join(workDir, `${db}.sqlite`);
      const args = ['migrate', ...runFlags(stateFile), ...(logicalCapture ? ['--capture', 'logical'] : [])];
      commands[logicalCapture ? 'pgferryLogicalDaemon' : 'pgferryDaemon'] = cmd(args);
      say(`round ${round}, ${mode}: migrate daemon (schema, capture, copy) into ${db}`);
      const t0 = performance.now();
      const startedAt = new Date().toISOString();
      const daemon = pgferry(args, target);
      for (const deadline = Date.now() + 1_800_000; ; ) {
        if (daemon.child.exitCode !== null) {
          const exit = await daemon.done;
          throw new Error(
            `pgferry exited with ${exit.code} before replicating:\n${exit.stderr.slice(-2000)}`,
          );
        }
        if ((readReplayStats(stateFile)?.at ?? '') > startedAt) break;
        if (Date.now() > deadline) throw new Error('pgferry did not start replicating within 30 minutes');
        await sleep(200);
      }
      const ready = (performance.now() - t0) / 1000;
      say(`  replicating after ${ready.toFixed(1)} s`);
      const m = await measure(mode, round, daemon.child.pid);
      const ended = performance.now();
      const caughtUp = await withClient(sourceUrl, async (c) => {
        // The clusters run with synchronous_commit off: when pgbench exits, its last commits may not
        // be written yet, and pg_current_wal_lsn() (the written position) can be short of them (the
        // target was then compared before it had them). The insert position bounds them; a commit
        // of our own that writes WAL (a temporary table, streamed to nobody), made with
        // synchronous_commit on, flushes them, and the stream then passes that position.
        const [end] = (await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn'))
          .rows;
        if (logicalCapture) {
          await c.query('SET synchronous_commit = on');
          await c.query('CREATE TEMPORARY TABLE bench_flush ()');
        }
        const done = async () => {
          if (!logicalCapture) return total(await logCounts(c)) === 0;
          const confirmed = readMeta(stateFile, CONFIRMED_META);
          if (!confirmed) return false;
          const [row] = (
            await c.query<{ ok: boolean }>('SELECT $1::pg_lsn >= $2::pg_lsn AS ok', [confirmed, end!.lsn])
          ).rows;
          return row!.ok;
        };
        for (const deadline = Date.now() + 600_000; Date.now() < deadline; ) {
          if (await done()) return (performance.now() - ended) / 1000;
          if (daemon.child.exitCode !== null) {
            const exit = await daemon.done;
            throw new Error(
              `pgferry exited with ${exit.code} before it caught up:\n${exit.stderr.slice(-2000)}`,
            );
          }
          await sleep(100);
        }
        throw new Error(`${mode} did not catch up within 10 minutes of the load ending`);
      });
      daemon.child.kill('SIGTERM');
      await expectSuccess(daemon);
      const verified = await assertEqual(sourceUrl, target, `${mode}, round ${round}`);
      say(`  caught up ${caughtUp.toFixed(2)} s after pgbench ended; target equal`);
      const runs: SourceCostRun[] = [{ ...m, ready_s: ready, catch_up_s: caughtUp, verified }];
      if (!logicalCapture) {
        // The same source with the daemon gone: its triggers still fire, nothing consumes.
        const alone = await measure('triggers', round);
        runs.push({ ...alone, ready_s: null, catch_up_s: null, verified: null });
      }
      say('  removing the capture');
      const cleanupArgs = ['cleanup', '--force'];
      commands.pgferryCleanup = `PGFERRY_SOURCE_URL=… ${PGFERRY_COMMAND} ${cleanupArgs.join(' ')}`;
      await expectSuccess(pgferry(cleanupArgs, target));
      await dst.query(`DROP DATABASE ${db} WITH (FORCE)`);
      fs.rmSync(stateFile, { force: true });
      return runs;
    }

    const runs: SourceCostRun[] = [];
    const modeRun = {
      none: runNone,
      logical: runLogical,
      pgferry: (round: number) => runPgferry(round, 'pgferry'),
      'pgferry-logical': (round: number) => runPgferry(round, 'pgferry-logical'),
    };
    for (let round = 1; round <= rounds; round++) {
      for (const mode of order) runs.push(...(await modeRun[mode](round)));
    }
    await assertNoCapture();

    const modes: SourceCostResult['modes'] = {};
    for (const mode of MODES) {
      const mine = runs.filter((r) => r.mode === mode);
      if (mine.length > 0) modes[mode] = summarise(mine);
    }
    const ratio = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? null : a / b;
    const [ver] = await src.query<{ server_version: string }>('SHOW server_version');
    const result: SourceCostResult = {
      date: new Date().toISOString().slice(0, 10),
      scale,
      quick,
      seconds_per_run: seconds,
      rounds,
      order,
      machine: { ...hostFacts(), postgres: ver?.server_version ?? '?', clkTck: CLK_TCK },
      method: METHOD,
      commands: {
        ...commands,
        note: 'pgbench gets the password from PGPASSWORD; <port> is the source cluster, <tmp> a temporary directory',
      },
      runs,
      modes,
      tps_ratio_vs_none: ratio(modes.pgferry?.tps_median, modes.none?.tps_median),
      tps_ratio_vs_logical: ratio(modes.pgferry?.tps_median, modes.logical?.tps_median),
      cpu_per_txn_ratio_vs_none: ratio(
        modes.pgferry?.cpu_ms_per_txn_median,
        modes.none?.cpu_ms_per_txn_median,
      ),
      logical_cpu_per_txn_ratio_vs_none: ratio(
        modes.logical?.cpu_ms_per_txn_median,
        modes.none?.cpu_ms_per_txn_median,
      ),
      logical_tps_ratio_vs_none: ratio(modes.logical?.tps_median, modes.none?.tps_median),
      logical_capture_tps_ratio_vs_logical: ratio(
        modes['pgferry-logical']?.tps_median,
        modes.logical?.tps_median,
      ),
      logical_capture_cpu_per_txn_ratio_vs_none: ratio(
        modes['pgferry-logical']?.cpu_ms_per_txn_median,
        modes.none?.cpu_ms_per_txn_median,
      ),
      triggers_cpu_per_txn_ratio_vs_none: ratio(
        modes.triggers?.cpu_ms_per_txn_median,
        modes.none?.cpu_ms_per_txn_median,
      ),
      triggers_tps_ratio_vs_none: ratio(modes.triggers?.tps_median, modes.none?.tps_median),
    };
    return { result, markdown: markdown(result) };
  }
}

/** `npm run bench:source-cost`: this file run on its own. */
async function main(): Promise<void> {
  const { values: flags, positionals } = parseArgs({
    options: {
      scale: { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
    },
    allowPositionals: true,
  });
  const quick = flags.quick ?? false;
  const defaultScale = quick ? SOURCE_COST_DEFAULTS.scale.quick : SOURCE_COST_DEFAULTS.scale.full;
  const scale = wholeNumber('scale', flags.scale, defaultScale);
  const defaultRounds = quick ? SOURCE_COST_DEFAULTS.rounds.quick : SOURCE_COST_DEFAULTS.rounds.full;
  const rounds = wholeNumber('rounds', flags.rounds, defaultRounds);
  const bad = positionals.filter((p) => !(ROUND_MODES as readonly string[]).includes(p));
  if (bad.length > 0 || new Set(positionals).size !== positionals.length) {
    console.error(
      `modes are ${ROUND_MODES.join(', ')}, each at most once (triggers follows pgferry); not "${positionals.join(' ')}"`,
    );
    process.exit(2);
  }
  requireBuiltCli();
  try {
    const order = positionals.length > 0 ? (positionals as Exclude<Mode, 'triggers'>[]) : undefined;
    const { result, markdown: md } = await sourceCostBench({ scale, quick, rounds, order });
    console.log(md);
    const suffix = `${quick ? '-quick' : ''}${scale !== defaultScale ? `-s${scale}` : ''}`;
    writeResults('source-cost', result.date, suffix, { ...result, markdown: md });
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}

if (isMain(import.meta.url)) await main();
