// The tables replay writes and the shape it writes each with (columns, COPY formats, key, name),
// kept true to both sides' schemas by the drift checks (engine/drift/): a table whose columns
// changed on both sides is written with its new columns from the next batch on, one renamed on
// both under its new name; one dropped on both leaves; one that cannot be replayed while an
// accepted drift lasts (missing on a side, its key gone) is held.
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import type { ApplyTable } from '../../sinks/batch-applier.js';
import type { ReplayShape } from '../drift/compare.js';
import type { DriftOutcome, DriftWatch } from '../drift/drift.js';
import { isConnectionLoss } from '../shared/outage.js';

interface ShapeOptions {
  store: CheckpointStore;
  log: Logger;
  signal: AbortSignal;
  drift?: DriftWatch;
}

export class TableShapes {
  private held = new Set<ApplyTable>();
  private drifted = false;
  private checked = false;

  constructor(
    public tables: ApplyTable[],
    private readonly opts: ShapeOptions,
  ) {}

  /** The tables of a round that can be replayed now. */
  replayable(pending: ApplyTable[]): ApplyTable[] {
    return this.held.size === 0 ? pending : pending.filter((t) => !this.held.has(t));
  }

  /**
   * Compares both sides' shapes (engine/drift/drift.ts, which pauses or resumes replay in the
   * store) and takes what replay writes each table with from it: a table whose columns changed
   * on both sides is written with its new columns from the next batch on.
   */
  async check(): Promise<DriftOutcome | null> {
    const drift = this.opts.drift;
    if (!drift) return null;
    let outcome: DriftOutcome;
    try {
      outcome = await drift.check();
    } catch (err) {
      // A server gone away between batches: the batches meet the outage and wait it out as they
      // do; the tables keep the shapes of the last check (and each batch its columns guard).
      if (!this.checked || !isConnectionLoss(err)) throw err;
      this.opts.log.warn({ err: (err as Error).message }, 'drift check skipped: a server is unreachable');
      return null;
    }
    this.checked = true;
    this.drifted = outcome.differences.length > 0 && !outcome.accepted;
    const left = new Set(outcome.left);
    this.tables = this.tables.filter((t) => !left.has(t.oid));
    this.held.clear();
    for (const t of this.tables) {
      const shape = outcome.shapes.get(t.oid);
      if (shape) this.reshape(t, shape);
      else this.held.add(t);
    }
    return outcome;
  }

  /** A table takes the shape both sides now share; the store keeps it for a restart. */
  private reshape(t: ApplyTable, s: ReplayShape): void {
    const same =
      t.columnsSig === s.columnsSig &&
      t.schema === s.schema &&
      t.name === s.name &&
      JSON.stringify([t.columns, t.format, t.keyFormat, t.key]) ===
        JSON.stringify([s.columns, s.format, s.keyFormat, s.key]);
    if (same) return;
    const first = t.columnsSig === undefined;
    Object.assign(t, s);
    const record = this.opts.store.captures().find((c) => c.oid === t.oid);
    if (!record) return;
    this.opts.store.updateCapture({
      ...record,
      schema: s.schema,
      name: s.name,
      keyColumns: JSON.stringify(s.key),
      columns: JSON.stringify(s.columns),
      copyFormat: s.format,
      keyFormat: s.keyFormat,
      partitioned: s.partitioned ? 1 : 0,
    });
    if (!first)
      this.opts.log.info(
        { table: `${s.schema}.${s.name}`, columns: s.columns },
        'replay takes the new shape of the table',
      );
  }

  /**
   * Before a catch-up or a drain: the tables' shapes checked, and while they differ unaccepted,
   * a drain refused and a catch-up held until they match (the pause shows in status meanwhile).
   */
  async ready(waitForMatch: boolean, force = false): Promise<void> {
    const drift = this.opts.drift;
    if (!drift) return;
    // A cutover's drain calls this many times while writes are frozen: a check at most per interval.
    if (!force && this.checked && !drift.due() && !this.drifted) return;
    for (let logged = false; ; ) {
      const outcome = await this.check();
      if (!this.drifted || this.opts.signal.aborted) return;
      const text = outcome?.differences.map((d) => d.message).join('; ');
      if (!waitForMatch)
        throw new PgferryError('PGFERRY_SCHEMA_DRIFT', `schema drift between the sides: ${text}`, {
          side: 'target',
        });
      if (!logged)
        this.opts.log.warn(
          { differences: outcome?.differences },
          'schema drift: waiting for the target to match',
        );
      logged = true;
      await sleep(drift.intervalMs(), this.opts.signal);
    }
  }
}
