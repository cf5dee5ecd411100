// The copy benchmark's markdown: throughput side by side, then pgferry's phases. Times are medians
// over the rounds, with the spread (min–max) beside them. The ratio column is pgferry's copy
// throughput over the other run's (rows/s; same rows, so also the other's time over pgferry's):
// above 1 pgferry is faster, below 1 it is slower.
import type { TableSize } from './dataset.js';
import type { PgferryRun } from './pgferry-run.js';
import type { PipeRun } from './pipe.js';

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
  };
  jobs: number;
  tables: TableSize[];
  pgferry: { runs: PgferryRun[]; commandLine: string };
  pipes: {
    format: 'binary' | 'text';
    runs: PipeRun[];
    bytes: number;
    bytesPerTable: Record<string, number>;
    commandLines: string[];
  }[];
  bytesNote: string;
  verified: string;
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

interface Row {
  label: string;
  rows: number;
  bytes: number;
  times: number[];
}

export function markdown(r: CopyBenchResult): string {
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
      '**whole clone, process wall time**',
      phase((p) => p.wallSeconds),
    ),
    '',
    `Peak RSS of the pgferry process: ${fixed(Math.max(...phase((p) => p.peakRssMB)))} MB ` +
      `(max over rounds, ${last.rssSource}).${cpu}`,
    `Chunks: ${last.tables.map((t) => `${t.table} ${t.chunks}`).join(', ')}.`,
    r.bytesNote,
    r.verified,
  ].join('\n');
}
