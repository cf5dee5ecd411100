// The `migrate` pipeline: bind the run → schema → capture → copy → indexes → replicate (→ cutover),
// or with --copy-only: bind → schema → copy → indexes → finish (sequences and deferred objects at
// once); once cut over, reverse replication and a rollback (engine/reverse/). Every phase is
// recorded in the checkpoint store and skipped on resume once finished; each phase's work is in
// its folder, what they share in engine/run/context.ts.
import type { Logger } from 'pino';
import { CheckpointStore } from '../checkpoints/store.js';
import type { CaptureLogSize, ChangeSourceKind } from './capture/change-source.js';
import { capturePhase, resumeCapture } from './capture/phase.js';
import { copyPhase } from './copy/phase.js';
import type { ProgressSnapshot } from './copy/progress.js';
import type { CutoverResult, CutoverSettings } from './cutover/cutover.js';
import type { DriftMode } from './drift/modes.js';
import { replicatePhase } from './replay/phase.js';
import type { ReplayStats } from './replay/replay.js';
import { type ReverseOptions, recordDirections, reversePhase } from './reverse/phase.js';
import { RunContext } from './run/context.js';
import type { RunControl } from './run/control.js';
import { dropRunMark } from './run/identity.js';
import { waitOutOutages } from './run/wait-out-outages.js';
import { resumeAutovacuum } from './schema/autovacuum.js';
import { finishPhase } from './schema/finish-phase.js';
import { indexPhase } from './schema/index-phase.js';
import { schemaPhase } from './schema/phase.js';
import type { ConnInfo } from './shared/conn-info.js';
import type { OutageTracker } from './shared/outage.js';
import type { TableFilter } from './shared/table-filter.js';

export interface MigrateOptions extends ReverseOptions {
  source: ConnInfo;
  target: ConnInfo;
  statePath: string;
  jobs: number;
  filter: TableFilter;
  /** copy-only: one snapshot, no capture, finish with sequences and deferred objects.
   *  exit-when-synced: capture, copy, replay until the backlog is drained, then return.
   *  run: capture, copy, replay until the signal aborts. */
  mode: 'copy-only' | 'exit-when-synced' | 'cutover-when-synced' | 'run';
  /** Where replay reads the source's changes (--capture); triggers by default. */
  capture?: ChangeSourceKind;
  /** How the cutover runs (--cutover-when-synced). */
  cutover?: CutoverSettings;
  chunkBytes: number;
  /** With capture: a copy snapshot older than this is replaced by a fresh one. */
  maxSnapshotAgeMs: number;
  /** How long capture install retries a locked table before giving up on it. */
  captureLockWaitMs?: number;
  batchSize?: number;
  log: Logger;
  signal: AbortSignal;
  progressIntervalMs?: number;
  onProgress?: (p: ProgressSnapshot) => void;
  onReplayStats?: (s: ReplayStats) => void;
  /** After each applied replay batch (metrics). */
  onReplayBatch?: (table: string, changes: number, seconds: number) => void;
  /** A copy chunk or a replay batch failed with a transient error and is retried (metrics). */
  onRetry?: (code: string) => void;
  /** The operator's handle on the run (the HTTP API): store, pause, cutover requests. */
  control?: RunControl;
  /** How long a lost or refused connection is retried before the run fails (--retry-for). */
  retryForMs?: number;
  /** A side's lost connection is about to be retried (metrics). */
  onReconnect?: (side: 'source' | 'target') => void;
  /** Schema drift: pause replay on any shape difference, or first apply the additive ones (--drift). */
  drift?: DriftMode;
  /** After each drift check: how many replicated tables differ between the sides (metrics). */
  onDriftCheck?: (driftedTables: number) => void;
  /** The size of this run's capture log on the source, measured with each capture heartbeat (metrics). */
  onCaptureLog?: (size: CaptureLogSize) => void;
}

export interface MigrateResult {
  resumed: boolean;
  tables: number;
  rows: number;
  bytes: number;
  seconds: number;
  sequences: number;
  replay: ReplayStats | null;
  cutover: CutoverResult | null;
  rollback?: Awaited<ReturnType<typeof reversePhase>>;
}

export async function migrate(opts: MigrateOptions): Promise<MigrateResult> {
  const started = Date.now();
  const store = CheckpointStore.open(opts.statePath, { create: true });
  try {
    store.acquireLock();
    opts.control?.attachStore(store);
    return await waitOutOutages(store, opts, (outages) => attempt(opts, store, outages, started));
  } finally {
    opts.control?.attachStore(null);
    store.close();
  }
}

/** The forward pipeline from where the checkpoints say it stands, up to replication (and a cutover). */
async function forward(run: RunContext): Promise<Pick<MigrateResult, 'replay' | 'cutover'>> {
  const { store } = run;
  if (!run.copyOnly && store.getMeta('capture_installed')) await resumeCapture(run);
  if (!store.phaseDone('schema')) await schemaPhase(run);
  if (!run.copyOnly && !store.getMeta('capture_installed')) await capturePhase(run);
  if (!store.phaseDone('copy')) await copyPhase(run);
  await run.releaseSnapshots();
  if (!store.phaseDone('indexes')) await indexPhase(run);
  await resumeAutovacuum(run.dst, store, run.opts.log);
  if (!run.copyOnly) return replicatePhase(run);
  if (!store.phaseDone('cutover')) await finishPhase(run);
  store.setPhase('done');
  run.finish('done');
  await dropRunMark(run.dst);
  return { replay: null, cutover: null };
}

/** One attempt of the run, from its checkpoints (an outage ends it; the next starts here again). */
async function attempt(
  opts: MigrateOptions,
  store: CheckpointStore,
  outages: OutageTracker,
  started: number,
): Promise<MigrateResult> {
  const run = await RunContext.open(opts, store, outages);
  try {
    await run.bind();
    run.healthy();
    const reverse = recordDirections(store, opts);
    let outcome: Pick<MigrateResult, 'replay' | 'cutover' | 'rollback'> = { replay: null, cutover: null };
    if (store.phaseDone('done') && !reverse()) {
      opts.log.info('this run is already done; nothing to do');
      return run.result(started, outcome);
    }
    if (!store.phaseDone('done')) {
      store.event('info', store.phase(), run.resumed ? 'run resumed' : 'run started');
      outcome = await forward(run);
    }
    // Reverse replication once cut over; a rollback through the API makes the run go forward again.
    while (store.phaseDone('done') && reverse() && !opts.signal.aborted) {
      const rolledBack = await reversePhase(run, opts.onReverseStats);
      if (!rolledBack) break;
      outcome = { ...(await forward(run)), rollback: rolledBack };
    }
    if (run.heartbeat?.removed) throw run.heartbeat.removed; // a capture removed: failed, not cancelled
    return run.result(started, outcome);
  } catch (caught) {
    throw run.failed(caught);
  } finally {
    await run.close();
  }
}
