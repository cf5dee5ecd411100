// Creating a slot, and checking it, wait for transactions open on the source to end: an
// application's long transaction holds the run up for as long as it lasts. The operator is told
// which sessions, every WAIT_REPORT_MS, from pg_locks (readable by every role, where
// pg_stat_activity hides other roles' sessions): each transaction holds a lock on its own id.
import type pg from 'pg';
import type { Logger } from 'pino';
import { q } from '../../shared/db.js';

export const WAIT_REPORT_MS = 10_000;

interface Holder {
  pid: number;
  since: string | null;
  app: string | null;
}

/** The sessions whose transactions the session `waiter` waits for (a slot being created). */
async function blocking(client: pg.Client, waiter: number): Promise<Holder[]> {
  return q<Holder>(
    client,
    'source',
    `SELECT DISTINCT h.pid, a.xact_start::text AS since, a.application_name AS app
       FROM pg_locks w JOIN pg_locks h ON h.locktype = 'transactionid' AND h.transactionid = w.transactionid AND h.granted
       LEFT JOIN pg_stat_activity a ON a.pid = h.pid
      WHERE w.pid = $1 AND NOT w.granted AND w.locktype = 'transactionid' ORDER BY 1`,
    [waiter],
  );
}

/** The sessions in transactions whose ids are older than the 64-bit transaction id `id`. */
async function older(client: pg.Client, id: string): Promise<Holder[]> {
  // pg_locks shows 32-bit ids: compared by age, as the server compares them.
  return q<Holder>(
    client,
    'source',
    `SELECT DISTINCT h.pid, a.xact_start::text AS since, a.application_name AS app
       FROM pg_locks h LEFT JOIN pg_stat_activity a ON a.pid = h.pid
      WHERE h.locktype = 'transactionid' AND h.mode = 'ExclusiveLock' AND h.granted
        AND age(h.transactionid) > age(($1::bigint % 4294967296)::text::xid) ORDER BY 1`,
    [id],
  );
}

function describe(holders: Holder[]): string {
  return holders
    .map(
      (h) =>
        `pid ${h.pid}${h.since ? ` (open since ${h.since})` : ''}${h.app ? ` ${JSON.stringify(h.app)}` : ''}`,
    )
    .join(', ');
}

/**
 * Reports, every WAIT_REPORT_MS until `work` settles, the transactions it waits for: those the
 * session `waiter` waits on, or those older than transaction `olderThan`. A failed report is only logged.
 */
export async function reportingWaits<T>(
  client: pg.Client,
  what: string,
  on: { waiter: number } | { olderThan: string },
  log: Logger,
  work: Promise<T>,
): Promise<T> {
  const started = Date.now();
  const timer = setInterval(() => {
    const holders = 'waiter' in on ? blocking(client, on.waiter) : older(client, on.olderThan);
    holders.then(
      (h) => {
        const waited = Math.round((Date.now() - started) / 1000);
        if (h.length > 0)
          log.info(
            { waitedSeconds: waited, pids: h.map((x) => x.pid) },
            `${what}: waiting for the transactions of ${describe(h)} on the source to end`,
          );
      },
      (err: Error) => log.debug({ err: err.message }, 'could not read who holds the slot up'),
    );
  }, WAIT_REPORT_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}
