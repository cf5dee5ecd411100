// Scale series (issue 15, target 4): at each of several scales, a whole clone by pgferry (seconds per
// GB of table data, peak RSS, the copy's idle tail) and a replay drain (changes/s, peak RSS), on one
// pair of throwaway clusters, each scale's databases dropped before the next; then how the cost per
// GB grows with the size (linearity). `--big GB` instead clones one big table of about GB gigabytes
// (bench/series-big.ts): the documented "≥ 15 GB under 150 MB of RSS" run.
//
//   npm run bench:series -- --scale 5,20,80 [--backlog N]   (--series 5,20,80 is the same; also
//                                                            npm run bench -- --series 5,20,80)
//   npm run bench:big -- 15      (= bench:series --big 15; TMPDIR=<a disk with 2.5 × GB free>)
//   npm run bench:series -- --quick                          (scales 1,2, a 30,000-change backlog)
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, requireBuiltCli, wholeNumber, withCleanup, writeResults } from './cli.js';
import { loadDataset, tableDigests, tableSizes, wideRowsFor } from './dataset.js';
import { type Drain, drainBacklog, type IdleTail, replayArgs, settle, updateBacklog } from './drain.js';
import { pgbenchInit } from './pgbench.js';
import { expectSuccess, startPgferry } from './pgferry-proc.js';
import { bigRun, cloneOnce, JOBS } from './series-big.js';

export const SERIES_DEFAULTS = { backlog: 300_000, quickBacklog: 30_000, quickSeries: [1, 2] } as const;
const GB = 1e9;

export interface ScalePoint {
  scale: number;
  accounts: number;
  wide_rows: number;
  /** Heap bytes of `accounts` and `wide` (the table data), and with their indexes and TOAST. */
  table_gb: number;
  total_gb: number;
  clone: {
    /** Process wall time of `migrate --copy-only --jobs 2`; copy_s its copy phase. */
    wall_s: number;
    copy_s: number;
    s_per_gb: number;
    copy_s_per_gb: number;
    peak_rss_mb: number;
    idle_tail: IdleTail | null;
  };
  replay: Drain;
}

export interface SeriesResult {
  date: string;
  machine: ReturnType<typeof hostFacts> & { loadAverage1m: number };
  scales: number[];
  backlog: number;
  points: ScalePoint[];
  /** clone s/GB at the largest scale ÷ at the smallest: 1 is linear, above 1 worse than linear. */
  linearity: number;
  copy_linearity: number;
  /** changes/s at the largest scale ÷ at the smallest. */
  replay_ratio_largest_vs_smallest: number;
  peak_rss_mb: number;
  /** The largest scale's copy idle tail (seconds from the first worker's last chunk to the last chunk). */
  idle_tail_s: number | null;
  notes: string[];
}

const r3 = (n: number) => Math.round(n * 1000) / 1000;

/** Runs the series on a pair of clusters of its own, always torn down. */
export async function seriesBench(opts: {
  scales: number[];
  backlog: number;
  say?: (msg: string) => void;
}): Promise<{ result: SeriesResult; markdown: string }> {
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-series-'));
  const clusters: Cluster[] = [];
  const cleanup = async () => {
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  return withCleanup(say, 'the clusters', cleanup, run);

  async function run(): Promise<{ result: SeriesResult; markdown: string }> {
    say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    const both = (sql: string) => Promise.all([src.query(sql), dst.query(sql)]);
    const points: ScalePoint[] = [];
    for (const scale of opts.scales) {
      const accounts = scale * 100_000;
      const db = `copy_s${scale}`;
      await both(`CREATE DATABASE ${db}`);
      say(
        `scale ${scale}: loading ${accounts.toLocaleString('en-US')} accounts + ${wideRowsFor(accounts).toLocaleString('en-US')} wide rows`,
      );
      await loadDataset(src.url({ db }), accounts);
      const sizes = await tableSizes(src.url({ db }));
      const heap = sizes.reduce((a, t) => a + t.heapBytes, 0);
      const totalBytes = sizes.reduce((a, t) => a + t.totalBytes, 0);
      const want = await tableDigests(src.url({ db }));
      await settle(src.url(), dst.url());
      say(
        `scale ${scale}: pgferry migrate --copy-only --jobs ${JOBS} (${(heap / GB).toFixed(2)} GB of table data)`,
      );
      const clone = await cloneOnce({
        sourceUrl: src.url({ db }),
        targetUrl: dst.url({ db }),
        workDir,
        tag: db,
      });
      const got = await tableDigests(dst.url({ db }));
      for (const [table, d] of want) {
        const g = got.get(table);
        if (!g || g.rows !== d.rows || g.hash !== d.hash || !g.primaryKey)
          throw new Error(
            `scale ${scale}: the clone of ${table} differs: ${JSON.stringify(d)} vs ${JSON.stringify(g)}`,
          );
      }
      say(
        `  ${clone.wall_s.toFixed(1)} s (copy ${clone.copy_s.toFixed(1)} s), ${(clone.wall_s / (heap / GB)).toFixed(1)} s/GB, ` +
          `RSS ${clone.peak_rss_mb.toFixed(0)} MB, idle tail ${clone.idle_tail ? `${clone.idle_tail.seconds.toFixed(2)} s` : 'n/a'}`,
      );
      await both(`DROP DATABASE ${db}`);

      const pdb = `pgb_s${scale}`;
      await both(`CREATE DATABASE ${pdb}`);
      say(
        `scale ${scale}: pgbench -i -s ${scale}, initial migrate, ${opts.backlog.toLocaleString('en-US')}-change backlog`,
      );
      await pgbenchInit(scale, { port: src.port, user: 'postgres', db: pdb, password: SUPERUSER_PASSWORD });
      const urls = { source: src.url({ db: pdb }), target: dst.url({ db: pdb }) };
      const args = replayArgs(path.join(workDir, `replay-${scale}.sqlite`), JOBS);
      await expectSuccess(startPgferry(args, urls));
      await updateBacklog(urls.source, scale, opts.backlog);
      await settle(urls.source, urls.target);
      const replay = await drainBacklog(args, urls, urls);
      say(
        `  drain ${replay.seconds.toFixed(2)} s, ${Math.round(replay.changes_per_s)} changes/s, RSS ${replay.peak_rss_mb.toFixed(0)} MB`,
      );
      await both(`DROP DATABASE ${pdb}`);

      points.push({
        scale,
        accounts,
        wide_rows: wideRowsFor(accounts),
        table_gb: r3(heap / GB),
        total_gb: r3(totalBytes / GB),
        clone: {
          wall_s: clone.wall_s,
          copy_s: clone.copy_s,
          s_per_gb: r3(clone.wall_s / (heap / GB)),
          copy_s_per_gb: r3(clone.copy_s / (heap / GB)),
          peak_rss_mb: clone.peak_rss_mb,
          idle_tail: clone.idle_tail,
        },
        replay: { ...replay, changes_per_s: Math.round(replay.changes_per_s) },
      });
    }
    const first = points[0]!;
    const last = points[points.length - 1]!;
    const result: SeriesResult = {
      date: new Date().toISOString().slice(0, 10),
      machine: { ...hostFacts(), loadAverage1m: os.loadavg()[0]! },
      scales: opts.scales,
      backlog: opts.backlog,
      points,
      linearity: r3(last.clone.s_per_gb / first.clone.s_per_gb),
      copy_linearity: r3(last.clone.copy_s_per_gb / first.clone.copy_s_per_gb),
      replay_ratio_largest_vs_smallest: r3(last.replay.changes_per_s / first.replay.changes_per_s),
      peak_rss_mb: r3(Math.max(...points.flatMap((p) => [p.clone.peak_rss_mb, p.replay.peak_rss_mb]))),
      idle_tail_s: last.clone.idle_tail ? r3(last.clone.idle_tail.seconds) : null,
      notes: [
        'Table data = heap bytes of accounts and wide (pg_relation_size); total_gb adds indexes and TOAST.',
        's_per_gb: process wall time of migrate --copy-only --jobs 2 (schema, copy, keys and indexes) per GB of table data; copy_s_per_gb: the copy phase alone.',
        `Replay: pgbench -i -s N, an initial migrate --exit-when-synced, then a fixed ${opts.backlog}-change UPDATE backlog drained by migrate --exit-when-synced (first log line to "synced:"), whatever the scale.`,
        "Idle tail: from pgferry's debug \"chunk copied\" lines (worker, table, time): the first worker's last chunk to the copy's last chunk. pgferry logs no chunk start, so gaps between a worker's chunks are not seen.",
      ],
    };
    return { result, markdown: seriesMarkdown(result) };
  }
}

export function seriesMarkdown(r: SeriesResult): string {
  const f = (n: number, d = 2) => n.toLocaleString('en-US', { maximumFractionDigits: d });
  return [
    `### Scale series (${r.date}): clone cost per GB and replay changes/s`,
    '',
    `\`migrate --copy-only --jobs ${JOBS}\` of accounts + wide at each scale; replay: pgbench at the same scale, a ${f(r.backlog, 0)}-change backlog.`,
    '',
    '| scale | table GB | clone s | s/GB | copy s/GB | clone RSS MB | idle tail s (share) | changes/s | drain RSS MB |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...r.points.map((p) => {
      const t = p.clone.idle_tail;
      return (
        `| ${p.scale} | ${f(p.table_gb)} | ${f(p.clone.wall_s, 1)} | ${f(p.clone.s_per_gb)} | ${f(p.clone.copy_s_per_gb)} | ` +
        `${f(p.clone.peak_rss_mb, 0)} | ${t ? `${f(t.seconds)} (${f(t.share * 100, 0)}%)` : 'n/a'} | ` +
        `${f(p.replay.changes_per_s, 0)} | ${f(p.replay.peak_rss_mb, 0)} |`
      );
    }),
    '',
    `Linearity (s/GB at scale ${r.scales[r.scales.length - 1]} ÷ at scale ${r.scales[0]}; 1 is linear): whole clone ${f(r.linearity, 3)}, ` +
      `copy phase ${f(r.copy_linearity, 3)}. Replay changes/s largest ÷ smallest: ${f(r.replay_ratio_largest_vs_smallest, 3)}. ` +
      `Peak RSS ${f(r.peak_rss_mb, 0)} MB.`,
  ].join('\n');
}

/** `--series 5,20,80`: whole numbers, at least one. */
export function parseSeries(raw: string): number[] {
  const scales = raw.split(',').map((s) => Number(s.trim()));
  if (scales.length === 0 || scales.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(`the scales must be whole numbers of at least 1, comma-separated (5,20,80), not "${raw}"`);
    process.exit(2);
  }
  return scales;
}

if (isMain(import.meta.url)) {
  const { values: flags } = parseArgs({
    options: {
      scale: { type: 'string' },
      series: { type: 'string' },
      backlog: { type: 'string' },
      big: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  requireBuiltCli();
  try {
    if (flags.big !== undefined) {
      const gb = Number(flags.big);
      if (!(gb > 0)) {
        console.error(`--big must be a number of gigabytes above 0, not "${flags.big}"`);
        process.exit(2);
      }
      const { result, markdown } = await bigRun({ gb });
      console.log(markdown);
      writeResults('big', result.date, `-${gb}gb`, { ...result, markdown });
    } else {
      const quick = flags.quick ?? false;
      const list = flags.scale ?? flags.series;
      const scales = list ? parseSeries(list) : quick ? [...SERIES_DEFAULTS.quickSeries] : [5, 20, 80];
      const backlog = wholeNumber(
        'backlog',
        flags.backlog,
        quick ? SERIES_DEFAULTS.quickBacklog : SERIES_DEFAULTS.backlog,
      );
      const { result, markdown } = await seriesBench({ scales, backlog });
      console.log(markdown);
      writeResults('series', result.date, `-${scales.join('-')}`, { ...result, markdown });
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
