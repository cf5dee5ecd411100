// The scale series' big run (`npm run bench:series -- --big GB`): one table of about GB gigabytes of
// heap, generated on the server (INSERT … SELECT generate_series, two sessions in batches), cloned
// by `migrate --copy-only --jobs 2`: seconds, GB/s, peak RSS (issue 15 asks for ≥ 15 GB under
// 150 MB) and the copy's idle tail. Also the whole clone of one scale, shared with bench/series.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Cluster, startCluster } from '../test/support/cluster.js';
import { hostFacts, withCleanup } from './cli.js';
import { type IdleTail, idleTail, settle } from './drain.js';
import { type LogLine, runPgferry } from './pgferry-run.js';
import { withClient } from './replay-data.js';

export const JOBS = 2;
const GB = 1e9;
/** Rows per INSERT … SELECT while loading (two sessions take batches in turn). */
const BATCH = 2_000_000;
const CALIBRATION_ROWS = 100_000;
/** The source holds the table, the target its copy, plus WAL, the primary keys and some slack. */
const DISK_FACTOR = 2.4;

const r3 = (n: number) => Math.round(n * 1000) / 1000;

export interface Clone {
  wall_s: number;
  copy_s: number;
  rows: number;
  peak_rss_mb: number;
  idle_tail: IdleTail | null;
}

/** One whole clone by pgferry at debug level (for its per-chunk lines), with the copy's idle tail. */
export async function cloneOnce(o: {
  sourceUrl: string;
  targetUrl: string;
  workDir: string;
  tag: string;
}): Promise<Clone> {
  let log: LogLine[] = [];
  const run = await runPgferry({
    sourceUrl: o.sourceUrl,
    targetUrl: o.targetUrl,
    stateFile: path.join(o.workDir, `clone-${o.tag}.sqlite`),
    jobs: JOBS,
    workDir: o.workDir,
    logLevel: 'debug',
    onLog: (l) => {
      log = l;
    },
  });
  return {
    wall_s: r3(run.wallSeconds),
    copy_s: r3(run.phases.copy),
    rows: run.copy.rows,
    peak_rss_mb: r3(run.peakRssMB),
    idle_tail: idleTail(log, JOBS),
  };
}

export interface BigResult {
  date: string;
  machine: ReturnType<typeof hostFacts> & { loadAverage1m: number };
  gb_requested: number;
  tmpdir: string;
  free_gb_before: number;
  rows: number;
  table_gb: number;
  total_gb: number;
  load_s: number;
  clone: Clone & { gb_per_s: number; copy_gb_per_s: number; rss_under_150_mb: boolean };
  notes: string[];
}

const CREATE = `CREATE TABLE big (id bigint NOT NULL, k int NOT NULL, at timestamptz NOT NULL, payload text NOT NULL)`;
// ~510 bytes a row, under the TOAST threshold: stored inline, uncompressed.
const insert = (lo: number, hi: number) => `
  INSERT INTO big SELECT g, (g % 1000003)::int, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
                         repeat(md5(g::text), 14)
    FROM generate_series(${lo}, ${hi}) g`;

/** Makes `big` of about `gb` GB of heap: calibrates the row size on 100,000 rows, then fills. */
async function loadBig(url: string, gb: number, say: (m: string) => void): Promise<number> {
  const rowBytes = await withClient(url, async (c) => {
    await c.query(CREATE);
    await c.query(insert(1, CALIBRATION_ROWS));
    const { rows } = await c.query<{ b: string }>("SELECT pg_relation_size('big') AS b");
    return Number(rows[0]!.b) / CALIBRATION_ROWS;
  });
  const total = Math.max(CALIBRATION_ROWS, Math.ceil((gb * GB) / rowBytes));
  say(`  ${rowBytes.toFixed(0)} heap bytes a row: ${total.toLocaleString('en-US')} rows`);
  let next = CALIBRATION_ROWS + 1;
  const session = async () =>
    withClient(url, async (c) => {
      while (next <= total) {
        const lo = next;
        const hi = Math.min(total, lo + BATCH - 1);
        next = hi + 1;
        await c.query(insert(lo, hi));
        say(`  ${hi.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} rows`);
      }
    });
  await Promise.all([session(), session()]);
  say('  primary key, VACUUM (FREEZE, ANALYZE)');
  await withClient(url, async (c) => {
    await c.query('ALTER TABLE big ADD PRIMARY KEY (id)');
    await c.query('VACUUM (FREEZE, ANALYZE) big');
  });
  return total;
}

const digest = (url: string) =>
  withClient(url, async (c) => {
    const { rows } = await c.query<{ n: string; s: string; k: string }>(
      'SELECT count(*) AS n, sum(id)::text AS s, sum(k)::text AS k FROM big',
    );
    return JSON.stringify(rows[0]);
  });

/** The big run on a pair of clusters of its own, always torn down. */
export async function bigRun(opts: {
  gb: number;
  say?: (msg: string) => void;
}): Promise<{ result: BigResult; markdown: string }> {
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const tmp = os.tmpdir();
  const st = fs.statfsSync(tmp);
  const free = (st.bavail * st.bsize) / GB;
  const need = opts.gb * DISK_FACTOR + 2;
  if (free < need)
    throw new Error(
      `--big ${opts.gb} needs about ${need.toFixed(0)} GB free where the clusters go (${tmp}: ${free.toFixed(0)} GB free); set TMPDIR to a bigger disk`,
    );
  const workDir = fs.mkdtempSync(path.join(tmp, 'pgferry-bench-big-'));
  const clusters: Cluster[] = [];
  const cleanup = async () => {
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  return withCleanup(say, 'the clusters', cleanup, async () => {
    say(`starting two PostgreSQL 15 clusters in ${tmp} (${free.toFixed(0)} GB free)`);
    const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
    clusters.push(src, dst);
    await Promise.all([src.query('CREATE DATABASE big'), dst.query('CREATE DATABASE big')]);
    const [s, t] = [src.url({ db: 'big' }), dst.url({ db: 'big' })];
    say(`loading about ${opts.gb} GB into one table`);
    const t0 = performance.now();
    const rows = await loadBig(s, opts.gb, say);
    const loadSeconds = (performance.now() - t0) / 1000;
    const sizes = await withClient(s, async (c) => {
      const { rows: r } = await c.query<{ heap: string; total: string }>(
        "SELECT pg_relation_size('big') AS heap, pg_total_relation_size('big') AS total",
      );
      return { heap: Number(r[0]!.heap), total: Number(r[0]!.total) };
    });
    await settle(src.url(), dst.url());
    say(`pgferry migrate --copy-only --jobs ${JOBS}: ${(sizes.heap / GB).toFixed(2)} GB of table data`);
    const clone = await cloneOnce({ sourceUrl: s, targetUrl: t, workDir, tag: 'big' });
    const [a, b] = await Promise.all([digest(s), digest(t)]);
    if (a !== b) throw new Error(`the clone of big differs: source ${a}, target ${b}`);
    const table = sizes.heap / GB;
    const result: BigResult = {
      date: new Date().toISOString().slice(0, 10),
      machine: { ...hostFacts(), loadAverage1m: os.loadavg()[0]! },
      gb_requested: opts.gb,
      tmpdir: tmp,
      free_gb_before: r3(free),
      rows,
      table_gb: r3(table),
      total_gb: r3(sizes.total / GB),
      load_s: r3(loadSeconds),
      clone: {
        ...clone,
        gb_per_s: r3(table / clone.wall_s),
        copy_gb_per_s: r3(table / clone.copy_s),
        rss_under_150_mb: clone.peak_rss_mb < 150,
      },
      notes: [
        'One table big (id bigint primary key, k int, at timestamptz, payload text of 448 characters), ~510 heap bytes a row, generated by INSERT … SELECT generate_series in two sessions, then frozen.',
        'gb_per_s: table data (heap) ÷ process wall time of migrate --copy-only --jobs 2; copy_gb_per_s the same over the copy phase. Verified: count, sum(id), sum(k) on both sides.',
        "Idle tail: from the first worker's last chunk to the copy's last chunk (pgferry's debug \"chunk copied\" lines); chunk size: pgferry's default.",
      ],
    };
    return { result, markdown: bigMarkdown(result) };
  });
}

function bigMarkdown(r: BigResult): string {
  const c = r.clone;
  const tail = c.idle_tail
    ? `${c.idle_tail.seconds.toFixed(2)} s (${(c.idle_tail.share * 100).toFixed(0)}% of the copy; ${c.idle_tail.chunks} chunks on ${c.idle_tail.workers} workers)`
    : 'n/a';
  return [
    `### Big clone (${r.date}): one table, ${r.table_gb.toFixed(2)} GB of table data`,
    '',
    '| rows | table GB | with index GB | clone s | copy s | GB/s (clone) | GB/s (copy) | peak RSS MB | idle tail |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|---|',
    `| ${r.rows.toLocaleString('en-US')} | ${r.table_gb.toFixed(2)} | ${r.total_gb.toFixed(2)} | ${c.wall_s.toFixed(1)} | ` +
      `${c.copy_s.toFixed(1)} | ${c.gb_per_s.toFixed(3)} | ${c.copy_gb_per_s.toFixed(3)} | ${c.peak_rss_mb.toFixed(0)} | ${tail} |`,
    '',
    `RSS under 150 MB: ${c.rss_under_150_mb ? 'yes' : 'NO'}. Loading took ${r.load_s.toFixed(0)} s (not timed in the figures).`,
  ].join('\n');
}
