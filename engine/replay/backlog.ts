// What replay reports between rounds: the backlog and lag over the tables (from the change
// source's counts), and the rate of applied changes over the last ten seconds.
import type { ApplyTable } from '../../sinks/batch-applier.js';
import type { TableBacklog } from '../capture/change-source.js';

export interface Backlog {
  /** Changes pending over every table. */
  total: number;
  /** Age in seconds of the oldest pending change (0 with none). */
  lagSeconds: number;
  /** The tables with changes pending. */
  pending: ApplyTable[];
  changes: Map<ApplyTable, number>;
  /** `pending` may miss tables: the change source could not yet tell (TableBacklog.unsure). */
  unsure: boolean;
}

/** The change source's per-table counts (in the order of `tables`) summed up. */
export function summarize(tables: readonly ApplyTable[], rows: readonly TableBacklog[]): Backlog {
  return {
    total: rows.reduce((a, r) => a + r.changes, 0),
    lagSeconds: Math.max(0, ...rows.map((r) => r.lagSeconds ?? 0)),
    pending: tables.filter((_, i) => rows[i]!.changes > 0),
    changes: new Map(tables.map((t, i) => [t, rows[i]!.changes])),
    unsure: rows.some((r) => r.unsure === true),
  };
}

/** Changes applied per second, over the batches of the last ten seconds. */
export class ChangeRate {
  // A queue with a moving head and a running sum: asked every round, over about a thousand
  // batches at a steady load (summing and shifting them each time was 2% of the daemon's CPU).
  private readonly recent: { at: number; n: number }[] = [];
  private head = 0;
  private sum = 0;

  add(changes: number, at = Date.now()): void {
    this.recent.push({ at, n: changes });
    this.sum += changes;
  }

  perSecond(now = Date.now()): number {
    while (this.head < this.recent.length && now - this.recent[this.head]!.at > 10_000) {
      this.sum -= this.recent[this.head]!.n;
      this.head++;
    }
    if (this.head >= 1024 && this.head * 2 >= this.recent.length) {
      this.recent.splice(0, this.head);
      this.head = 0;
    }
    const first = this.recent[this.head];
    const span = first ? Math.max(1, (now - first.at) / 1000) : 1;
    return Math.round(this.sum / span);
  }
}
