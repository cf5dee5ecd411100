// Replay: the captured changes applied to the target in bulk, table by table, tables in parallel.
// This module is the loop (rounds of batches, `jobs` at a time, paused and stopped between
// batches, tables joining and leaving between rounds: membership.ts); one table's batch is
// table-batch.ts. engine/replay/ reads changes only through the ChangeSource interface and writes
// through sinks/batch-applier.ts; besides those it imports engine/shared/, checkpoints/, lib/.
//
// A batch is what the change source gives for one table (bounded by --batch-size, oldest first).
// The current rows of the batch's keys are read in the batch's REPEATABLE READ snapshot, applied
// on the target, and only after the target committed does the change source consume what the
// batch read (the trigger source deletes exactly the log rows that snapshot saw) and commit.

import type pg from 'pg';
import type { CaptureRecord } from '../../checkpoints/store.js';
import { sleep } from '../../lib/sleep.js';
import type { ApplyTable } from '../../sinks/batch-applier.js';
import { type ChangeSource, explainRemoval } from '../capture/change-source.js';
import { openChangeSource } from '../capture/sources.js';
import { DRIFT_PAUSE, isDriftError, maybeDrift } from '../drift/drift.js';
import { connect } from '../shared/db.js';
import { type Backlog, ChangeRate, summarize } from './backlog.js';
import { type BatchRetryContext, retriedTableBatch } from './batch-retry.js';
import { CountLedger } from './count-ledger.js';
import { Membership, toReplayTable } from './membership.js';
import { type ReplayOptions, type ReplayStats, ROUND_INTERVAL_MS, TABLE_BACKLOGS } from './options.js';
import { SessionPool } from './sessions.js';
import { DEFAULT_MIN_SLICE, planSlices, planUnits, type Unit } from './slices.js';
import { UNSLICED } from './table-batch.js';
import { TableShapes } from './table-shapes.js';

export { type ReplayOptions, type ReplayStats, ROUND_INTERVAL_MS, TABLE_BACKLOGS } from './options.js';

export class Replayer {
  /** The replayed tables and what they are written with, kept true to both sides' schemas. */
  private readonly shapes: TableShapes;
  /** Where its changes come from. */
  readonly changes: ChangeSource;
  private readonly sessions: SessionPool;
  private readonly batch: BatchRetryContext;
  private applied = 0;
  private batches = 0;
  private readonly rate = new ChangeRate();
  private readonly unsliceable = new Set<ApplyTable>();
  private stopping = false;
  private lastBatchAt: string | null;
  private readonly members = new Membership();

  constructor(private readonly opts: ReplayOptions) {
    const captures = opts.captures ?? opts.store.captures();
    this.shapes = new TableShapes(captures.map(toReplayTable), opts);
    this.changes = opts.changes ?? openChangeSource(opts.store, opts);
    this.sessions = new SessionPool(opts.source, opts.target, opts.store.runId());
    this.batch = {
      changes: this.changes,
      source: opts.source,
      sessions: this.sessions,
      log: opts.log,
      signal: opts.signal,
      batchSize: opts.batchSize ?? 50_000,
      unsliceable: this.unsliceable,
      unstaged: new Set(),
      onRetry: opts.onRetry,
      onLost: opts.onLost,
      onHealthy: opts.onHealthy,
      twoWay: opts.twoWay,
    };
    const saved = opts.store.getMeta(opts.statsKey ?? 'replay');
    this.lastBatchAt = saved ? ((JSON.parse(saved) as Partial<ReplayStats>).lastBatchAt ?? null) : null;
  }

  /** A batch was applied: counted, and its time kept for the stats. */
  private counted(changes: number): void {
    this.applied += changes;
    this.batches += 1;
    this.lastBatchAt = new Date().toISOString();
  }

  /** Keeps every table's row count changes from now on (the cutover's verified point), until stopLedger. */
  startLedger(): CountLedger {
    this.batch.ledger = new CountLedger();
    return this.batch.ledger;
  }

  stopLedger(): void {
    this.batch.ledger = undefined;
  }

  /** Compares both sides' shapes, waiting while they differ (before the first catch-up). */
  checkShapes(force = false): Promise<void> {
    return this.shapes.ready(true, force);
  }

  /** Opens replay sessions until `n` are ready (before a round that must not wait for connections). */
  warm(n: number): Promise<void> {
    return this.sessions.warm(n);
  }

  /** Makes run() return after the batches in flight (the cutover through the API takes over). */
  stop(): void {
    this.stopping = true;
  }

  /** A pause (checkpoint store meta `paused`) holds the replay loop between batches. */
  private paused(): boolean {
    return this.opts.store.pauseReason() !== null;
  }

  async close(): Promise<void> {
    await Promise.all([this.sessions.close(), this.opts.drift?.close(), this.changes.close()]);
  }

  /**
   * A table that joined the run (its capture installed and recorded, its copy done): replayed
   * from the loop's next round on, starting with one whole batch; resolves with that batch's
   * changes. The loop must be running (or run again) for it to settle.
   */
  admit(c: CaptureRecord): Promise<number> {
    return this.members.admit(c);
  }

  /** A table leaving the run: resolves once no batch reads it any more (its log may then go). */
  dismiss(oid: number): Promise<void> {
    return this.members.dismiss(oid);
  }

  /** The replicate phase ends: tables still waiting to join or leave hear it. */
  endMembership(): void {
    this.members.cancel();
  }

  /** Backlog (pending changes) and lag (age of the oldest one) per table, in one query. */
  async backlog(client: pg.Client, opts: { exact?: boolean } = {}): Promise<Backlog> {
    try {
      const tables = this.shapes.tables;
      return summarize(tables, await this.changes.backlog(client, tables, opts));
    } catch (err) {
      throw await explainRemoval(this.changes, this.opts.source, err, client);
    }
  }

  /**
   * Applies every change visible in an exported snapshot, one whole batch per table, each run in
   * that snapshot: afterwards the target equals the source as of the snapshot, which a
   * verification can then read. The replay loop must be stopped meanwhile.
   */
  async drainAt(snapshotId: string): Promise<number> {
    await this.shapes.ready(false);
    const control = await connect(this.opts.source, 'control');
    let applied = 0;
    try {
      // A logical stream that has not caught up cannot list every table with changes in S: then
      // every table gets its batch in S (one with none in S applies nothing).
      const { pending, unsure } = await this.backlog(control, { exact: true });
      for (const t of unsure ? this.shapes.tables : pending) {
        const out = await retriedTableBatch(this.batch, t, true, snapshotId);
        if (out && out !== UNSLICED) {
          applied += out.changes;
          this.counted(out.changes);
        }
      }
      return applied;
    } finally {
      await control.end().catch(() => {});
    }
  }

  /**
   * One whole batch per table with a backlog: afterwards each table equals the source as of its
   * batch. The backlog is read on `client` when given (the caller's session), else on one of its
   * own; `width` tables at a time (--jobs by default).
   */
  async catchUp(client?: pg.Client, width?: number): Promise<number> {
    await this.shapes.ready(false);
    const control = client ?? (await connect(this.opts.source, 'control'));
    try {
      const { pending } = await this.backlog(control);
      return await this.round(pending, true, undefined, width);
    } finally {
      if (!client) await control.end().catch(() => {});
    }
  }

  private stats(backlog: number, lagSeconds: number, changes: Map<ApplyTable, number>): ReplayStats {
    return {
      lagSeconds: Math.round(lagSeconds * 1000) / 1000,
      backlog,
      changesPerSec: this.rate.perSecond(),
      appliedTotal: this.applied,
      batches: this.batches,
      at: new Date().toISOString(),
      lastBatchAt: this.lastBatchAt,
      tableBacklogs: [...changes]
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1])
        .slice(0, TABLE_BACKLOGS)
        .map(([t, n]) => ({ table: `${t.schema}.${t.name}`, changes: n })),
    };
  }

  /** How many slices each table's batch is cut in (planSlices). */
  private sliceCounts(pending: ApplyTable[], changes: Map<ApplyTable, number>): number[] {
    return planSlices(
      pending.map((table) => ({ changes: changes.get(table) ?? 0, sliceable: !this.unsliceable.has(table) })),
      this.opts.jobs,
      this.opts.minSliceChanges ?? DEFAULT_MIN_SLICE,
      this.batch.batchSize,
    );
  }

  /**
   * Runs one batch for each of these tables (or for each slice of a table split by planSlices),
   * `jobs` at a time; then an unsliced batch for every table whose slice could not be applied.
   * Returns the changes applied.
   */
  private async round(
    pending: ApplyTable[],
    whole = false,
    changes?: Map<ApplyTable, number>,
    width = this.opts.jobs,
  ): Promise<number> {
    pending = this.shapes.replayable(pending);
    const counts = whole || !changes ? pending.map(() => 1) : this.sliceCounts(pending, changes);
    const plan = { ...this.batch, limit: this.batch.batchSize, jobs: this.opts.jobs };
    const units: Unit[] = await planUnits(plan, pending, counts);
    const queue = [...units];
    const unsliced = new Set<ApplyTable>();
    let failure: unknown;
    let applied = 0;
    // The loop's rounds stop between batches on a pause or a stop; catch-ups (whole) never do.
    const held = () => !whole && (this.stopping || this.paused());
    const worker = async () => {
      for (let u = queue.shift(); u && !failure && !this.opts.signal.aborted && !held(); u = queue.shift()) {
        const t = u.table;
        try {
          const started = performance.now();
          const out = await retriedTableBatch(this.batch, t, whole, undefined, u.slice, changes?.get(t));
          // A partial whole batch (a bounded buffer) gets another, like a slice that failed.
          if (out === UNSLICED || (whole && out?.partial)) unsliced.add(t);
          if (out && out !== UNSLICED) {
            applied += out.changes;
            this.counted(out.changes);
            this.rate.add(out.changes);
            this.opts.onBatch?.(`${t.schema}.${t.name}`, out.changes, (performance.now() - started) / 1000);
          }
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(width, units.length) }, worker));
    if (failure) throw failure;
    // Every slice of the round is over: an unsliced batch cannot overlap one now.
    if (unsliced.size > 0 && !held()) applied += await this.round([...unsliced], whole);
    return applied;
  }

  /**
   * Replays until the signal aborts or stop() is called (or, with untilSynced, until the backlog
   * as of some moment is applied: the log seen empty, or a last whole round). While paused it
   * keeps measuring lag and backlog but applies nothing.
   */
  async run(): Promise<ReplayStats> {
    const { opts } = this;
    const control = await connect(opts.source, 'control');
    let stats = this.stats(0, 0, new Map());
    let rounds = 0;
    let wasPaused = false;
    let drained = false;
    try {
      while (!opts.signal.aborted && !this.stopping) {
        this.members.letGo(this.shapes, this.changes, this.unsliceable);
        if (opts.drift?.due()) await this.shapes.check();
        const { total, lagSeconds, pending, changes } = await this.backlog(control);
        stats = this.stats(total, lagSeconds, changes);
        opts.onStats?.(stats);
        const reason = opts.store.pauseReason();
        if (reason !== null) {
          if (!wasPaused)
            opts.log.warn(
              { reason },
              reason === DRIFT_PAUSE
                ? 'replay paused by schema drift: capture keeps recording; replay resumes once the target matches (or on POST /resume)'
                : 'replay paused: capture keeps recording; POST /resume on the --http API goes on',
            );
          wasPaused = true;
          await sleep(opts.pollMs ?? 200, opts.signal);
          continue;
        }
        if (wasPaused) opts.log.info('replay resumed');
        wasPaused = false;
        if (this.members.hasArrivals()) {
          const joined = await this.members.welcome(this.shapes, this.changes, {
            paused: () => this.paused(),
            wholeBatch: (tables) => this.round(tables, true),
          });
          if (joined) continue;
        }
        const closeEnough =
          opts.syncedLagSeconds !== undefined && rounds > 0 && lagSeconds <= opts.syncedLagSeconds;
        const untilEmpty = opts.untilSynced && opts.syncedLagSeconds === undefined;
        // Synced once every change committed until now was seen (an exact backlog).
        const empty = async () => (await this.backlog(control, { exact: true })).total === 0;
        if (opts.untilSynced && (closeEnough || drained || (pending.length === 0 && (await empty()))))
          return stats;
        if (pending.length === 0) {
          await sleep(opts.pollMs ?? 200, opts.signal);
          continue;
        }
        // A writer that never stops never leaves the log empty. Once every table's backlog is one
        // unsliced batch, one whole batch per table with changes in an exact backlog applies every
        // change committed before that count (each batch's snapshot is taken after it): the
        // backlog as of that moment is drained to zero, and the loop ends on its next turn.
        const last =
          untilEmpty &&
          pending.every((t) => (changes.get(t) ?? 0) <= this.batch.batchSize) &&
          this.sliceCounts(pending, changes).every((n) => n === 1);
        const started = performance.now();
        let applied: number;
        try {
          if (last) {
            const exact = await this.backlog(control, { exact: true });
            applied = await this.round(exact.unsure ? this.shapes.tables : exact.pending, true);
            drained = true;
          } else applied = await this.round(pending, false, changes);
        } catch (err) {
          // A shape difference is drift, not a failure: a check confirms it (and pauses) or finds
          // the sides matching with new columns (replay takes them); anything else still fails.
          if (!opts.drift || !maybeDrift(err)) throw err;
          const outcome = await this.shapes.check();
          const explained = isDriftError(err) || outcome?.applied || (outcome?.differences.length ?? 0) > 0;
          if (!explained) throw err;
          continue;
        }
        rounds++;
        // Under a steady load every round finds a few changes per table, and a batch's cost on the
        // source is mostly fixed (its transaction, its queries): a round that found less than a
        // batch's worth waits out the rest of ROUND_INTERVAL_MS, so batches are fewer and bigger.
        // A backlog (a full batch) is drained without a pause, and so is everything until the log
        // is seen empty (--exit-when-synced: a pause would let a steady writer refill it each time).
        const rest = ROUND_INTERVAL_MS - (performance.now() - started);
        if (applied < this.batch.batchSize && rest > 0 && !untilEmpty) await sleep(rest, opts.signal);
      }
      return stats;
    } finally {
      this.stopping = false;
      await control.end().catch(() => {});
      await this.close();
    }
  }
}
