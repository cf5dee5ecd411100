// Following the copy and ending it: `walg status` (replay position, the last replayed
// transaction and its age, the fetches the restore_command logged, bytes behind the primary when
// it is given, whether the copy keeps up) and `walg promote` (refused unless it keeps up, then
// pg_promote, and a write to prove the copy takes them).

import path from 'node:path';
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { client, requireRecord } from './server.js';
import { FETCH_LOG, type FetchLog, readFetchLog, writeRecord } from './standby.js';

export interface StandbyStatus {
  pgdata: string;
  running: boolean;
  inRecovery: boolean | null;
  replayLsn: string | null;
  lastReplayAt: string | null;
  /** Seconds since the last replayed transaction committed on the primary. */
  lagSeconds: number | null;
  /** With --source: how far the primary's WAL is ahead of what the standby replayed. */
  lagBytes: number | null;
  fetch: FetchLog;
  /** The standby reached the archive's end (a wal-fetch found nothing new) with no failure since. */
  keepingUp: boolean;
  promotedAt: string | null;
}

export async function status(pgdata: string, primaryLsn?: () => Promise<string>): Promise<StandbyStatus> {
  const rec = requireRecord(pgdata);
  const fetch = readFetchLog(pgdata);
  const keepingUp =
    fetch.lastNotFound !== null &&
    (fetch.lastFailure === null || fetch.lastFailure.at < fetch.lastNotFound.at) &&
    Date.now() - Date.parse(fetch.lastNotFound.at) < 120_000;
  const base = { pgdata, fetch, keepingUp, promotedAt: rec.promotedAt };
  let c: pg.Client;
  try {
    c = await client(pgdata, rec);
  } catch {
    return {
      ...base,
      running: false,
      inRecovery: null,
      replayLsn: null,
      lastReplayAt: null,
      lagSeconds: null,
      lagBytes: null,
    };
  }
  try {
    const { rows } = await c.query<{ rec: boolean; lsn: string | null; at: Date | null; lag: number | null }>(
      `SELECT pg_is_in_recovery() AS rec, coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text AS lsn,
              pg_last_xact_replay_timestamp() AS at,
              extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS lag`,
    );
    const r = rows[0]!;
    let lagBytes: number | null = null;
    if (primaryLsn && r.lsn) {
      const { rows: d } = await c.query<{ d: string }>(
        'SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text AS d',
        [await primaryLsn(), r.lsn],
      );
      lagBytes = Math.max(0, Number(d[0]!.d));
    }
    return {
      ...base,
      running: true,
      inRecovery: r.rec,
      replayLsn: r.lsn,
      lastReplayAt: r.at?.toISOString() ?? null,
      lagSeconds: r.lag === null ? null : Math.max(0, Math.round(r.lag * 10) / 10),
      lagBytes,
    };
  } finally {
    await c.end().catch(() => {});
  }
}

export interface PromoteResult {
  endLsn: string;
  promotedAt: string;
  seconds: number;
}

/** Promotes the standby once it has reached the archive's end (or with force), and waits until it takes writes. */
export async function promote(
  pgdata: string,
  force: boolean,
  log: (level: 'info' | 'warn', message: string) => void,
): Promise<PromoteResult> {
  const rec = requireRecord(pgdata);
  const s = await status(pgdata);
  if (!s.running)
    throw new PgferryError('PGFERRY_TARGET_CONNECT', `the copy in ${pgdata} is not running`, {
      side: 'target',
      hint: `Start it: pg_ctl -D ${pgdata} start`,
    });
  if (s.inRecovery === false)
    throw new PgferryError('PGFERRY_CUTOVER_REFUSED', `the copy in ${pgdata} is already promoted`, {
      side: 'target',
    });
  if (!s.keepingUp && !force) {
    throw new PgferryError(
      'PGFERRY_CUTOVER_REFUSED',
      `the standby has not reached the end of the archive${s.fetch.lastFailure ? ` (wal-fetch failed with exit ${s.fetch.lastFailure.code} for ${s.fetch.lastFailure.segment})` : ''}: promoting now would lose what it has not replayed`,
      {
        side: 'target',
        hint: `Wait for \`pgferry walg status\` to say keeping up (see ${path.join(pgdata, FETCH_LOG)}), or --force.`,
      },
    );
  }
  const t0 = Date.now();
  const c = await client(pgdata, rec);
  try {
    await c.query('SELECT pg_promote(true, 60)');
    for (let i = 0; ; i++) {
      const { rows } = await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec');
      if (!rows[0]!.rec) break;
      if (i > 600)
        throw new PgferryError('PGFERRY_CUTOVER_FAILED', 'the copy did not leave recovery within 60 s', {
          side: 'target',
        });
      await sleep(100);
    }
    // Takes writes: a temporary table is created and dropped.
    await c.query('CREATE TEMP TABLE pgferry_promote_check (x int); DROP TABLE pgferry_promote_check');
    const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const promotedAt = new Date().toISOString();
    writeRecord(pgdata, { ...rec, promotedAt });
    log('info', `promoted: end LSN ${rows[0]!.lsn}`);
    return { endLsn: rows[0]!.lsn, promotedAt, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await c.end().catch(() => {});
  }
}
