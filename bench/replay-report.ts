// The replay benchmark's result and its markdown: what capture costs the source, how fast replay
// drains a standing backlog, how far it lags behind a steady load, and the memory it takes.

import type { CopyLimit } from './copy-limit.js';
import type { PgbenchRun } from './pgbench.js';
import type { BacklogStatement } from './replay-data.js';
import type { LogicalRun } from './replay-logical.js';

export interface LagSample {
  /** ms since the start of the pgbench run. */
  t: number;
  lagSeconds: number;
  backlog: number;
  changesPerSec: number;
  at: string;
}

export interface ReplayBenchResult {
  date: string;
  scale: number;
  quick: boolean;
  machine: {
    cpus: number;
    memoryGB: number;
    node: string;
    postgres: string;
    /** os.loadavg()[0] just before each timed part: other work on the machine shows here. */
    loadAverage1m: Record<string, number>;
  };
  build: { gitHead: string; uncommitted: string[]; distBuiltAt: string; rebuiltDuringRun?: boolean };
  jobs: number;
  excluded: string[];
  commands: Record<string, string>;
  tables: Record<string, number>;
  initialMigrate: { wallSeconds: number; peakRssMB: number };
  capture: {
    tps_off: number;
    tps_on: number;
    tps_ratio: number;
    pgbench_off: PgbenchRun;
    pgbench_on: PgbenchRun;
    /** Log rows the capture-on pgbench run left behind (part of the backlog). */
    logged_by_pgbench: number;
  };
  replay: {
    backlog_statements: (BacklogStatement & { times: number })[];
    backlog_per_table: Record<string, number>;
    backlog_changes: number;
    applied_total: number;
    batches: number;
    drain_seconds: number;
    drain_wall_seconds: number;
    drain_cpu_seconds: number;
    changes_per_s: number;
    /** Native logical replication applying the same backlog. */
    logical: LogicalRun;
    /** changes_per_s over logical replication's (higher is better). */
    ratio_vs_logical: number;
    /** A plain binary COPY of pgbench_accounts into an empty keyed copy on the target: its write limit. */
    copy_limit: CopyLimit;
    /** changes_per_s over copy_limit's rows/s (issue 15: ≥ 0.5). */
    ratio_vs_copy: number;
    /** changes_per_s over the rows/s at which the target replaces existing rows (copy_limit.rewrite). */
    ratio_vs_rewrite: number;
    lag_pgbench: PgbenchRun;
    lag_pgbench_tps: number;
    lag_p50_s: number;
    lag_p95_s: number;
    lag_max_s: number;
    lag_samples: LagSample[];
    backlog_max: number;
    backlog_at_pgbench_end: number;
    converge_seconds: number;
    lag_run_cpu_seconds: number;
  };
  memory: { drain_mb: number; lag_run_mb: number; initial_migrate_mb: number };
  rss_peak_mb: number;
  verified: string[];
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, d = 1) => n.toFixed(d);

/** Nearest-rank percentile. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function markdown(r: ReplayBenchResult): string {
  const c = r.capture;
  const p = r.replay;
  const perTable = Object.entries(p.backlog_per_table)
    .map(([t, n]) => `${t.replace(/^public\.pgbench_/, '')} ${int(n)}`)
    .join(', ');
  const on = c.pgbench_on;
  const lag = p.lag_pgbench;
  return [
    `### Replay: pgbench scale ${r.scale} (${int(r.tables['public.pgbench_accounts'] ?? 0)} accounts)`,
    '',
    `${r.date}, ${r.machine.cpus} CPUs, PostgreSQL ${r.machine.postgres} → same, node ${r.machine.node}, ` +
      `pgferry ${r.build.gitHead}${r.build.uncommitted.length > 0 ? ' + uncommitted changes' : ''} ` +
      `(dist/ built ${r.build.distBuiltAt}), --jobs ${r.jobs}, \`--exclude ${r.excluded.join(' ')}\` (pgbench_history has no primary ` +
      'key, so it is neither captured nor replayed; pgbench still inserts into it).',
    '',
    '| measure | value |',
    '|---|--:|',
    `| pgbench tps, capture off (\`-c ${on.clients} -j ${on.threads} -T ${on.seconds} -n\`) | ${fixed(c.tps_off)} |`,
    `| pgbench tps, capture on (triggers installed, pgferry not running) | ${fixed(c.tps_on)} |`,
    `| **capture.tps_ratio** (on ÷ off) | **${fixed(c.tps_ratio, 3)}** |`,
    `| standing backlog (captured changes: ${perTable}) | ${int(p.backlog_changes)} |`,
    `| drain: \`migrate --exit-when-synced\`, first log line → "synced", s | ${fixed(p.drain_seconds, 2)} |`,
    `| **replay.changes_per_s** (backlog ÷ drain) | **${int(p.changes_per_s)}** |`,
    `| drain: process wall time, s (batches) | ${fixed(p.drain_wall_seconds, 2)} (${p.batches}) |`,
    `| drain: pgferry CPU, s (user + system) | ${fixed(p.drain_cpu_seconds, 2)} |`,
    `| native logical replication, same backlog: ENABLE → last commit applied, s (apply worker up after) | ${fixed(p.logical.catch_up_s, 2)} (${fixed(p.logical.worker_start_s, 2)}) |`,
    `| logical replication changes/s | ${int(p.logical.changes_per_s)} |`,
    `| **replay.ratio_vs_logical** (pgferry ÷ logical changes/s) | **${fixed(p.ratio_vs_logical, 2)}** |`,
    `| the target's write limit: plain binary COPY of ${p.copy_limit.table} (${int(p.copy_limit.rows)} rows) into a keyed copy, rows/s | ${int(p.copy_limit.rows_per_s)} |`,
    `| **replay.ratio_vs_copy** (pgferry changes/s ÷ that) | **${fixed(p.ratio_vs_copy, 2)}** |`,
    `| the target replacing existing rows: DELETE of every row of that copy, then the same COPY, one transaction, rows/s | ${int(p.copy_limit.rewrite.rows_per_s)} |`,
    `| replay.ratio_vs_rewrite (pgferry changes/s ÷ that) | ${fixed(p.ratio_vs_rewrite, 2)} |`,
    `| pgbench tps while pgferry replays (\`-T ${lag.seconds}\`) | ${fixed(p.lag_pgbench_tps)} |`,
    `| lag p50 / **p95 (replay.lag_p95_s)** / max, s | ${fixed(p.lag_p50_s, 2)} / **${fixed(p.lag_p95_s, 2)}** / ${fixed(p.lag_max_s, 2)} |`,
    `| backlog max during the load / at its end, changes | ${int(p.backlog_max)} / ${int(p.backlog_at_pgbench_end)} |`,
    `| converge: pgbench end → every log empty, s | ${fixed(p.converge_seconds, 2)} |`,
    `| **rss_peak_mb** (drain / lag run) | **${fixed(r.rss_peak_mb)}** (${fixed(r.memory.drain_mb)} / ${fixed(r.memory.lag_run_mb)}) |`,
    '',
    `Lag: ${p.lag_samples.length} distinct replay stats records (pgferry writes them to its state file ` +
      'about once a second; the bench reads it every 0.5 s) taken during the pgbench run; the lag is the ' +
      'age of the oldest captured change not yet replayed when a round starts.',
    ...(r.build.rebuiltDuringRun
      ? ['**dist/ was rebuilt during this run: the parts may have run different code.**']
      : []),
    `Logical replication: ${p.logical.method}; its walsender decoded ${fixed(p.logical.wal_bytes / 1e6)} MB of WAL ` +
      "(pgferry's capture-log inserts and pgbench_history's rows included; only the three tables' changes are sent).",
    `Verified equal (row count, sum of the balance, order-independent hash of every row): ${r.verified.join('; ')}.`,
  ].join('\n');
}
