// The copy benchmark's markdown: throughput side by side, then pgferry's phases, then the whole
// clone against pg_dump/pg_restore and pgcopydb. Times are medians over the rounds, with the spread
// (min–max) beside them. In the copy table the ratio column is pgferry's copy throughput over the
// other run's (rows/s; same rows, so also the other's time over pgferry's): above 1 pgferry is
// faster. In the clone table it is pgferry's time over the other's: below 1 pgferry is faster.
// `summarize` gives the headline figures under the names the issue fixes (copy.ratio_vs_pipe,
// clone.ratio_vs_dump_restore, clone.ratio_vs_pgcopydb).
import type { ActivityProfile } from './clone-activity.js';
import type { DumpRestoreRun } from './clone-dump-restore.js';
import type { PgcopydbRun, PgcopydbTool } from './clone-pgcopydb.js';
import type { TableSize } from './dataset.js';
import type { PgferryRun } from './pgferry-run.js';
import type { PipeRun } from './pipe.js';

/** A timed run with the pg_stat_activity profile taken during it. */
export type Sampled<T> = T & { activity: ActivityProfile };

export interface PgcopydbVariant {
  label: string;
  commandLine: string;
  runs: Sampled<PgcopydbRun>[];
  /** Runs that failed or whose result did not verify: never timed, kept with their error. */
  failures: string[];
}

export interface CopyBenchResult {
  date: string;
  scale: { accountsRows: number; wideRows: number; quick: boolean };
  rounds: number;
  machine: {
    cpus: number;
    memoryGB: number;
    node: string;
    postgres: string;
    /** os.loadavg()[0] just before each timed run: other work on the machine shows here. */
    loadAverage1mBeforeRuns: number[];
    /** Every timed run in the order it ran, with its start time and the load average just before. */
    schedule?: { round: number; run: string; startedAt: string; loadAverage1m: number }[];
  };
  jobs: number;
  tables: TableSize[];
  pgferry: { runs: Sampled<PgferryRun>[]; commandLine: string };
  pipes: {
    format: 'binary' | 'text';
    runs: PipeRun[];
    bytes: number;
    bytesPerTable: Record<string, number>;
    commandLines: string[];
  }[];
  dumpRestore: { runs: Sampled<DumpRestoreRun>[]; commandLines: string[] };
  pgcopydb: { tool: PgcopydbTool; variants: PgcopydbVariant[] };
  bytesNote: string;
  verified: string;
}

/** The headline figures, snake_case as the issue names them. */
export interface BenchSummary {
  copy: {
    pgferry_rows_per_s: number;
    pipe_binary_rows_per_s: number;
    pipe_text_rows_per_s: number;
    /** pgferry's copy-phase rows/s over the binary pipe's (higher is better) */
    ratio_vs_pipe: number;
    ratio_vs_pipe_text: number;
  };
  clone: {
    pgferry_s: number;
    dump_s: number;
    restore_s: number;
    dump_restore_s: number;
    /** The faster pgcopydb variant's median; null when pgcopydb was unavailable or every run failed. */
    pgcopydb_s: number | null;
    pgcopydb_variant: string | null;
    pgcopydb_status: string;
    /** pgferry's whole-clone time over the other's (lower is better) */
    ratio_vs_dump_restore: number;
    ratio_vs_pgcopydb: number | null;
  };
}

const MB = 1e6;
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, d = 1) => n.toFixed(d);

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const spread = (values: number[]) =>
  values.length > 1 ? `${fixed(Math.min(...values), 2)}–${fixed(Math.max(...values), 2)}` : '–';

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function fastestPgcopydb(r: CopyBenchResult): { variant: PgcopydbVariant; seconds: number } | null {
  let best: { variant: PgcopydbVariant; seconds: number } | null = null;
  for (const variant of r.pgcopydb.variants) {
    if (variant.runs.length === 0) continue;
    const seconds = median(variant.runs.map((x) => x.seconds));
    if (!best || seconds < best.seconds) best = { variant, seconds };
  }
  return best;
}

export function summarize(r: CopyBenchResult): BenchSummary {
  const runs = r.pgferry.runs;
  const rate = (rows: number, times: number[]) => rows / median(times);
  const pgRate = rate(
    runs[0]!.copy.rows,
    runs.map((p) => p.phases.copy),
  );
  const pipeRate = (format: 'binary' | 'text') => {
    const p = r.pipes.find((x) => x.format === format)!;
    return rate(
      p.runs[0]!.rows,
      p.runs.map((x) => x.seconds),
    );
  };
  const pgferryS = median(runs.map((p) => p.wallSeconds));
  const dr = r.dumpRestore.runs;
  const dumpRestoreS = median(dr.map((x) => x.seconds));
  const best = fastestPgcopydb(r);
  const tool = r.pgcopydb.tool;
  return {
    copy: {
      pgferry_rows_per_s: Math.round(pgRate),
      pipe_binary_rows_per_s: Math.round(pipeRate('binary')),
      pipe_text_rows_per_s: Math.round(pipeRate('text')),
      ratio_vs_pipe: round3(pgRate / pipeRate('binary')),
      ratio_vs_pipe_text: round3(pgRate / pipeRate('text')),
    },
    clone: {
      pgferry_s: round3(pgferryS),
      dump_s: round3(median(dr.map((x) => x.dumpSeconds))),
      restore_s: round3(median(dr.map((x) => x.restoreSeconds))),
      dump_restore_s: round3(dumpRestoreS),
      pgcopydb_s: best ? round3(best.seconds) : null,
      pgcopydb_variant: best?.variant.label ?? null,
      pgcopydb_status: !tool.available ? `unavailable: ${tool.reason}` : best ? 'ok' : 'every run failed',
      ratio_vs_dump_restore: round3(pgferryS / dumpRestoreS),
      ratio_vs_pgcopydb: best ? round3(pgferryS / best.seconds) : null,
    },
  };
}

/** Mean backend-seconds per run of the biggest entries of the activity profiles. */
function whereTimeGoes(profiles: ActivityProfile[], top = 7): string {
  const sum = new Map<string, number>();
  for (const p of profiles) {
    for (const [k, v] of Object.entries(p.backendSeconds)) sum.set(k, (sum.get(k) ?? 0) + v);
  }
  return [...sum]
    .map(([k, v]) => [k, v / profiles.length] as const)
    .filter(([k, v]) => v >= 0.2 && !/: idle/.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${k} ${fixed(v)}`)
    .join(', ');
}

function cloneSection(r: CopyBenchResult, s: BenchSummary): string[] {
  const pgferry = r.pgferry.runs.map((p) => p.wallSeconds);
  const dr = r.dumpRestore.runs;
  const vs = (times: number[]) => fixed(s.clone.pgferry_s / median(times), 2);
  const row = (label: string, times: number[], ratio: string) =>
    `| ${label} | ${fixed(median(times), 2)} | ${spread(times)} | ${ratio} |`;
  const tool = r.pgcopydb.tool;
  const pgcopydbRows = !tool.available
    ? [`| pgcopydb clone | unavailable | – | – |`]
    : r.pgcopydb.variants.map((v) =>
        v.runs.length === 0
          ? `| ${v.label} | failed (${v.failures.length} run(s), see the JSON) | – | – |`
          : row(
              `${v.label}${v.failures.length ? ` (${v.failures.length} failed run(s) left out)` : ''}`,
              v.runs.map((x) => x.seconds),
              vs(v.runs.map((x) => x.seconds)),
            ),
      );
  const ratio = (n: number | null) => (n === null ? 'n/a' : fixed(n, 2));
  const best = fastestPgcopydb(r);
  const profiles: [string, ActivityProfile[]][] = [
    ['pgferry', r.pgferry.runs.map((p) => p.activity)],
    ['pg_dump + pg_restore', dr.map((x) => x.activity)],
    ...(best
      ? [[best.variant.label, best.variant.runs.map((x) => x.activity)] as [string, ActivityProfile[]]]
      : []),
  ];
  return [
    `### Whole clone: schema + data + primary keys, ${r.jobs} jobs, into an empty database`,
    '',
    '| run | seconds | min–max | pgferry ÷ run (time) |',
    '|---|--:|--:|--:|',
    row(`pgferry migrate --copy-only --jobs ${r.jobs} (process wall time)`, pgferry, '1.00'),
    row(
      `pg_dump -Fd -j ${r.jobs}`,
      dr.map((x) => x.dumpSeconds),
      '',
    ),
    row(
      `pg_restore -j ${r.jobs}`,
      dr.map((x) => x.restoreSeconds),
      '',
    ),
    row(
      'pg_dump + pg_restore',
      dr.map((x) => x.seconds),
      vs(dr.map((x) => x.seconds)),
    ),
    ...pgcopydbRows,
    '',
    `copy.ratio_vs_pipe = ${fixed(s.copy.ratio_vs_pipe, 2)} (higher is better) · ` +
      `clone.ratio_vs_dump_restore = ${fixed(s.clone.ratio_vs_dump_restore, 2)} · ` +
      `clone.ratio_vs_pgcopydb = ${ratio(s.clone.ratio_vs_pgcopydb)}` +
      `${best ? ` (against the faster pgcopydb run: ${best.variant.label})` : ` (pgcopydb ${s.clone.pgcopydb_status})`}` +
      ' (lower is better).',
    `pg_dump's directory: ${fixed(median(dr.map((x) => x.dumpBytes)) / MB)} MB (gzip, its default).` +
      (tool.available
        ? ` pgcopydb ${tool.version}${tool.installedByBench ? ', installed by this run' : ''}.`
        : ''),
    '',
    `Where the time goes: pg_stat_activity sampled every ${r.pgferry.runs[0]!.activity.intervalMs} ms, ` +
      'backend-seconds per run (mean over rounds; idle sessions in the JSON only), "CPU" = active ' +
      'without a wait event:',
    ...profiles.map(([label, p]) => `- ${label}: ${whereTimeGoes(p)}`),
  ];
}

interface Row {
  label: string;
  rows: number;
  bytes: number;
  times: number[];
}

export function markdown(r: CopyBenchResult, s: BenchSummary = summarize(r)): string {
  const runs = r.pgferry.runs;
  const last = runs[runs.length - 1]!;
  const phase = (f: (p: PgferryRun) => number) => runs.map(f);
  const formats = last.tables.map((t) => `${t.table.replace(/^public\./, '')} ${t.format}`).join(', ');
  const table: Row[] = [
    {
      label: `pgferry copy phase (${formats})`,
      rows: last.copy.rows,
      bytes: last.copy.bytes,
      times: phase((p) => p.phases.copy),
    },
    ...r.pipes.map((p) => ({
      label: `psql pipe, ${p.format}`,
      rows: p.runs[0]!.rows,
      bytes: p.bytes,
      times: p.runs.map((x) => x.seconds),
    })),
  ];
  const pgRate = table[0]!.rows / median(table[0]!.times);
  const phaseRow = (label: string, times: number[]) =>
    `| ${label} | ${fixed(median(times), 2)} | ${spread(times)} |`;
  const sizes = r.tables
    .map(
      (t) => `${t.table} ${int(t.rows)} rows, ${fixed(t.heapBytes / MB)} MB heap (~${t.avgRowBytes} B/row)`,
    )
    .join('; ');
  const cpu = runs.every((p) => p.cpu)
    ? ` CPU of the pgferry process (median): ${fixed(median(phase((p) => p.cpu!.user)), 2)} s user, ` +
      `${fixed(median(phase((p) => p.cpu!.system)), 2)} s system.`
    : '';
  return [
    `### Copy: ${sizes}`,
    '',
    `${r.date}, ${r.machine.cpus} CPUs, PostgreSQL ${r.machine.postgres} → same, node ${r.machine.node}, ` +
      `${r.jobs} tables/workers at once, median of ${r.rounds} round(s). MB = 10^6 bytes of COPY stream.`,
    '',
    '| run | rows | COPY MB | seconds | min–max | rows/s | MB/s | pgferry ÷ run (rows/s) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...table.map((x) => {
      const s = median(x.times);
      return (
        `| ${x.label} | ${int(x.rows)} | ${fixed(x.bytes / MB)} | ${fixed(s, 2)} | ${spread(x.times)} | ` +
        `${int(x.rows / s)} | ${fixed(x.bytes / MB / s)} | ${fixed(pgRate / (x.rows / s), 2)} |`
      );
    }),
    '',
    '| pgferry migrate --copy-only | seconds | min–max |',
    '|---|--:|--:|',
    phaseRow(
      'startup (node, config, preflight checks)',
      phase((p) => p.phases.startup),
    ),
    phaseRow(
      'schema (pre-data dump + apply, post-data recorded)',
      phase((p) => p.phases.schema),
    ),
    phaseRow(
      'copy (planning + streaming)',
      phase((p) => p.phases.copy),
    ),
    phaseRow(
      'of which streaming',
      phase((p) => p.copy.streamSeconds),
    ),
    phaseRow(
      'indexes (primary keys)',
      phase((p) => p.phases.indexes),
    ),
    phaseRow(
      'finalize (sequences, deferred objects)',
      phase((p) => p.phases.finalize),
    ),
    phaseRow(
      'exit (closing log line to process exit)',
      phase((p) => p.phases.exit),
    ),
    phaseRow(
      '**whole clone, process wall time**',
      phase((p) => p.wallSeconds),
    ),
    '',
    `Peak RSS of the pgferry process: ${fixed(Math.max(...phase((p) => p.peakRssMB)))} MB ` +
      `(max over rounds, ${last.rssSource}).${cpu}`,
    `Chunks: ${last.tables.map((t) => `${t.table} ${t.chunks}`).join(', ')}.`,
    r.bytesNote,
    '',
    ...cloneSection(r, s),
    '',
    r.verified,
  ].join('\n');
}
