// What a Replayer is given (ReplayOptions) and what it reports (ReplayStats).
import type { Logger } from 'pino';
import type { CaptureRecord, CheckpointStore } from '../../checkpoints/store.js';
import type { ChangeSource } from '../capture/change-source.js';
import type { DriftWatch } from '../drift/drift.js';
import type { ConnInfo } from '../shared/conn-info.js';
import type { TwoWayContext } from './batch-retry.js';

export interface ReplayStats {
  lagSeconds: number;
  backlog: number;
  changesPerSec: number;
  appliedTotal: number;
  batches: number;
  at: string;
  /** When the last batch was applied (by this run, before a restart too); null before the first. */
  lastBatchAt: string | null;
  /** The tables with a backlog, biggest first, at most TABLE_BACKLOGS of them. */
  tableBacklogs: { table: string; changes: number }[];
}

/**
 * Shortest time between the starts of two replay rounds that each found less than a batch. A
 * round costs the source, the target and pgferry about the same whatever it finds, so this trades
 * lag for cost. Measured under pgbench -c 4 (scale 20, trigger capture, 3 interleaved rounds of
 * 30 s): 20 ms gave a lag p95 of 0.023–0.029 s, 3,702–4,026 tps and pgferry 0.039–0.046 ms of its
 * own CPU per transaction; 40 ms 0.046–0.051 s, 4,191–4,336 tps and 0.025 ms; 60 ms 0.066–0.073 s,
 * 4,202–4,471 tps and 0.018–0.020 ms.
 */
export const ROUND_INTERVAL_MS = 50;

/** How many tables' backlogs the stats carry (a bounded set of per-table metric series). */
export const TABLE_BACKLOGS = 50;

export interface ReplayOptions {
  source: ConnInfo;
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  jobs: number;
  signal: AbortSignal;
  /** Most log rows per batch; a batch that breaks a UNIQUE constraint is redone whole. */
  batchSize?: number;
  pollMs?: number;
  /** Return once a round finds every log empty. */
  untilSynced?: boolean;
  /** With untilSynced: return as soon as the lag is at most this, after at least one round. */
  syncedLagSeconds?: number;
  onStats?: (s: ReplayStats) => void;
  /** After each applied batch: the table (schema.name), its changes, and how long it took. */
  onBatch?: (table: string, changes: number, seconds: number) => void;
  /** A batch failed with a transient error and is retried. */
  onRetry?: (code: string) => void;
  /** A batch failed: the error, so that a lost connection shows as an outage while it is retried. */
  onLost?: (err: unknown) => void;
  /** A batch went through: any outage is over. */
  onHealthy?: () => void;
  /** Fewest changes per slice worth a worker of its own (a table's backlog is split above twice this). */
  minSliceChanges?: number;
  /** Where the changes come from; the run's change source (built from the checkpoint store) by default. */
  changes?: ChangeSource;
  /** The tables replayed (reverse replication's on the target); the store's captures by default. */
  captures?: CaptureRecord[];
  /** Two-way sync: conflicts resolved where the batch is written, one direction at a time per table. */
  twoWay?: TwoWayContext;
  /** The meta key the replay's figures are kept under (the last batch time is read from it); `replay` by default. */
  statsKey?: string;
  /**
   * Schema drift checks (engine/drift/): before the first batch, on their interval, and when a
   * batch fails in a way a shape difference explains. Without it, tables replay as recorded.
   */
  drift?: DriftWatch;
}
