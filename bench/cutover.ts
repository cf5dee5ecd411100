// Cutover benchmark (issue 5's target: write downtime under 2 s), on pgbench's tables in a pair of
// throwaway PostgreSQL 15 clusters:
//   1. `pgbench -i -s N` and the outside writer's table on the source; `migrate --exit-when-synced`;
//   2. `pgbench -c 4 -j 2 -n` unthrottled and the outside writer (bench/cutover-writer.ts) on the source;
//   3. `migrate --cutover-when-synced --freeze readonly` on the same state file; the downtime pgferry
//      reports, and the one the writer saw: its first accepted write on the target minus its last on
//      the source;
//   4. no lost write (every row the source acknowledged is on the target), pgferry exits 0.
// Run on its own, prints a markdown table and writes bench/results/cutover-<date>.json;
// `cutoverBench` is also called by bench/index.ts (`npm run bench`).
//
//   npm run bench:cutover -- [--scale N] [--quick]
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointStore } from '../checkpoints/store.js';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { isMain, scaleBenchMain, withCleanup } from './cli.js';
import { runWriter, WRITER_DDL, WRITER_TABLE, type WriterResult } from './cutover-writer.js';
import { PGBENCH, pgbenchInit } from './pgbench.js';
import { expectSuccess, type PgferryProc, startPgferry } from './pgferry-proc.js';
import { PGFERRY_COMMAND } from './pgferry-run.js';
import { assertEqual, EXCLUDED, withClient } from './replay-data.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const JOBS = 2;
const TARGET_WRITES = 20;

/** pgbench's scale when none is given: the replay bench's. */
export const CUTOVER_DEFAULT_SCALE = { full: 20, quick: 2 } as const;

export interface CutoverBenchResult {
  date: string;
  scale: number;
  quick: boolean;
  /** pgferry's own figure: freeze start to target ready (its stdout line). */
  downtime_reported_s: number;
  /** The outside writer's: first accepted write on the target minus last accepted on the source. */
  downtime_observed_s: number;
  /** The writer's refusal to its first target write (the freeze's start is before the refusal). */
  writer_refused_to_target_s: number | null;
  /** Which signal of pgferry's the writer saw first: the state file, the log line or the stdout line. */
  ready_signal: string;
  pgbench_tps_before_freeze: number;
  load_seconds_before_cutover: number;
  writer: {
    source_accepted: number;
    target_writes: number;
    in_doubt: number | null;
    in_doubt_committed: boolean | null;
    refusal: WriterResult['refusal'];
  };
  /** pgferry's log lines from 3 s before the freeze's start to the target ready, in seconds from the freeze start. */
  timeline: { s: number; msg: string }[];
  cutover_wall_s: number;
  /** When dist/ was built, and whether it was rebuilt while the bench ran (then the figures mix two builds). */
  build: { distBuiltAt: string; rebuiltDuringRun: boolean };
  initial_migrate_s: number;
  stdout: string;
  commands: Record<string, string>;
  verified: string[];
}

/** The line's message and its own fields (changes drained, tables verified…), pino's left out. */
function withFields(l: { msg: string; [k: string]: unknown }): string {
  const { msg, level, time, pid, hostname, name, app, ...fields } = l;
  return Object.keys(fields).length > 0 ? `${msg} ${JSON.stringify(fields).replace(/\|/g, '/')}` : msg;
}

const distBuiltAt = () => fs.statSync(path.join(HERE, '../dist/src/cli.js')).mtime.toISOString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fix = (n: number, d = 2) => n.toFixed(d);

/** `pgbench -c 4 -j 2 -T 600 -n -P 1` in the background, its progress lines kept with their times. */
function startPgbench(port: number, db: string) {
  const args = ['-c', '4', '-j', '2', '-T', '600', '-n', '-P', '1', '-h', '127.0.0.1', '-p', String(port)];
  args.push('-U', 'postgres', db);
  const child = spawn(PGBENCH, args, {
    env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const progress: { atMs: number; tps: number }[] = [];
  let out = '';
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const m of d.toString().matchAll(/^progress: [\d.]+ s, ([\d.]+) tps/gm)) {
      progress.push({ atMs: Date.now(), tps: Number(m[1]) });
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const commandLine = `${PGBENCH} ${args.join(' ').replace(` -p ${port} `, ' -p <port> ')}`;
  return { child, progress, done, output: () => out, commandLine };
}

/** Runs the cutover benchmark on a pair of clusters of its own, always torn down. */
export async function cutoverBench(opts: {
  scale: number;
  quick: boolean;
  say?: (msg: string) => void;
}): Promise<{ result: CutoverBenchResult; markdown: string }> {
  const { scale, quick } = opts;
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const loadSeconds = quick ? 3 : 10;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-cutover-'));
  const stateFile = path.join(workDir, 'state.sqlite');
  const clusters: Cluster[] = [];
  const procs: PgferryProc[] = [];
  let bench: ReturnType<typeof startPgbench> | undefined;
  const abort = new AbortController();
  const cleanup = async () => {
    abort.abort();
    if (bench && bench.child.exitCode === null && bench.child.signalCode === null) {
      bench.child.kill('SIGKILL');
      await bench.done;
    }
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.done.catch(() => {});
      }
    }
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  return withCleanup(say, 'pgbench, pgferry and the clusters', cleanup, run);

  async function run(): Promise<{ result: CutoverBenchResult; markdown: string }> {
    const builtAt = distBuiltAt();
    say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    await Promise.all([src.query('CREATE DATABASE bench'), dst.query('CREATE DATABASE bench')]);
    const urls = { source: src.url({ db: 'bench' }), target: dst.url({ db: 'bench' }) };
    const commands: Record<string, string> = {};
    const cmd = (args: string[]) =>
      `PGFERRY_SOURCE_URL=… PGFERRY_TARGET_URL=… ${PGFERRY_COMMAND} ${args.join(' ').replace(workDir, '<tmp>')}`;

    say(`pgbench -i -s ${scale}; ${WRITER_TABLE} for the outside writer`);
    commands.init = (
      await pgbenchInit(scale, {
        port: src.port,
        user: 'postgres',
        db: 'bench',
        password: SUPERUSER_PASSWORD,
      })
    ).replace(` -p ${src.port} `, ' -p <port> ');
    await src.query(WRITER_DDL, [], 'bench');

    const base = ['migrate', '--jobs', String(JOBS), '--state', stateFile, '--exclude', EXCLUDED];
    const initialArgs = [...base, '--exit-when-synced'];
    commands.initialMigrate = cmd(initialArgs);
    say('pgferry migrate --exit-when-synced: schema, capture, copy');
    const initialProc = startPgferry(initialArgs, urls);
    procs.push(initialProc);
    const initial = await expectSuccess(initialProc);
    say(`  done in ${fix(initial.wallSeconds, 1)} s`);

    // The load: pgbench unthrottled, and the outside writer, both on the source.
    bench = startPgbench(src.port, 'bench');
    commands.pgbench = bench.commandLine;
    let ready: string | null = null;
    const markReady = (how: string) => {
      ready ??= how;
    };
    let started!: () => void;
    const writerStarted = new Promise<void>((r) => {
      started = r;
    });
    const writer = runWriter({
      sourceUrl: urls.source,
      targetUrl: urls.target,
      ready: () => ready !== null,
      targetWrites: TARGET_WRITES,
      onStarted: started,
      signal: abort.signal,
    });
    writer.catch(() => {}); // awaited below; this keeps an early failure from going unhandled
    await Promise.race([writerStarted, writer]);
    say(`pgbench -c 4 -j 2 -n and the outside writer on the source for ${loadSeconds} s, then the cutover`);
    await sleep(loadSeconds * 1000);

    const cutoverArgs = [...base, '--cutover-when-synced', '--freeze', 'readonly'];
    commands.cutover = cmd(cutoverArgs);
    const cutover = startPgferry(cutoverArgs, urls);
    procs.push(cutover);
    // pgferry says the target is ready three ways: the state file's meta, its log line, its stdout
    // line (written last, after the foreign keys are validated). The writer takes the first.
    let out = '';
    let err = '';
    cutover.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('cutover done: write downtime')) markReady('stdout line');
    });
    cutover.child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('"target ready for writes"')) markReady('log line');
    });
    let store: CheckpointStore | undefined;
    const poll = setInterval(() => {
      try {
        store ??= CheckpointStore.open(stateFile, { create: false, readonly: true });
        if (store.getMeta('cutover_downtime_seconds')) markReady('state file');
      } catch {
        // busy: the next poll reads it
      }
    }, 5);
    let writes: WriterResult;
    let exit: Awaited<ReturnType<typeof expectSuccess>>;
    try {
      const failed = cutover.done.then((e) => {
        if (!ready) throw new Error(`pgferry exited with ${e.code ?? e.signal} before the target was ready`);
      });
      writes = await Promise.race([writer, failed.then(() => writer)]);
      exit = await expectSuccess(cutover);
    } finally {
      clearInterval(poll);
      store?.close();
      if (bench.child.exitCode === null && bench.child.signalCode === null) bench.child.kill('SIGINT');
      await bench.done;
    }
    say(`  pgferry exited 0 in ${fix(exit.wallSeconds, 1)} s; verifying`);

    // No lost write: what the source holds of the writer's rows is on the target, and every write
    // the source acknowledged is among them.
    const verified: string[] = [];
    const lastSourceId = writes.inDoubt ?? writes.sourceAccepted.at(-1) ?? 0;
    const ids = (url: string) =>
      withClient(url, async (c) => {
        const { rows } = await c.query<{ id: string }>(
          `SELECT id FROM ${WRITER_TABLE} WHERE id <= $1 ORDER BY id`,
          [lastSourceId],
        );
        return rows.map((r) => Number(r.id));
      });
    const [onSource, onTarget] = await Promise.all([ids(urls.source), ids(urls.target)]);
    const targetSet = new Set(onTarget);
    const lost = writes.sourceAccepted.filter((id) => !targetSet.has(id));
    if (lost.length > 0)
      throw new Error(`${lost.length} acknowledged writes are not on the target: ${lost.slice(0, 10)}`);
    if (onSource.join() !== onTarget.join()) {
      throw new Error(
        `${WRITER_TABLE}: the source holds ${onSource.length} rows, the target ${onTarget.length}`,
      );
    }
    const inDoubtCommitted = writes.inDoubt === null ? null : targetSet.has(writes.inDoubt);
    verified.push(
      `${WRITER_TABLE}: all ${writes.sourceAccepted.length} writes the source acknowledged are on the target, ` +
        `source and target hold the same ${onSource.length} rows`,
    );
    verified.push(`after the cutover: ${await assertEqual(urls.source, urls.target, 'cutover')}`);

    const m = /cutover done: write downtime ([\d.]+)s/.exec(exit.stdout);
    if (!m) throw new Error(`pgferry printed no "cutover done" line:\n${exit.stdout}`);
    const reported = Number(m[1]);
    const observed = (writes.firstTargetAckMs - writes.lastSourceAckMs) / 1000;
    const readyLine = exit.log.find((l) => l.msg === 'target ready for writes');
    const freezeStart = readyLine ? readyLine.time - Number(readyLine.downtimeSeconds) * 1000 : Number.NaN;
    const timeline = exit.log
      .filter((l) => readyLine && l.time >= freezeStart - 3000 && l.time <= readyLine.time)
      .map((l) => ({ s: Math.round(l.time - freezeStart) / 1000, msg: withFields(l) }));
    const before = bench.progress.filter(
      (p) => p.atMs <= (Number.isNaN(freezeStart) ? writes.lastSourceAckMs : freezeStart),
    );
    const tps = before.length > 0 ? before.reduce((a, p) => a + p.tps, 0) / before.length : Number.NaN;
    say(`  reported ${fix(reported)} s, observed ${fix(observed, 3)} s (ready seen via the ${ready})`);

    const result: CutoverBenchResult = {
      date: new Date().toISOString().slice(0, 10),
      scale,
      quick,
      downtime_reported_s: reported,
      downtime_observed_s: observed,
      writer_refused_to_target_s:
        writes.refusedAtMs === null ? null : (writes.firstTargetAckMs - writes.refusedAtMs) / 1000,
      ready_signal: ready ?? '?',
      pgbench_tps_before_freeze: tps,
      load_seconds_before_cutover: loadSeconds,
      writer: {
        source_accepted: writes.sourceAccepted.length,
        target_writes: writes.targetAccepted.length,
        in_doubt: writes.inDoubt,
        in_doubt_committed: inDoubtCommitted,
        refusal: writes.refusal,
      },
      timeline,
      cutover_wall_s: exit.wallSeconds,
      build: { distBuiltAt: builtAt, rebuiltDuringRun: distBuiltAt() !== builtAt },
      initial_migrate_s: initial.wallSeconds,
      stdout: exit.stdout,
      commands: {
        ...commands,
        note: 'pgbench gets the password from PGPASSWORD; <port> is the source cluster, <tmp> a temporary directory',
      },
      verified,
    };
    return { result, markdown: markdown(result) };
  }
}

export function markdown(r: CutoverBenchResult): string {
  return [
    `### Cutover: pgbench scale ${r.scale}${r.quick ? ' (--quick)' : ''}, --freeze readonly, ${r.date}`,
    '',
    '| figure | value |',
    '|---|--:|',
    `| write downtime reported by pgferry (freeze start → target ready) | ${fix(r.downtime_reported_s)} s |`,
    `| write downtime observed by the outside writer (last source write → first target write) | ${fix(r.downtime_observed_s, 3)} s |`,
    `| pgbench -c 4 -j 2 tps before the freeze | ${r.pgbench_tps_before_freeze.toFixed(0)} |`,
    `| writer: writes acknowledged by the source / lost | ${r.writer.source_accepted} / 0 |`,
    `| the writer's refusal | ${r.writer.refusal?.code ?? '-'} ${r.writer.refusal?.message ?? '(none)'} |`,
    `| ready seen first via | ${r.ready_signal} |`,
    '',
    "pgferry's log from 3 s before the freeze's start (0) to the target ready:",
    '',
    '| s | log line |',
    '|--:|---|',
    ...r.timeline.map((t) => `| ${fix(t.s, 3)} | ${t.msg} |`),
  ].join('\n');
}

// `npm run bench:cutover`: this file run on its own.
if (isMain(import.meta.url)) await scaleBenchMain('cutover', CUTOVER_DEFAULT_SCALE, cutoverBench);
