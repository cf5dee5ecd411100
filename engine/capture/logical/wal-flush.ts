// Where a logical stream must have got to for a snapshot's commits, and making the source flush
// that far. A commit made with synchronous_commit off is visible before its WAL is flushed, and a
// walsender decodes flushed WAL only: neither pg_current_wal_lsn() (written) nor the flush position
// read after a snapshot bounds the commits it sees. The insert position does; the WAL before it is
// flushed by a commit of our own made with synchronous_commit local, which must have written WAL
// (a commit that only took an xid is flushed lazily), hence the update of the run's registry row.
import type pg from 'pg';
import { qualified, quoteLiteral } from '../../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../../shared/catalog.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { connect, simple } from '../../shared/db.js';
import { captureRemoved, RUNS_TABLE } from '../registry.js';
import { lsnOf } from './change-buffer.js';

/** The positions read together: the insert position bounds every commit visible before the call. */
export const WAL_POSITIONS_SQL =
  'pg_current_wal_insert_lsn()::text AS inserted, pg_current_wal_flush_lsn()::text AS flushed';

export interface WalPositions {
  inserted: string;
  flushed: string;
}

export class WalFlusher {
  private client: pg.Client | null = null;
  private flushed = 0n;
  private running: Promise<void> | null = null;

  constructor(
    private readonly source: ConnInfo,
    private readonly runId: () => string,
  ) {}

  /**
   * Returns the position every commit visible to a snapshot taken before `at` was read ends
   * before, once the source has flushed its WAL that far (at once when it has).
   */
  async flushedEnd(at: WalPositions): Promise<bigint> {
    const end = lsnOf(at.inserted);
    const flushed = lsnOf(at.flushed);
    if (flushed > this.flushed) this.flushed = flushed;
    // One flush at a time serves every batch waiting: each waits for one begun after its read.
    while (this.flushed < end) {
      this.running ??= this.force().finally(() => {
        this.running = null;
      });
      await this.running;
    }
    return end;
  }

  private async force(): Promise<void> {
    this.client ??= await connect(this.source, 'control');
    const c = this.client;
    try {
      const runs = qualified(PGFERRY_SCHEMA, RUNS_TABLE);
      const run = quoteLiteral(this.runId());
      const [row] = await simple<{ lsn: string; alive: boolean }>(
        c,
        'source',
        [
          // A --freeze readonly makes read-only the default of new sessions, not a rule.
          'BEGIN READ WRITE',
          // local: flushed here, without waiting for a synchronous standby (one down would hold it).
          'SET LOCAL synchronous_commit = local',
          `UPDATE ${runs} SET heartbeat_at = now() WHERE run_id = ${run}`,
          'COMMIT',
          `SELECT pg_current_wal_flush_lsn()::text AS lsn, EXISTS (SELECT 1 FROM ${runs} WHERE run_id = ${run}) AS alive`,
        ],
        runs,
      );
      // No row updated, no WAL written, nothing flushed: `pgferry cleanup` removed the run.
      if (!row!.alive) throw captureRemoved(this.runId(), `its row in ${runs} is gone`);
      this.flushed = lsnOf(row!.lsn);
    } catch (err) {
      this.client = null;
      await c.end().catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}
