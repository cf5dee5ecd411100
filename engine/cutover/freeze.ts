// Freezing writes on the source for the cutover, and undoing it. A freeze is planned first (what
// it will change, e.g. the grants it will revoke), the plan is recorded in the state file by the
// caller, and only then applied, so that a crash at any point can be undone exactly. Applying is
// idempotent: a cutover run again after a crash applies the recorded plan again.
//
//  external: the operator stopped the application (e.g. Heroku maintenance mode); pgferry waits
//            until the change log has been quiet for a settle time.
//  revoke:   INSERT, UPDATE, DELETE, TRUNCATE on every replicated table and USAGE on sequences are
//            revoked from every role that holds them (PUBLIC and pgferry's own role included: on
//            Heroku the application often shares pgferry's role; pgferry itself only reads the
//            tables and writes its own log), and the sessions of every role that could still
//            write are ended: members of those roles, recursively, and of pg_write_all_data.
//  readonly: the database's default_transaction_read_only is set, and every other session on it
//            ended, so that new transactions cannot write (pgferry's own sessions start with
//            default_transaction_read_only=off: see db.ts). Refused while a role sets it off for
//            itself, which outranks the database's setting.
//
// Then, whatever the method, pgferry waits until every transaction that was writing to a
// replicated table at the freeze has ended: a write that commits on the source then either
// committed before the drain started (and is replayed) or was refused. Superusers are beyond any
// freeze but readonly's session ending: their writes after the freeze are the operator's affair.
import type pg from 'pg';
import { dbError, PgferryError, sqlstateOf } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { quoteIdent } from '../../lib/sql.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q } from '../shared/db.js';
import { refuseWritableRoles } from './readonly-roles.js';

export const FREEZE_METHODS = ['external', 'revoke', 'readonly'] as const;
export type FreezeMethod = (typeof FREEZE_METHODS)[number];

/** A privilege held on a replicated table or sequence; role PUBLIC is the pseudo-role. */
export interface Grant {
  table: string;
  role: string;
  privileges: string[];
  kind: 'table' | 'sequence';
}

export interface FreezeRecord {
  method: FreezeMethod;
  startedAt: string;
  /** revoke: what is revoked, restored exactly by unfreezeWrites. */
  grants?: Grant[];
  /** readonly: whether the database was read-only by default already (then it stays so). */
  readonlyWasSet?: boolean;
  sessionsEnded?: number;
}

const roleName = (role: string) => (role === 'PUBLIC' ? 'PUBLIC' : quoteIdent(role));

// The application's sessions on this database: everything but pgferry's own sessions and
// background workers. Without pg_read_all_stats another role's row shows NULL in most columns
// (application_name, backend_type): IS DISTINCT FROM keeps those rows; usesysid is NULL only for
// background workers. $1 NULL means every role; otherwise members (recursively) of the listed
// roles, or of pg_write_all_data, which writes whatever the grants say; not superusers, whom
// pg_has_role counts as members of everything and no revoke stops (their in-flight writes are
// waited for like any other).
const OTHER_SESSIONS = `FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND usesysid IS NOT NULL
    AND backend_type IS DISTINCT FROM 'walsender'
    AND (usename <> current_user OR application_name IS DISTINCT FROM 'pgferry')
    AND ($1::text[] IS NULL
         OR (NOT (SELECT rolsuper FROM pg_roles WHERE oid = usesysid)
             AND ('PUBLIC' = ANY($1)
                  OR EXISTS (SELECT 1 FROM unnest($1::text[]) AS g(role)
                              WHERE to_regrole(quote_ident(g.role)) IS NOT NULL
                                AND pg_has_role(usesysid, to_regrole(quote_ident(g.role)), 'MEMBER'))
                  OR CASE WHEN to_regrole('pg_write_all_data') IS NULL THEN false
                          ELSE pg_has_role(usesysid, to_regrole('pg_write_all_data'), 'MEMBER') END)))`;

/** The roles whose sessions the freeze ends: every role (null) for readonly, the revoked ones for revoke. */
export const frozenRoles = (record: FreezeRecord): string[] | null =>
  record.method === 'revoke' ? [...new Set(record.grants?.map((g) => g.role))] : null;

/**
 * Ends those sessions one by one: pg_terminate_backend raises an error (42501) for a session of a
 * role pgferry may not signal; that one is left for waitForSessionsGone to report by name.
 */
async function endSessions(client: pg.Client, roles: string[] | null): Promise<number> {
  const pids = await q<{ pid: number }>(client, 'source', `SELECT pid ${OTHER_SESSIONS}`, [roles]);
  if (pids.length === 0) return 0;
  // All at once, in one statement (the freeze's time counts as downtime); one by one only when
  // some session may not be signalled.
  try {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*) FILTER (WHERE pg_terminate_backend(p))::int AS n FROM unnest($1::int[]) AS p',
      [pids.map((p) => p.pid)],
    );
    return rows[0]?.n ?? 0;
  } catch (err) {
    if (sqlstateOf(err) !== '42501') throw dbError('source', err);
  }
  let ended = 0;
  for (const { pid } of pids) {
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
      if (rows[0]?.ok) ended++;
    } catch (err) {
      if (sqlstateOf(err) !== '42501') throw dbError('source', err);
    }
  }
  return ended;
}

/**
 * Waits until the sessions the freeze ended are gone (a terminated backend exits a moment later,
 * and its transaction ends with it). A session pgferry could not end (another role's, without
 * pg_signal_backend) fails the freeze by name.
 */
async function waitForSessionsGone(client: pg.Client, roles: string[] | null, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await q<{ role: string | null }>(
      client,
      'source',
      `SELECT usename AS role ${OTHER_SESSIONS}`,
      [roles],
    );
    if (rows.length === 0) return;
    if (Date.now() > deadline) {
      const who = [...new Set(rows.map((r) => r.role ?? '?'))].join(', ');
      throw new PgferryError(
        'PGFERRY_CUTOVER_FAILED',
        `${rows.length} session(s) of ${who} could not be ended on the source, so writes may go on`,
        {
          side: 'source',
          hint: 'Grant pg_signal_backend to the source role, stop the application first, or use --freeze external.',
        },
      );
    }
    // A terminated backend is usually gone within milliseconds: checked often (writes are frozen).
    await sleep(5);
  }
}

// Lock modes a writing transaction holds on a table until it ends (INSERT/UPDATE/DELETE take
// RowExclusiveLock, TRUNCATE AccessExclusiveLock). pg_locks is readable by every role, unlike the
// other roles' rows of pg_stat_activity, so this sees every writer whatever the privileges.
const WRITE_LOCKS = `('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')`;

/**
 * The transactions writing to these tables (or their partitions and logs) right now, by virtual
 * transaction id, which no later transaction reuses.
 */
async function writersOf(client: pg.Client, relations: string[]): Promise<Map<string, number>> {
  const rows = await q<{ vxid: string; pid: number }>(
    client,
    'source',
    `WITH rels AS (SELECT u.r::oid AS relid FROM unnest($1::regclass[]) AS u(r)
                  UNION SELECT t.relid FROM unnest($1::regclass[]) AS u(r), LATERAL pg_partition_tree(u.r) AS t)
     SELECT DISTINCT l.virtualtransaction AS vxid, l.pid
       FROM pg_locks l
      WHERE l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.mode IN ${WRITE_LOCKS} AND l.pid IS DISTINCT FROM pg_backend_pid()
        AND l.relation IN (SELECT relid FROM rels)`,
    [relations],
  );
  return new Map(rows.map((r) => [r.vxid, r.pid]));
}

/**
 * Waits until every transaction that was writing to the relations when the freeze took effect has
 * ended, and fails by name the ones that do not end in time (the freeze is then undone by the
 * caller). Together with the freeze itself (no new write can start), a write that commits on the
 * source has then committed before the drain begins.
 */
async function waitForWriters(client: pg.Client, relations: string[], timeoutMs: number): Promise<void> {
  if (relations.length === 0) return;
  const atFreeze = await writersOf(client, relations);
  const deadline = Date.now() + timeoutMs;
  while (atFreeze.size > 0) {
    const now = await writersOf(client, relations);
    for (const vxid of atFreeze.keys()) if (!now.has(vxid)) atFreeze.delete(vxid);
    if (atFreeze.size === 0) return;
    if (Date.now() > deadline) {
      const pids = [...atFreeze.values()];
      const who = await q<{ pid: number; role: string | null }>(
        client,
        'source',
        'SELECT pid, usename AS role FROM pg_stat_activity WHERE pid = ANY($1)',
        [pids],
      );
      throw new PgferryError(
        'PGFERRY_CUTOVER_FAILED',
        `${atFreeze.size} transaction(s) that were writing when writes were frozen are still open after ${Math.round(timeoutMs / 1000)}s (${who.map((w) => `pid ${w.pid} of ${w.role ?? '?'}`).join(', ') || `pids ${pids.join(', ')}`}): their writes could commit after the drain`,
        {
          side: 'source',
          hint: 'End those sessions (pg_terminate_backend) or let them finish, then run the cutover again; grant pg_signal_backend to the source role so pgferry can end them itself.',
        },
      );
    }
    await sleep(50);
  }
}

/** What a freeze will change, read before anything is changed, so that it can be recorded first. */
export async function planFreeze(
  client: pg.Client,
  method: FreezeMethod,
  tables: { schema: string; name: string }[],
): Promise<FreezeRecord> {
  const startedAt = new Date().toISOString();
  if (method === 'external') return { method, startedAt };
  if (method === 'readonly') {
    const [db] = await q<{ ro: string | null }>(
      client,
      'source',
      `SELECT (SELECT setting FROM pg_db_role_setting s, unnest(s.setconfig) AS setting
                WHERE s.setdatabase = d.oid AND s.setrole = 0 AND setting LIKE 'default_transaction_read_only=%') AS ro
         FROM pg_database d WHERE d.datname = current_database()`,
    );
    await refuseWritableRoles(client);
    return { method, startedAt, readonlyWasSet: db?.ro !== null && db?.ro !== undefined };
  }
  // revoke: who may write to the replicated tables (PUBLIC included)?
  const names = tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
  const grants = await q<{ tbl: string; role: string; privs: string[]; kind: 'table' | 'sequence' }>(
    client,
    'source',
    `SELECT c.oid::regclass::text AS tbl, coalesce(r.rolname, 'PUBLIC') AS role,
            array_agg(a.privilege_type ORDER BY a.privilege_type) AS privs,
            CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END AS kind
       FROM pg_class c
       -- A NULL ACL means the owner's default privileges: acldefault() spells them out.
       CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
       LEFT JOIN pg_roles r ON r.oid = a.grantee
      WHERE (a.grantee = 0 OR NOT r.rolsuper)
        AND ((c.oid = ANY($1::regclass[]) AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'))
          OR (c.relkind = 'S' AND c.relnamespace IN (SELECT relnamespace FROM pg_class WHERE oid = ANY($1::regclass[]))
              AND a.privilege_type IN ('USAGE', 'UPDATE')))
      GROUP BY 1, 2, 4`,
    [names],
  );
  return {
    method,
    startedAt,
    grants: grants.map((g) => ({ table: g.tbl, role: g.role, privileges: g.privs, kind: g.kind })),
  };
}

const grantSql = (verb: 'GRANT' | 'REVOKE', g: Grant) =>
  `${verb} ${g.privileges.join(', ')} ON ${g.kind === 'sequence' ? 'SEQUENCE ' : ''}${g.table} ${verb === 'GRANT' ? 'TO' : 'FROM'} ${roleName(g.role)}`;

/** Applies a planned freeze (again, after a crash: every statement is idempotent). */
export async function applyFreeze(client: pg.Client, source: ConnInfo, record: FreezeRecord): Promise<void> {
  if (record.method === 'readonly') {
    await q(
      client,
      'source',
      `ALTER DATABASE ${quoteIdent(source.database)} SET default_transaction_read_only = on`,
    );
  } else if (record.method === 'revoke') {
    await q(client, 'source', 'BEGIN');
    try {
      for (const g of record.grants ?? []) await q(client, 'source', grantSql('REVOKE', g));
      await q(client, 'source', 'COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }
}

/**
 * After the freeze took effect: ends the sessions that could still write, waits until they are
 * gone, then until every transaction that was writing at the freeze has ended.
 */
export async function stopWriters(
  client: pg.Client,
  record: FreezeRecord,
  relations: string[],
  timeouts: { sessionsMs?: number; writersMs?: number } = {},
): Promise<number> {
  let ended = 0;
  if (record.method !== 'external') {
    const roles = frozenRoles(record);
    if (roles === null || roles.length > 0) {
      ended = await endSessions(client, roles);
      await waitForSessionsGone(client, roles, timeouts.sessionsMs ?? 5_000);
    }
  }
  await waitForWriters(client, relations, timeouts.writersMs ?? 30_000);
  return ended;
}

/** Gives the source its writes back, exactly as they were before the freeze. */
export async function unfreezeWrites(
  client: pg.Client,
  source: ConnInfo,
  record: FreezeRecord,
): Promise<void> {
  if (record.method === 'readonly') {
    if (!record.readonlyWasSet) {
      await q(
        client,
        'source',
        `ALTER DATABASE ${quoteIdent(source.database)} RESET default_transaction_read_only`,
      );
    }
    return;
  }
  if (record.method === 'revoke') {
    for (const g of record.grants ?? []) await q(client, 'source', grantSql('GRANT', g));
  }
}

/** With --freeze external: waits until no change has been logged for settleMs. */
export async function waitForQuiet(
  readPosition: () => Promise<string>,
  settleMs: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = await readPosition();
  let quietSince = Date.now();
  while (Date.now() - quietSince < settleMs) {
    if (signal.aborted)
      throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped while waiting for writes to stop');
    if (Date.now() > deadline) {
      throw new PgferryError(
        'PGFERRY_CUTOVER_FAILED',
        `the source kept changing for ${Math.round(timeoutMs / 1000)}s after the freeze began: writes are not stopped`,
        {
          side: 'source',
          hint: 'Stop the application (e.g. heroku maintenance:on and scale workers to 0), or use --freeze external only once it is stopped; --freeze revoke or readonly stop writes themselves.',
        },
      );
    }
    await sleep(100, signal);
    const now = await readPosition();
    if (now !== last) {
      last = now;
      quietSince = Date.now();
    }
  }
}
