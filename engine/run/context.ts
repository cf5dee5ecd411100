// What every phase of one attempt of `migrate` works with: the options (whose signal also stops
// the run when its capture is removed), the checkpoint store, a control session on each side, the
// outage tracker, and what is held across phases (the copy's snapshots, the capture heartbeat).
import type pg from 'pg';
import type { CheckpointStore, Phase } from '../../checkpoints/store.js';
import { isPgferryError, redact } from '../../lib/errors.js';
import type { CaptureHeartbeat } from '../capture/heartbeat.js';
import type { SnapshotPool } from '../copy/snapshot.js';
import type { MigrateOptions, MigrateResult } from '../migrate.js';
import { connectionHeadroom } from '../preflight/connections.js';
import { splitTables, type TableInfo } from '../shared/catalog.js';
import { connect } from '../shared/db.js';
import { isConnectionLoss, type OutageTracker, sideOf } from '../shared/outage.js';
import { bindRun } from './binding.js';

export class RunContext {
  readonly opts: MigrateOptions;
  /** Aborted when the heartbeat finds this run's capture removed from the source. */
  readonly captureLost = new AbortController();
  /** This run's heartbeat on the source, from its capture's install (or resume) until the run ends. */
  heartbeat: CaptureHeartbeat | undefined;
  /** The copy's snapshots while they are held. */
  snapshots: SnapshotPool | undefined;
  /** Index builds of copied tables still running when the copy's last chunk is in (index phase). */
  earlyIndexes: Promise<void> | undefined;
  resumed = false;

  private constructor(
    opts: MigrateOptions,
    readonly store: CheckpointStore,
    /** Each side's outage: recorded when a chunk or batch loses its connection, cleared when one succeeds. */
    readonly outages: OutageTracker,
    readonly src: pg.Client,
    readonly dst: pg.Client,
  ) {
    // The run stops on the operator's signal, or when its capture is removed under it.
    this.opts = { ...opts, signal: AbortSignal.any([opts.signal, this.captureLost.signal]) };
  }

  /** Opens the control session on each side. */
  static async open(
    opts: MigrateOptions,
    store: CheckpointStore,
    outages: OutageTracker,
  ): Promise<RunContext> {
    const src = await connect(opts.source, 'control');
    try {
      return new RunContext(opts, store, outages, src, await connect(opts.target, 'control'));
    } catch (err) {
      await src.end().catch(() => {});
      throw err;
    }
  }

  get copyOnly(): boolean {
    return this.opts.mode === 'copy-only';
  }

  /** Binds a new run to the state file, or checks a resumed one. */
  async bind(): Promise<void> {
    this.resumed = await bindRun({
      ...this.opts,
      store: this.store,
      src: this.src,
      dst: this.dst,
      copyOnly: this.copyOnly,
      capture: this.opts.capture ?? 'triggers',
      lockWaitMs: this.opts.captureLockWaitMs,
      completesCutover: this.opts.mode === 'cutover-when-synced',
    });
    for (const [client, side] of [
      [this.src, 'source'],
      [this.dst, 'target'],
    ] as const) {
      const tight = await connectionHeadroom(client, side, this.opts.jobs);
      if (tight) this.opts.log.warn({ code: tight.code, fix: tight.fix }, tight.message);
    }
  }

  /** Both servers answered: an outage is over. */
  readonly healthy = (): void => {
    this.outages.recovered('source');
    this.outages.recovered('target');
  };

  /** A chunk or a batch lost its connection and is being retried: the outage shows meanwhile. */
  readonly lost = (err: unknown): void => {
    if (isConnectionLoss(err)) this.outages.noted(sideOf(err) ?? 'target', err);
  };

  enter(phase: Phase): void {
    this.store.setPhase(phase);
    this.store.event('info', phase, `${phase} started`);
    this.opts.log.info({ phase }, `${phase} started`);
  }

  finish(phase: Phase): void {
    this.store.finishPhase(phase);
    this.store.event('info', phase, `${phase} finished`);
  }

  selectedTables(): Promise<{ selected: TableInfo[]; excluded: TableInfo[] }> {
    return splitTables(this.src, this.opts.filter, { lockWaitMs: this.opts.captureLockWaitMs });
  }

  /** The copy's snapshots, shown to the operator (their age is a metric) while they are held. */
  useSnapshots(pool: SnapshotPool): SnapshotPool {
    this.snapshots = pool;
    this.opts.control?.attachSnapshots(pool);
    return pool;
  }

  async releaseSnapshots(): Promise<void> {
    this.opts.control?.attachSnapshots(null);
    await this.snapshots?.close();
    this.snapshots = undefined;
  }

  result(started: number, outcome: Pick<MigrateResult, 'replay' | 'cutover'>): MigrateResult {
    const tables = this.store.tables();
    return {
      resumed: this.resumed,
      tables: tables.length,
      rows: tables.reduce((a, t) => a + t.rowsCopied, 0),
      bytes: tables.reduce((a, t) => a + t.bytesCopied, 0),
      seconds: (Date.now() - started) / 1000,
      sequences: Number(this.store.getMeta('sequences_synced') ?? 0),
      ...outcome,
    };
  }

  /** Records why this attempt failed (unless it is an outage to wait out) and returns the error to throw. */
  failed(caught: unknown): unknown {
    const { store } = this;
    const err = this.heartbeat?.removed ?? caught;
    const cancelled = isPgferryError(err) && err.code === 'PGFERRY_RUN_CANCELLED';
    // A lost connection is migrate()'s to wait out, or to give up on.
    if (isConnectionLoss(err) && store.setup() && !this.opts.signal.aborted) return err;
    const message = isPgferryError(err) ? err.oneLine() : redact(String((err as Error)?.message ?? err));
    store.event(cancelled ? 'warn' : 'error', store.phase(), cancelled ? 'stopped by signal' : message);
    if (!cancelled) store.setPhase('failed');
    return err;
  }

  /** Waits for early index builds, stops the heartbeat, releases the snapshots, closes both control sessions. */
  async close(): Promise<void> {
    // A build left running would race the next attempt's index phase for the same objects.
    await this.earlyIndexes;
    await this.heartbeat?.stop();
    await this.releaseSnapshots();
    await Promise.all([this.src.end().catch(() => {}), this.dst.end().catch(() => {})]);
  }
}
