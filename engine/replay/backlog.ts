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
}

/** The change source's per-table counts (in the order of `tables`) summed up. */
export function summarize(tables: readonly ApplyTable[], rows: readonly TableBacklog[]): Backlog {
  return {
    total: rows.reduce((a, r) => a + r.changes, 0),
    lagSeconds: Math.max(0, ...rows.map((r) => r.lagSeconds ?? 0)),
    pending: tables.filter((_, i) => rows[i]!.changes > 0),
    changes: new Map(tables.map((t, i) => [t, rows[i]!.changes])),
  };
}

/** Changes applied per second, over the batches of the last ten seconds. */
export class ChangeRate {
  private readonly recent: { at: number; n: number }[] = [];

  add(changes: number): void {
    this.recent.push({ at: Date.now(), n: changes });
  }

  perSecond(): number {
    const now = Date.now();
    while (this.recent.length > 0 && now - this.recent[0]!.at > 10_000) this.recent.shift();
    const n = this.recent.reduce((a, r) => a + r.n, 0);
    const span = this.recent.length > 0 ? Math.max(1, (now - this.recent[0]!.at) / 1000) : 1;
    return Math.round(n / span);
  }
}
