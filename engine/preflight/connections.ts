// Connection slots: a run opens about --jobs + 4 sessions on each server (the copy's workers, the
// snapshot holders, the control session, the heartbeat). On a production source whose slots are
// nearly all taken, those would leave the application none, and its next connection would fail
// with "too many connections": warned at the run's start, with the figures and the fix.
import type pg from 'pg';
import { q } from '../shared/db.js';
import type { Finding } from './findings.js';

/** Sessions a run opens on a server beside its --jobs workers. */
export const SESSIONS_BESIDE_JOBS = 4;

export async function connectionHeadroom(
  client: pg.Client,
  side: 'source' | 'target',
  jobs: number,
): Promise<Finding | null> {
  const [row] = await q<{ max: number; reserved: number; used: number }>(
    client,
    side,
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS reserved,
            (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used`,
  );
  if (!row) return null;
  const opens = jobs + SESSIONS_BESIDE_JOBS;
  const left = row.max - row.reserved - row.used - opens;
  if (left >= Math.max(5, Math.ceil(row.max / 10))) return null;
  return {
    code: 'few-connections',
    message: `the ${side} allows ${row.max} connections (${row.reserved} reserved for superusers), ${row.used} in use: this run opens up to ${opens} more, leaving ${Math.max(0, left)} for everyone else`,
    fix: `lower --jobs (now ${jobs}), or raise max_connections (or end idle sessions) on the ${side}`,
  };
}
