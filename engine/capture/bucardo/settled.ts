// Which txntimes pgferry may mark as applied. A Bucardo delta row carries its writer's start time
// (now()), not an id, and a target marks what it applied by txntime alone, so two transactions
// that started in the same microsecond share one (at a hundred transactions a second, hundreds
// of times a day). Were pgferry to mark a txntime while another transaction that started then
// was still open, that transaction's rows, once committed, would look applied and never be read:
// Bucardo's own syncs take that risk, pgferry does not. Before a read's snapshot it notes the time and the
// start of every transaction then open in the database (pg_stat_activity.xact_start is the very
// value now() returns in that transaction); a txntime is settled when it is older than that time
// and no transaction open then started at it. A transaction that the snapshot does not see was
// open at that moment (its start is listed) or began after it (its txntime is newer). A batch's
// unsettled txntimes are applied but not marked: a later batch reads them again.
//
// Limits, both needing a second coincidence on top of a shared microsecond: a transaction whose
// first statement arrived just before the moment but that had not yet reported its start (a few
// microseconds of the backend's work), and a prepared (two-phase) transaction, which
// pg_stat_activity no longer lists. Other roles' transactions are seen only with
// pg_read_all_stats (preflight.ts asks for it).
import type pg from 'pg';
import { quoteLiteral } from '../../../lib/sql.js';
import { q } from '../../shared/db.js';

export interface Horizon {
  /** The moment, as the source's text form of a timestamptz. */
  at: string;
  /** The start times of the transactions open then, as a timestamptz[] literal's text. */
  open: string;
  /** Whether every session's transaction could be seen (superuser or pg_read_all_stats). */
  complete: boolean;
}

/**
 * The horizon now: must run before the snapshot it guards is taken, in a statement (and, for a
 * REPEATABLE READ read, a transaction) of its own. statement_timestamp() is when this statement
 * arrived, which precedes the reading of pg_stat_activity.
 */
export async function horizon(client: pg.Client): Promise<Horizon> {
  const [row] = await q<Horizon>(
    client,
    'source',
    `SELECT statement_timestamp()::text AS at,
            coalesce(array_agg(DISTINCT a.xact_start) FILTER (WHERE a.xact_start IS NOT NULL), '{}')::text AS open,
            pg_has_role('pg_read_all_stats', 'MEMBER') AS complete
       FROM pg_stat_activity a
      WHERE a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND a.pid <> pg_backend_pid()`,
  );
  return row!;
}

/** A condition on a txntime column: settled at this horizon (false without one). */
export function settled(column: string, h: Horizon | null): string {
  if (!h) return 'false';
  return `(${column} < ${quoteLiteral(h.at)}::timestamptz AND ${column} <> ALL (${quoteLiteral(h.open)}::timestamptz[]))`;
}
