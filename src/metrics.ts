// Every Prometheus metric pgferry exposes, in one place (listed in the README). Labels stay
// bounded: a table name (schema.table) or an error code, never a key or a value. The engine feeds
// them through its progress, replay-stats, batch and capture-log callbacks; phase, pause and
// downtime are read from the checkpoint store, the copy snapshot's age from the run, at scrape time.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { PHASES, type Phase, type TableRecord } from '../checkpoints/store.js';
import type { CaptureLogSize } from '../engine/capture/change-source.js';
import type { ProgressSnapshot } from '../engine/copy/progress.js';
import { type ReplayStats, TABLE_BACKLOGS } from '../engine/replay/replay.js';
import { ERRORS } from '../lib/error-codes.js';
import { VERSION } from './version.js';

/** What the gauges read from the run at each scrape. */
export interface RunState {
  phase: Phase;
  downtimeSeconds: number | null;
  /** A cutover froze (or was freezing) the source and has not finished. */
  cutoverInterrupted?: boolean;
  /** Since when each side has been unreachable (ISO time), while it is. */
  outageSince?: { source: string | null; target: string | null };
  /** Age of the oldest exported snapshot the copy holds open on the source (0 when none). */
  snapshotAgeSeconds?: number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly lag: Gauge;
  private readonly backlog: Gauge;
  private readonly copyRows: Counter<'table'>;
  private readonly copyBytes: Counter<'table'>;
  private readonly replayChanges: Counter<'table'>;
  private readonly replayBatches: Counter<'table'>;
  private readonly chunks: Gauge<'table' | 'state'>;
  private readonly batchSeconds: Histogram;
  private readonly errors: Counter<'code'>;
  private readonly reconnects: Counter<'side'>;
  private readonly estimatedRows: Gauge<'table'>;
  private readonly estimatedBytes: Gauge<'table'>;
  private readonly logBytes: Gauge;
  private readonly logRows: Gauge;
  private readonly driftTables: Gauge;
  private readonly driftChecks: Counter;
  private readonly lastBatch: Gauge;
  private readonly tableBacklog: Gauge<'table'>;
  private readonly reverseLag: Gauge;
  private readonly reverseBacklog: Gauge;
  private readonly reverseApplied: Gauge;
  private readonly conflicts: Counter<'table' | 'winner'>;
  private lastBatchValue: number | undefined;
  /** The last cumulative copy figures seen per table: counters advance by the difference. */
  private readonly copied = new Map<string, { rows: number; bytes: number }>();

  constructor(state: () => RunState) {
    const registers = [this.registry];
    new Gauge({
      name: 'pgferry_build_info',
      help: 'The pgferry version and the Node.js version running it (always 1)',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: VERSION, node: process.versions.node }, 1);
    new Gauge({
      name: 'pgferry_phase',
      help: 'The phase the run is in: 1 for the current phase, 0 for the others',
      labelNames: ['phase'],
      registers,
      collect() {
        const current = state().phase;
        for (const phase of PHASES) this.set({ phase }, phase === current ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgferry_paused',
      help: 'Whether replay is paused (1), by the operator or by schema drift (pauseReason in /status), or not (0)',
      registers,
      collect() {
        this.set(state().phase === 'paused' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgferry_cutover_interrupted',
      help: 'Whether a cutover froze writes on the source and has not finished (1): complete it or abort it',
      registers,
      collect() {
        this.set(state().cutoverInterrupted ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgferry_cutover_downtime_seconds',
      help: 'Write downtime of the cutover, from the freeze to the target declared ready (0 before it)',
      registers,
      collect() {
        this.set(state().downtimeSeconds ?? 0);
      },
    });
    this.lag = new Gauge({
      name: 'pgferry_replication_lag_seconds',
      help: 'Age of the oldest captured change not yet applied to the target',
      registers,
    });
    this.reverseLag = new Gauge({
      name: 'pgferry_reverse_lag_seconds',
      help: 'Reverse replication after the cutover: age of the oldest change captured on the new side not yet applied to the old source',
      registers,
    });
    this.reverseBacklog = new Gauge({
      name: 'pgferry_reverse_backlog_changes',
      help: 'Reverse replication after the cutover: changes captured on the new side waiting to be applied to the old source',
      registers,
    });
    this.reverseApplied = new Gauge({
      name: 'pgferry_reverse_applied_changes',
      help: 'Reverse replication after the cutover: changes applied to the old source by this process',
      registers,
    });
    this.conflicts = new Counter({
      name: 'pgferry_two_way_conflicts_total',
      help: 'Two-way sync: keys changed on both sides between two replays, by the side whose version was kept',
      labelNames: ['table', 'winner'],
      registers,
    });
    this.backlog = new Gauge({
      name: 'pgferry_backlog_changes',
      help: 'Captured changes waiting in the log on the source',
      registers,
    });
    this.copyRows = new Counter({
      name: 'pgferry_copy_rows_total',
      help: 'Rows copied to the target by the initial copy, per table',
      labelNames: ['table'],
      registers,
    });
    this.copyBytes = new Counter({
      name: 'pgferry_copy_bytes_total',
      help: 'COPY bytes streamed to the target by the initial copy, per table',
      labelNames: ['table'],
      registers,
    });
    this.replayChanges = new Counter({
      name: 'pgferry_replay_changes_total',
      help: 'Captured changes replayed to the target, per table',
      labelNames: ['table'],
      registers,
    });
    this.replayBatches = new Counter({
      name: 'pgferry_replay_batches_total',
      help: 'Replay batches applied to the target, per table',
      labelNames: ['table'],
      registers,
    });
    this.chunks = new Gauge({
      name: 'pgferry_copy_chunks',
      help: 'Chunks (primary-key ranges) of the initial copy per table: planned, and done',
      labelNames: ['table', 'state'],
      registers,
    });
    this.estimatedRows = new Gauge({
      name: 'pgferry_copy_estimated_rows',
      help: "Rows the initial copy expects per table: the source's estimate (reltuples) when the copy was planned",
      labelNames: ['table'],
      registers,
    });
    this.estimatedBytes = new Gauge({
      name: 'pgferry_copy_estimated_bytes',
      help: 'Size of each table on the source when the copy was planned (pg_table_size): the weight of its share of the copy',
      labelNames: ['table'],
      registers,
    });
    new Gauge({
      name: 'pgferry_copy_snapshot_age_seconds',
      help: 'Age of the oldest exported snapshot the copy holds open on the source (0 when none): vacuum on the source keeps every row version newer than it',
      registers,
      collect() {
        this.set(state().snapshotAgeSeconds ?? 0);
      },
    });
    this.logBytes = new Gauge({
      name: 'pgferry_capture_log_bytes',
      help: "Size on disk of this run's capture log tables on the source (with indexes and TOAST), measured every heartbeat",
      registers,
    });
    this.logRows = new Gauge({
      name: 'pgferry_capture_log_rows',
      help: "Rows in this run's capture log on the source, as the source's statistics count them (an estimate), measured every heartbeat",
      registers,
    });
    this.driftTables = new Gauge({
      name: 'pgferry_drift_tables',
      help: 'Replicated tables whose shape differs between the source and the target at the last drift check (replay pauses while one does)',
      registers,
    });
    this.driftChecks = new Counter({
      name: 'pgferry_drift_checks_total',
      help: "Drift checks run (each reads both sides' catalogs once)",
      registers,
    });
    this.lastBatch = new Gauge({
      name: 'pgferry_replay_last_batch_timestamp_seconds',
      help: 'When the last replay batch was applied to the target (unix time; 0 before the first)',
      registers,
    });
    this.tableBacklog = new Gauge({
      name: 'pgferry_replay_backlog_changes',
      help: `Captured changes waiting in the log per table, for the tables with a backlog (at most the ${TABLE_BACKLOGS} biggest)`,
      labelNames: ['table'],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: 'pgferry_replay_batch_duration_seconds',
      help: 'Time to apply one replay batch of one table (source read, target write, log delete)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.errors = new Counter({
      name: 'pgferry_errors_total',
      help: 'Errors by pgferry error code (including transient ones that were retried)',
      labelNames: ['code'],
      registers,
    });
    // Every code has a series from the start: increase() cannot see an error that creates its series.
    for (const code of Object.keys(ERRORS)) this.errors.inc({ code }, 0);
    this.reconnects = new Counter({
      name: 'pgferry_reconnects_total',
      help: 'Retries of a lost or refused connection, per side (source, target)',
      labelNames: ['side'],
      registers,
    });
    for (const side of ['source', 'target']) this.reconnects.inc({ side }, 0);
    new Gauge({
      name: 'pgferry_outage_seconds',
      help: 'How long a side has been unreachable (0 while it answers)',
      labelNames: ['side'],
      registers,
      collect() {
        const since = state().outageSince;
        for (const side of ['source', 'target'] as const) {
          const at = since?.[side];
          this.set({ side }, at ? Math.max(0, (Date.now() - Date.parse(at)) / 1000) : 0);
        }
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  reconnect(side: 'source' | 'target'): void {
    this.reconnects.inc({ side });
  }

  /** Starts the copy counters at what the state file says was copied before this process. */
  seedCopy(tables: TableRecord[]): void {
    for (const t of tables) {
      const table = `${t.schema}.${t.name}`;
      this.copyTable(table, t.rowsCopied, t.bytesCopied);
      this.chunks.set({ table, state: 'planned' }, t.chunksTotal);
      this.chunks.set({ table, state: 'done' }, t.chunksDone);
      this.estimate(table, t.rowsEstimate, t.bytesEstimate);
    }
  }

  copyProgress(p: ProgressSnapshot): void {
    for (const t of p.tables) {
      this.copyTable(t.table, t.rows, t.bytes);
      this.estimate(t.table, t.rowsEstimate, t.bytesEstimate);
      this.chunks.set({ table: t.table, state: 'planned' }, t.chunksTotal);
      this.chunks.set({ table: t.table, state: 'done' }, t.chunksDone);
    }
  }

  private estimate(table: string, rows: number, bytes: number): void {
    this.estimatedRows.set({ table }, rows);
    this.estimatedBytes.set({ table }, bytes);
  }

  private copyTable(table: string, rows: number, bytes: number): void {
    const last = this.copied.get(table) ?? { rows: 0, bytes: 0 };
    // Bytes of a failed chunk are taken back by the progress; a counter never goes down.
    if (rows > last.rows) this.copyRows.inc({ table }, rows - last.rows);
    if (bytes > last.bytes) this.copyBytes.inc({ table }, bytes - last.bytes);
    if (!this.copied.has(table)) {
      this.copyRows.inc({ table }, 0);
      this.copyBytes.inc({ table }, 0);
    }
    this.copied.set(table, { rows: Math.max(rows, last.rows), bytes: Math.max(bytes, last.bytes) });
  }

  /** Stats from the replay loop, or the last ones saved in the state file (at startup). */
  replayStats(s: Pick<ReplayStats, 'lagSeconds' | 'backlog'> & Partial<ReplayStats>): void {
    this.lag.set(s.lagSeconds);
    this.backlog.set(s.backlog);
    if (s.tableBacklogs) {
      this.tableBacklog.reset();
      for (const t of s.tableBacklogs) this.tableBacklog.set({ table: t.table }, t.changes);
    }
    if (s.lastBatchAt) this.batchApplied(Date.parse(s.lastBatchAt) / 1000);
  }

  /** Stats from the reverse replay loop (or the last saved ones, at startup). */
  reverseStats(s: Pick<ReplayStats, 'lagSeconds' | 'backlog'> & Partial<ReplayStats>): void {
    this.reverseLag.set(s.lagSeconds);
    this.reverseBacklog.set(s.backlog);
    if (s.appliedTotal !== undefined) this.reverseApplied.set(s.appliedTotal);
  }

  twoWayConflicts(table: string, winner: 'source' | 'target', n: number): void {
    this.conflicts.inc({ table, winner }, n);
  }

  replayBatch(table: string, changes: number, seconds: number): void {
    this.replayChanges.inc({ table }, changes);
    this.replayBatches.inc({ table });
    this.batchSeconds.observe(seconds);
    this.batchApplied(Date.now() / 1000);
  }

  private batchApplied(at: number): void {
    // A saved time never moves the gauge back past a batch this process applied.
    if (at > (this.lastBatchValue ?? 0)) {
      this.lastBatchValue = at;
      this.lastBatch.set(at);
    }
  }

  captureLog(size: CaptureLogSize): void {
    this.logBytes.set(size.bytes);
    this.logRows.set(size.rows);
  }

  /** A drift check ran and found this many tables differing. */
  drift(tables: number): void {
    this.driftTables.set(tables);
    this.driftChecks.inc();
  }

  error(code: string): void {
    this.errors.inc({ code });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
