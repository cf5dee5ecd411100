// The source-cost bench's result and its markdown: per mode (no replication, native logical
// replication, pgferry capturing and replaying with triggers, its triggers alone with nothing
// replaying, and pgferry with --capture logical), pgbench's tps on the source and the source
// server's CPU per committed transaction, medians over the rounds, with the CPU broken down by
// process kind.
import type { PgbenchRun } from './pgbench.js';
import type { ServerCpu } from './source-cpu.js';

export const MODES = ['none', 'logical', 'pgferry', 'triggers', 'pgferry-logical'] as const;
export type Mode = (typeof MODES)[number];
/** The modes a round is ordered by: `triggers` is measured right after each `pgferry` run, on its capture. */
export const ROUND_MODES = MODES.filter((m): m is Exclude<Mode, 'triggers'> => m !== 'triggers');

export interface SourceCostRun {
  round: number;
  mode: Mode;
  pgbench: PgbenchRun;
  tps: number;
  transactions: number;
  /** The source server's CPU over the pgbench run (postmaster + children, from /proc). */
  source_cpu: ServerCpu;
  source_cpu_ms_per_txn: number;
  source_cpu_ms_per_txn_by_kind: Record<string, number>;
  /** The target server's CPU over the run (context: on one machine it competes with pgbench). */
  target_cpu_ms: number;
  /** The pgferry process's own CPU over the run (pgferry mode only). */
  pgferry_process_cpu_ms: number | null;
  /** pgferry: seconds from its start until it replicated (schema, capture, copy, indexes);
   *  logical: seconds to apply what the slot held from the other modes' runs before this one. */
  ready_s: number | null;
  /** Seconds from pgbench's end until the replica had everything (null for none). */
  catch_up_s: number | null;
  verified: string | null;
  loadAverage1m: number;
}

export interface ModeSummary {
  runs: number;
  tps_median: number;
  tps_min: number;
  tps_max: number;
  cpu_ms_per_txn_median: number;
  cpu_ms_per_txn_min: number;
  cpu_ms_per_txn_max: number;
  /** Median over the rounds of each kind's CPU ms per transaction (medians need not sum to the total). */
  cpu_ms_per_txn_by_kind: Record<string, number>;
  catch_up_s_median: number | null;
  target_cpu_ms_per_txn_median: number;
  /** The pgferry process's own CPU per transaction (pgferry mode; null otherwise). */
  pgferry_process_cpu_ms_per_txn_median: number | null;
}

export interface SourceCostResult {
  date: string;
  scale: number;
  quick: boolean;
  seconds_per_run: number;
  rounds: number;
  order: Mode[];
  machine: { cpus: number; memoryGB: number; node: string; postgres: string; clkTck: number };
  method: Record<string, string>;
  commands: Record<string, string>;
  runs: SourceCostRun[];
  modes: Partial<Record<Mode, ModeSummary>>;
  /** pgferry's median tps over no replication's, and over logical replication's (target ≥ 1). */
  tps_ratio_vs_none: number | null;
  tps_ratio_vs_logical: number | null;
  /** pgferry's median source CPU per transaction over no replication's (target ≤ 1.3). */
  cpu_per_txn_ratio_vs_none: number | null;
  logical_cpu_per_txn_ratio_vs_none: number | null;
  logical_tps_ratio_vs_none: number | null;
  /** pgferry with --capture logical: median tps over logical replication's, CPU/txn over none's. */
  logical_capture_tps_ratio_vs_logical: number | null;
  logical_capture_cpu_per_txn_ratio_vs_none: number | null;
  /** pgferry's capture triggers alone, nothing replaying: CPU/txn and tps over none's (the floor of trigger capture). */
  triggers_cpu_per_txn_ratio_vs_none: number | null;
  triggers_tps_ratio_vs_none: number | null;
}

/** How each mode and figure is made, as the JSON says it. */
export const METHOD: Record<string, string> = {
  clusters:
    'two PostgreSQL 15 clusters from test/support/cluster.ts (wal_level=logical on both, fsync and synchronous_commit off), the same for every mode',
  none: 'no capture triggers on the source (checked before the run), the subscription disabled (its walsender gone)',
  logical:
    'publication of the three keyed pgbench tables; a subscription (copy_data = false) into a TEMPLATE copy of a copy-only clone; enabled and caught up on what its slot kept before the run, applying during it; disabled after it',
  pgferry:
    'a fresh `pgferry migrate` daemon into a fresh target database every round (pgbench_history excluded), started before the run and timed from its first replay stats; stopped after the catch-up and verify, its capture removed with `pgferry cleanup --force`, its target dropped',
  triggers:
    "right after each pgferry run, on its source as it left it: the daemon stopped (SIGTERM) after its catch-up, so its capture triggers fire and fill the logs but nothing reads or deletes them; then `pgferry cleanup --force`. The application's cost of trigger capture with no replay at all",
  'pgferry-logical':
    "as pgferry, with `--capture logical`: a publication and a slot (pgoutput) instead of triggers, the slot checked before the copy; its catch-up ends when the position pgferry confirmed to its slot (recorded in its state file at most once a second) passes the WAL position read at pgbench's end",
  before_each_run:
    'VACUUM (ANALYZE) of the three keyed tables, TRUNCATE pgbench_history, CHECKPOINT on both clusters, sync',
  cpu: "Δ over the run of the postmaster's utime+stime+cutime+cstime plus its live children's utime+stime, from /proc every 250 ms, per committed pgbench transaction",
  catch_up:
    "pgferry: from pgbench's end until its capture logs are empty; logical: until the subscriber's origin passes a marker commit made after pgbench's end",
};

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarise(runs: SourceCostRun[]): ModeSummary {
  const tps = runs.map((r) => r.tps);
  const cpu = runs.map((r) => r.source_cpu_ms_per_txn);
  const kinds = new Set(runs.flatMap((r) => Object.keys(r.source_cpu_ms_per_txn_by_kind)));
  const byKind: Record<string, number> = {};
  for (const k of kinds) byKind[k] = median(runs.map((r) => r.source_cpu_ms_per_txn_by_kind[k] ?? 0));
  const catchUps = runs.map((r) => r.catch_up_s).filter((x): x is number => x !== null);
  return {
    runs: runs.length,
    tps_median: median(tps),
    tps_min: Math.min(...tps),
    tps_max: Math.max(...tps),
    cpu_ms_per_txn_median: median(cpu),
    cpu_ms_per_txn_min: Math.min(...cpu),
    cpu_ms_per_txn_max: Math.max(...cpu),
    cpu_ms_per_txn_by_kind: byKind,
    catch_up_s_median: catchUps.length > 0 ? median(catchUps) : null,
    target_cpu_ms_per_txn_median: median(runs.map((r) => r.target_cpu_ms / r.transactions)),
    pgferry_process_cpu_ms_per_txn_median: runs.every((r) => r.pgferry_process_cpu_ms !== null)
      ? median(runs.map((r) => r.pgferry_process_cpu_ms! / r.transactions))
      : null,
  };
}

const f = (n: number | null | undefined, digits = 3) =>
  n === null || n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits);

/** The kinds shown as columns, in this order when present; any other kind goes in "rest". */
const KIND_COLUMNS = [
  'pgbench',
  'pgferry',
  'walsender',
  'autovacuum',
  'checkpointer',
  'walwriter',
  'bgwriter',
];

export function markdown(r: SourceCostResult): string {
  const none = r.modes.none;
  const logical = r.modes.logical;
  const lines = [
    `### What replication costs the source: pgbench scale ${r.scale}, ${r.seconds_per_run} s runs, ` +
      `${r.rounds} round(s)${r.quick ? ' (--quick)' : ''}, ${r.date}`,
    '',
    `\`pgbench -c 4 -j 2 -T ${r.seconds_per_run} -n\` on the source; rounds interleaved in the order ` +
      `${r.order.join(', ')}${r.order.includes('pgferry') ? ' (triggers right after each pgferry run)' : ''}; medians (min–max). CPU is the source server's (postmaster and its ` +
      `children, from /proc) per committed pgbench transaction. ${r.machine.cpus} CPUs shared by ` +
      'pgbench, both servers and the replicator: the tps of a replicating mode also pays for the ' +
      "replica's CPU on this machine (the target server's, and pgferry's own process's, shown for context).",
    '',
    '| mode | tps | tps ÷ logical | CPU ms/txn | ÷ none | catch-up s | target CPU ms/txn | pgferry process CPU ms/txn |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const mode of MODES) {
    const m = r.modes[mode];
    if (!m) continue;
    lines.push(
      `| ${mode} | ${f(m.tps_median, 1)} (${f(m.tps_min, 0)}–${f(m.tps_max, 0)}) | ` +
        `${logical ? f(m.tps_median / logical.tps_median) : '–'} | ` +
        `${f(m.cpu_ms_per_txn_median)} (${f(m.cpu_ms_per_txn_min)}–${f(m.cpu_ms_per_txn_max)}) | ` +
        `${none ? f(m.cpu_ms_per_txn_median / none.cpu_ms_per_txn_median) : '–'} | ` +
        `${f(m.catch_up_s_median, 2)} | ${f(m.target_cpu_ms_per_txn_median)} | ` +
        `${f(m.pgferry_process_cpu_ms_per_txn_median)} |`,
    );
  }
  lines.push(
    '',
    'Where the source CPU goes (ms per transaction, medians by kind; "rest": postmaster, other ' +
      'background processes, other clients, the bench monitor, backends that exited between samples):',
    '',
    `| mode | ${KIND_COLUMNS.join(' | ')} | rest |`,
    `|---|${KIND_COLUMNS.map(() => '--:|').join('')}--:|`,
  );
  for (const mode of MODES) {
    const m = r.modes[mode];
    if (!m) continue;
    const k = m.cpu_ms_per_txn_by_kind;
    const rest = Object.entries(k)
      .filter(([kind]) => !KIND_COLUMNS.includes(kind))
      .reduce((a, [, v]) => a + v, 0);
    lines.push(`| ${mode} | ${KIND_COLUMNS.map((c) => f(k[c] ?? 0)).join(' | ')} | ${f(rest)} |`);
  }
  lines.push(
    '',
    `pgferry ÷ none: tps ${f(r.tps_ratio_vs_none)}, CPU/txn ${f(r.cpu_per_txn_ratio_vs_none)} (target ≤ 1.3); ` +
      `pgferry ÷ logical: tps ${f(r.tps_ratio_vs_logical)} (target ≥ 1); ` +
      `logical ÷ none: tps ${f(r.logical_tps_ratio_vs_none)}, CPU/txn ${f(r.logical_cpu_per_txn_ratio_vs_none)}; ` +
      `pgferry --capture logical: tps ÷ logical ${f(r.logical_capture_tps_ratio_vs_logical)}, ` +
      `CPU/txn ÷ none ${f(r.logical_capture_cpu_per_txn_ratio_vs_none)}; ` +
      `pgferry's triggers alone (nothing replaying) ÷ none: tps ${f(r.triggers_tps_ratio_vs_none)}, ` +
      `CPU/txn ${f(r.triggers_cpu_per_txn_ratio_vs_none)}: the floor of trigger capture, whatever the replay costs.`,
  );
  return lines.join('\n');
}
