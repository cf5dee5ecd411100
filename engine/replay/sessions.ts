// The sessions replay's batches run in: one on the source and one on the target per batch in
// flight, pooled between batches (with the target's temporary key tables they created), so the
// source's connections stay bounded by the jobs. A session that failed is ended, never reused.
import type pg from 'pg';
import { quoteLiteral } from '../../lib/sql.js';
import { ORIGIN_SETTING } from '../capture/triggers/triggers.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';

export interface Session {
  src: pg.Client;
  dst: pg.Client;
  /** The temporary tables that exist on dst, by quoted name (sinks/batch-applier.ts). */
  temps: Set<string>;
}

export class SessionPool {
  private readonly idle: Session[] = [];

  constructor(
    private readonly source: ConnInfo,
    private readonly target: ConnInfo,
    /** The run whose replay writes: its capture on the target side skips these sessions' rows (no echo). */
    private readonly origin: string | null = null,
  ) {}

  /** An idle session, or a new one. */
  async take(): Promise<Session> {
    return this.idle.pop() ?? this.open();
  }

  private async open(): Promise<Session> {
    const src = await connect(this.source, 'copy');
    try {
      const dst = await connect(this.target, 'copy');
      // Replay's joins are a batch's keys (a log or a temporary table, neither with statistics)
      // against a table's primary key: the planner would hash the keys and scan the whole table;
      // one probe per key costs the batch, not the table (measured: 2.9 s instead of 16–25 s of
      // DELETE for 1 M changes on 2 M rows). Set once per session, not per batch: these sessions
      // run nothing else.
      const planner = 'SET enable_hashjoin = off; SET enable_mergejoin = off';
      const origin = this.origin ? `; SET ${ORIGIN_SETTING} = ${quoteLiteral(this.origin)}` : '';
      await Promise.all([src.query(planner), dst.query(planner + origin)]);
      return { src, dst, temps: new Set() };
    } catch (err) {
      await src.end().catch(() => {});
      throw err;
    }
  }

  /** A session whose batch went through, back to the pool. */
  give(s: Session): void {
    this.idle.push(s);
  }

  async discard(s: Session): Promise<void> {
    await Promise.all([s.src.end().catch(() => {}), s.dst.end().catch(() => {})]);
  }

  /** Opens sessions (at once) until `n` are idle: a round that follows needs no new connection. */
  async warm(n: number): Promise<void> {
    const missing = Math.max(0, n - this.idle.length);
    const opened = await Promise.allSettled(Array.from({ length: missing }, () => this.open()));
    for (const r of opened) if (r.status === 'fulfilled') this.idle.push(r.value);
  }

  async close(): Promise<void> {
    await Promise.all(this.idle.splice(0).map((s) => this.discard(s)));
  }
}
