// A run's heartbeat on the source (pgferry.runs.heartbeat_at, written from a session of its own
// while the run lives, so `cleanup` can tell a live run from an abandoned one) and the size of
// what its change source keeps there (logs, a slot's WAL), measured with each beat from the catalog.
import type pg from 'pg';
import type { Logger } from 'pino';
import { type PgferryError, sqlstateOf } from '../../lib/errors.js';
import { qualified } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import type { CaptureLogSize } from './change-source.js';
import { captureRemoved, ownerParams, RUNS_TABLE, type RunOwner } from './registry.js';

/** How often a run's heartbeat is written. */
export const HEARTBEAT_MS = 10_000;

const runs = qualified(PGFERRY_SCHEMA, RUNS_TABLE);

export interface HeartbeatOptions extends RunOwner {
  source: ConnInfo;
  log: Logger;
  /** This run's capture is gone (its registry row deleted): the run must stop. */
  onRemoved: (err: PgferryError) => void;
  /** After each beat: the size of what the run's change source keeps on the source (`measure`). */
  onLogSize?: (size: CaptureLogSize) => void;
  measure?: (client: pg.Client) => Promise<CaptureLogSize>;
  intervalMs?: number;
}

/**
 * Writes this run's heartbeat into pgferry.runs every HEARTBEAT_MS from a session of its own,
 * reconnecting after a lost connection (a failed beat is only logged: an outage must not fail the
 * run). A beat that finds no row means `cleanup` removed the capture: onRemoved is called once.
 * Each beat also measures the run's log (onLogSize), from the catalog: nothing is scanned.
 */
export class CaptureHeartbeat {
  private client: pg.Client | null = null;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> = Promise.resolve();
  private stopped = false;
  removed: PgferryError | null = null;

  constructor(private readonly opts: HeartbeatOptions) {}

  /** The first beat now (awaited), then one every interval until stop(). */
  async start(): Promise<void> {
    await this.tick();
  }

  private async tick(): Promise<void> {
    this.beating = this.beat();
    await this.beating;
    if (!this.stopped && !this.removed) {
      this.timer = setTimeout(() => void this.tick(), this.opts.intervalMs ?? HEARTBEAT_MS);
      this.timer.unref();
    }
  }

  private async beat(): Promise<void> {
    const { opts } = this;
    try {
      this.client ??= await connect(opts.source, 'control');
      const res = await this.client.query(
        `UPDATE ${runs} SET heartbeat_at = now(), stopped_at = NULL, state_file = $2, host = $3, pid = $4
          WHERE run_id = $1`,
        ownerParams(opts),
      );
      if (res.rowCount === 0) this.lose(`its row in ${PGFERRY_SCHEMA}.${RUNS_TABLE} is gone`);
      else if (opts.onLogSize) await this.measure(this.client, opts.onLogSize);
    } catch (err) {
      const state = sqlstateOf(err);
      // 42P01: pgferry.runs is gone; 3F000: the whole schema is.
      if (state === '42P01' || state === '3F000') {
        this.lose(`${PGFERRY_SCHEMA}.${RUNS_TABLE} is gone`);
        return;
      }
      opts.log.warn({ err: (err as Error).message }, 'capture heartbeat failed: retrying');
      await this.client?.end().catch(() => {});
      this.client = null;
    }
  }

  /** Only a metric: a failed measurement leaves the last one standing and the heartbeat alone. */
  private async measure(client: pg.Client, report: (size: CaptureLogSize) => void): Promise<void> {
    try {
      if (this.opts.measure) report(await this.opts.measure(client));
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'capture log size not measured');
    }
  }

  private lose(what: string): void {
    if (this.removed || this.stopped) return;
    this.removed = captureRemoved(this.opts.runId, what);
    this.opts.log.error({ runId: this.opts.runId }, this.removed.message);
    this.opts.onRemoved(this.removed);
  }

  /** Stops beating; a run that stops cleanly says so, so that `cleanup` need not wait a minute. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating;
    if (this.client && !this.removed) {
      await this.client
        .query(`UPDATE ${runs} SET stopped_at = now() WHERE run_id = $1`, [this.opts.runId])
        .catch(() => {});
    }
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}
