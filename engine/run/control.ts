// The link between a running `migrate` and its operator (the HTTP API): the checkpoint store
// while the run holds it, pause and resume, and cutover requests that the replication loop takes
// over between batches, so the cutover runs with the daemon's own Replayer and never beside it.
import fs from 'node:fs';
import {
  CheckpointStore,
  type Phase,
  type TableAction,
  type TableRequestRecord,
} from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { SnapshotPool } from '../copy/snapshot.js';
import type { CutoverResult, CutoverSettings } from '../cutover/cutover.js';
import { acceptDrift, DRIFT_PAUSE } from '../drift/drift.js';
import type { Replayer } from '../replay/replay.js';
import type { RollbackResult, RollbackSettings } from '../reverse/rollback.js';
import { checkTablesRequest } from '../tables/record.js';
import { twoWayOf } from '../two-way/state.js';

export interface CutoverRequest {
  settings: CutoverSettings;
  resolve: (result: CutoverResult) => void;
  reject: (err: unknown) => void;
}

export interface RollbackRequest {
  settings: RollbackSettings;
  resolve: (result: RollbackResult) => void;
  reject: (err: unknown) => void;
}

/** Work the replication loop runs between batches, with replay stopped (e.g. a consistent verify). */
export interface LoopTask {
  run: (replayer: Replayer) => Promise<unknown>;
  resolve: (result: unknown) => void;
  reject: (err: unknown) => void;
}

export class RunControl {
  private store: CheckpointStore | null = null;
  private replayer: Replayer | null = null;
  private snapshots: SnapshotPool | null = null;
  private pending: CutoverRequest | null = null;
  private task: LoopTask | null = null;
  private cutoverBusy = false;
  private reverse: Replayer | null = null;
  private rollbackPending: RollbackRequest | null = null;
  private rollbackBusy = false;

  constructor(readonly statePath: string) {}

  /** migrate() hands over its store once it holds the lock, and takes it back (null) before closing it. */
  attachStore(store: CheckpointStore | null): void {
    this.store = store;
  }

  /** The copy announces the snapshots it runs under (null once they are released), for metrics. */
  attachSnapshots(pool: SnapshotPool | null): void {
    this.snapshots = pool;
  }

  /** Age of the oldest exported snapshot the copy holds open on the source; 0 when none. */
  snapshotAgeSeconds(): number {
    return (this.snapshots?.oldestAgeMs() ?? 0) / 1000;
  }

  /** The replication loop announces its Replayer (null when it leaves the loop). */
  attachReplayer(replayer: Replayer | null): void {
    this.replayer = replayer;
    if (!replayer && this.task) {
      const task = this.task;
      this.task = null;
      task.reject(
        new PgferryError('PGFERRY_RUN_CANCELLED', 'replication ended before the task could run', {
          side: 'state',
        }),
      );
    }
    if (!replayer && this.pending) {
      const request = this.pending;
      this.pending = null;
      request.reject(
        new PgferryError('PGFERRY_RUN_CANCELLED', 'replication ended before the cutover could start', {
          side: 'state',
        }),
      );
    }
  }

  /**
   * Reads from the run's store; while no run holds it (before the pipeline opened it, after it
   * ended), from the state file opened read-only. Null while no state file exists.
   */
  read<T>(fn: (store: CheckpointStore) => T): T | null {
    if (this.store) return fn(this.store);
    if (!fs.existsSync(this.statePath)) return null;
    let store: CheckpointStore;
    try {
      store = CheckpointStore.open(this.statePath, { create: false, readonly: true });
    } catch {
      // Being created by the pipeline this very moment: nothing to show yet.
      return null;
    }
    try {
      return fn(store);
    } finally {
      store.close();
    }
  }

  /** The phase an operator sees (`paused` while replay is held); `preflight` before any state. */
  phase(): Phase {
    return this.read((s) => s.reportedPhase()) ?? 'preflight';
  }

  private replicatingStore(what: string): CheckpointStore {
    const store = this.store;
    const phase = store?.phase() ?? this.read((s) => s.phase());
    if (!store || phase !== 'replicating') {
      throw new PgferryError(
        'PGFERRY_API_CONFLICT',
        `${what} applies while the run is replicating; it is in phase ${phase ?? 'preflight'}`,
        { side: 'state' },
      );
    }
    return store;
  }

  /** Holds replay between batches, across restarts; capture keeps recording meanwhile. */
  pause(reason: string): { phase: Phase; pauseReason: string } {
    const store = this.replicatingStore('pause');
    if (store.pauseReason() !== reason) {
      store.setPaused(reason);
      store.event('warn', 'paused', `replay paused: ${reason}`);
    }
    return { phase: 'paused', pauseReason: reason };
  }

  resume(): { phase: Phase; pauseReason: null } {
    const store = this.store;
    if (!store) {
      throw new PgferryError(
        'PGFERRY_API_CONFLICT',
        `resume needs a running migration (phase ${this.phase()})`,
        {
          side: 'state',
        },
      );
    }
    if (store.pauseReason() !== null) {
      // Resuming a drift pause accepts the differences seen now: replay goes on with what both
      // sides share, and pauses again only if the differences change.
      if (store.pauseReason() === DRIFT_PAUSE) acceptDrift(store);
      store.setPaused(null);
      store.event('info', store.phase(), 'replay resumed');
    }
    return { phase: store.reportedPhase() ?? 'preflight', pauseReason: null };
  }

  /**
   * Records a request for tables to join or leave the run (`pgferry tables`): the replicate
   * phase takes it up beside the replay; its progress is in status.
   */
  requestTables(action: TableAction, pattern: string): TableRequestRecord {
    const store = this.store;
    if (!store) {
      throw new PgferryError(
        'PGFERRY_API_CONFLICT',
        `tables ${action} needs a running migration (phase ${this.phase()})`,
        {
          side: 'state',
        },
      );
    }
    const request = checkTablesRequest(store, action, pattern);
    store.event('info', store.phase(), `tables ${action} ${pattern} requested (request ${request.id})`);
    return request;
  }

  /** Asks the replication loop to stop between batches and run the cutover; settles with its outcome. */
  requestCutover(settings: CutoverSettings): Promise<CutoverResult> {
    if (this.cutoverBusy) {
      throw new PgferryError('PGFERRY_API_CONFLICT', 'a cutover is already running', { side: 'state' });
    }
    const store = this.store;
    const replayer = this.replayer;
    if (store && twoWayOf(store)) {
      throw new PgferryError(
        'PGFERRY_CUTOVER_REFUSED',
        'a two-way run keeps both sides in service: it has no cutover',
        {
          side: 'state',
        },
      );
    }
    if (!store || !replayer) {
      throw new PgferryError(
        'PGFERRY_CUTOVER_REFUSED',
        `the run is not replicating yet (phase ${this.phase()}): the copy and index build must be done first`,
        { side: 'state' },
      );
    }
    const reason = store.pauseReason();
    if (reason !== null) {
      throw new PgferryError('PGFERRY_CUTOVER_REFUSED', `replay is paused (${reason}): POST /resume first`, {
        side: 'state',
      });
    }
    this.cutoverBusy = true;
    return new Promise<CutoverResult>((resolve, reject) => {
      this.pending = { settings, resolve, reject };
      replayer.stop();
    }).finally(() => {
      this.cutoverBusy = false;
    });
  }

  /**
   * Runs fn in the replication loop between batches, replay stopped meanwhile; null when the run
   * is not replicating (the caller then does the work on its own).
   */
  runInLoop<T>(fn: (replayer: Replayer) => Promise<T>): Promise<T> | null {
    const replayer = this.replayer;
    if (!replayer || this.task || this.pending) return null;
    return new Promise<T>((resolve, reject) => {
      this.task = { run: fn, resolve: resolve as (r: unknown) => void, reject };
      replayer.stop();
    });
  }

  /** For the replication loop: the task waiting for it, taken once. */
  takeTask(): LoopTask | null {
    const task = this.task;
    this.task = null;
    return task;
  }

  /** For the replication loop: the cutover request waiting for it, taken once. */
  takeCutover(): CutoverRequest | null {
    const request = this.pending;
    this.pending = null;
    return request;
  }

  /** The reverse replication loop announces its Replayer (null when it leaves the loop). */
  attachReverse(replayer: Replayer | null): void {
    this.reverse = replayer;
    const request = this.rollbackPending;
    if (!replayer && request) {
      this.rollbackPending = null;
      request.reject(
        new PgferryError(
          'PGFERRY_RUN_CANCELLED',
          'reverse replication ended before the rollback could start',
          {
            side: 'state',
          },
        ),
      );
    }
  }

  /** Asks the reverse replication loop to stop between batches and run the rollback. */
  requestRollback(settings: RollbackSettings): Promise<RollbackResult> {
    if (this.rollbackBusy) {
      throw new PgferryError('PGFERRY_API_CONFLICT', 'a rollback is already running', { side: 'state' });
    }
    const reverse = this.reverse;
    if (!this.store || !reverse) {
      throw new PgferryError(
        'PGFERRY_ROLLBACK_REFUSED',
        `this daemon is not replicating in reverse (phase ${this.phase()}): a rollback follows a cutover with reverse replication (\`migrate --reverse-after-cutover\`, or \`pgferry reverse\` on a finished run)`,
        { side: 'state' },
      );
    }
    this.rollbackBusy = true;
    return new Promise<RollbackResult>((resolve, reject) => {
      this.rollbackPending = { settings, resolve, reject };
      reverse.stop();
    }).finally(() => {
      this.rollbackBusy = false;
    });
  }

  /** For the reverse replication loop: the rollback request waiting for it, taken once. */
  takeRollback(): RollbackRequest | null {
    const request = this.rollbackPending;
    this.rollbackPending = null;
    return request;
  }
}
