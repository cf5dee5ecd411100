// Tables joining and leaving the replay while it runs (`pgferry tables add|remove`). The replay
// loop changes its table list only between rounds: a table leaves before the next round reads
// anything (its log can then be removed), and a table that joins gets one whole batch first, so
// that afterwards it equals the source as of that batch (its unique constraints can be built).
import type { CaptureRecord } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { ApplyTable } from '../../sinks/batch-applier.js';
import type { ChangeSource, InstalledTable } from '../capture/change-source.js';
import type { TableShapes } from './table-shapes.js';

interface Waiting<T> {
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export interface Arrival extends Waiting<number> {
  table: ApplyTable;
  installed: InstalledTable;
}

export interface Departure extends Waiting<void> {
  oid: number;
}

export const toReplayTable = (c: CaptureRecord): ApplyTable => ({
  schema: c.schema,
  name: c.name,
  oid: c.oid,
  key: JSON.parse(c.keyColumns) as { name: string; type: string }[],
  columns: JSON.parse(c.columns) as string[],
  format: c.copyFormat,
  keyFormat: c.keyFormat,
  partitioned: c.partitioned === 1,
});

export class Membership {
  private arrivals: Arrival[] = [];
  private departures: Departure[] = [];

  /** Resolves with the changes of the table's first whole batch, once the loop has applied it. */
  admit(c: CaptureRecord): Promise<number> {
    return new Promise((resolve, reject) => {
      const table = toReplayTable(c);
      this.arrivals.push({
        table,
        installed: { ...table, logTable: c.logTable, partitioned: c.partitioned === 1 },
        resolve,
        reject,
      });
    });
  }

  /** Resolves once the loop no longer reads the table. */
  dismiss(oid: number): Promise<void> {
    return new Promise((resolve, reject) => this.departures.push({ oid, resolve, reject }));
  }

  hasArrivals(): boolean {
    return this.arrivals.length > 0;
  }

  takeArrivals(): Arrival[] {
    return this.arrivals.splice(0);
  }

  /** Arrivals that could not be welcomed yet (replay paused): first in the queue again. */
  putBack(arrivals: Arrival[]): void {
    this.arrivals.unshift(...arrivals);
  }

  takeDepartures(): Departure[] {
    return this.departures.splice(0);
  }

  /** Tables leave between rounds, paused or not. */
  letGo(shapes: TableShapes, changes: ChangeSource, unsliceable: Set<ApplyTable>): void {
    for (const d of this.takeDepartures()) {
      shapes.tables = shapes.tables.filter((t) => t.oid !== d.oid);
      for (const t of unsliceable) if (t.oid === d.oid) unsliceable.delete(t);
      changes.unfollow(d.oid);
      d.resolve();
    }
  }

  /**
   * Tables join between rounds while replay is not paused: their shapes are checked, and one
   * whole batch each brings them to the source's state at its snapshot. Returns false when the
   * check paused replay (drift): they join once it resumes.
   */
  async welcome(
    shapes: TableShapes,
    changes: ChangeSource,
    loop: { paused: () => boolean; wholeBatch: (tables: ApplyTable[]) => Promise<number> },
  ): Promise<boolean> {
    const arriving = this.takeArrivals();
    try {
      for (const a of arriving) {
        if (shapes.tables.some((t) => t.oid === a.table.oid)) continue;
        changes.follow(a.installed);
        shapes.tables.push(a.table);
      }
      await shapes.check();
      if (loop.paused()) {
        this.putBack(arriving);
        return false;
      }
      const joining = new Set(arriving.map((a) => a.table.oid));
      const applied = await loop.wholeBatch(shapes.tables.filter((t) => joining.has(t.oid)));
      for (const a of arriving) a.resolve(applied);
      return true;
    } catch (err) {
      for (const a of arriving) a.reject(err);
      throw err;
    }
  }

  /** The replay is closing: whoever waits hears it (the request is taken up again by the next run). */
  cancel(): void {
    const err = new PgferryError(
      'PGFERRY_RUN_CANCELLED',
      'replay stopped before the table could join or leave',
      {
        side: 'state',
      },
    );
    for (const w of [...this.takeArrivals(), ...this.takeDepartures()]) w.reject(err);
  }
}
