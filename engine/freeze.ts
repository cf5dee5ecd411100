// Freezing writes on the source for the cutover, and undoing it. Every method records what it
// changed (in the checkpoint store, through the caller) so that a failed cutover, or a crash in
// the middle of one, can give the source its writes back.
//
//  external: the operator stopped the application (e.g. Heroku maintenance mode); pgferry only
//            waits until the change log has been quiet for a settle time.
//  revoke:   INSERT, UPDATE, DELETE, TRUNCATE on every replicated table and USAGE on sequences are
//            revoked from every role that holds them, pgferry's own included (on Heroku the
//            application often shares pgferry's role; pgferry itself only reads the tables and
//            writes its own log), and their sessions other than pgferry's are ended.
//  readonly: the database's default_transaction_read_only is set, and every other session on it
//            ended, so that new transactions cannot write.
import type pg from 'pg';
import type { ConnInfo } from './conn-info.js';
import { q, quoteIdent } from './db.js';
import { dbError, PgferryError, sqlstateOf } from './errors.js';
import { sleep } from './sleep.js';

export const FREEZE_METHODS = ['external', 'revoke', 'readonly'] as const;
export type FreezeMethod = (typeof FREEZE_METHODS)[number];

export interface Grant {
  table: string;
  role: string;
  privileges: string[];
  kind: 'table' | 'sequence';
}

export interface FreezeRecord {
  method: FreezeMethod;
  startedAt: string;
  grants?: Grant[];
  readonlyWasSet?: boolean;
  sessionsEnded?: number;
}

// The application's sessions on this database (of the given roles, if any): everything but
// pgferry's own sessions and background workers. Without pg_read_all_stats another role's row
// shows NULL in most columns (application_name, backend_type): IS DISTINCT FROM keeps those rows;
// usesysid is NULL only for background workers.
const OTHER_SESSIONS = `FROM pg_stat_activity
  WHERE datname = current_database() AND pid <> pg_backend_pid() AND usesysid IS NOT NULL
    AND backend_type IS DISTINCT FROM 'walsender'
    AND (usename <> current_user OR application_name IS DISTINCT FROM 'pgferry')
    AND ($1::text[] IS NULL OR usename = ANY($1))`;

/**
 * Ends those sessions one by one: pg_terminate_backend raises an error (42501) for a session of a
 * role pgferry may not signal; that one is left for waitForSessionsGone to report by name.
 */
async function endSessions(client: pg.Client, roles: string[] | null): Promise<number> {
  const pids = await q<{ pid: number }>(client, 'source', `SELECT pid ${OTHER_SESSIONS}`, [roles]);
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

/** The roles whose sessions the freeze ends: every role for readonly, the revoked ones for revoke. */
export const frozenRoles = (record: FreezeRecord): string[] | null =>
  record.method === 'revoke' ? [...new Set(record.grants?.map((g) => g.role))] : null;

/**
 * Waits until the sessions the freeze ended are gone (a terminated backend exits a moment later,
 * and its transaction ends with it): then no write is in flight. A session pgferry could not end
 * (another role's, without pg_signal_backend) fails the freeze by name.
 */
export async function waitForSessionsGone(
  client: pg.Client,
  record: FreezeRecord,
  timeoutMs = 5_000,
): Promise<void> {
  if (record.method === 'external') return;
  const roles = frozenRoles(record);
  if (roles !== null && roles.length === 0) return;
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
    await sleep(20);
  }
}

export async function freezeWrites(
  client: pg.Client,
  source: ConnInfo,
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
    await q(
      client,
      'source',
      `ALTER DATABASE ${quoteIdent(source.database)} SET default_transaction_read_only = on`,
    );
    const record: FreezeRecord = {
      method,
      startedAt,
      readonlyWasSet: db?.ro !== null && db?.ro !== undefined,
    };
    record.sessionsEnded = await endSessions(client, null).catch(async (err) => {
      await unfreezeWrites(client, source, record).catch(() => {});
      throw err;
    });
    return record;
  }
  // revoke: who may write to the replicated tables, other than pgferry's own role?
  const names = tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
  const grants = await q<{ tbl: string; role: string; privs: string[]; kind: 'table' | 'sequence' }>(
    client,
    'source',
    `SELECT c.oid::regclass::text AS tbl, r.rolname AS role,
            array_agg(a.privilege_type ORDER BY a.privilege_type) AS privs,
            CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END AS kind
       FROM pg_class c
       -- A NULL ACL means the owner's default privileges: acldefault() spells them out.
       CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
       JOIN pg_roles r ON r.oid = a.grantee
      WHERE NOT r.rolsuper
        AND ((c.oid = ANY($1::regclass[]) AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'))
          OR (c.relkind = 'S' AND c.relnamespace IN (SELECT relnamespace FROM pg_class WHERE oid = ANY($1::regclass[]))
              AND a.privilege_type IN ('USAGE', 'UPDATE')))
      GROUP BY 1, 2, 4`,
    [names],
  );
  const record: FreezeRecord = {
    method,
    startedAt,
    grants: grants.map((g) => ({ table: g.tbl, role: g.role, privileges: g.privs, kind: g.kind })),
  };
  await q(client, 'source', 'BEGIN');
  try {
    for (const g of record.grants ?? []) {
      await q(
        client,
        'source',
        `REVOKE ${g.privileges.join(', ')} ON ${g.kind === 'sequence' ? 'SEQUENCE ' : ''}${g.table} FROM ${quoteIdent(g.role)}`,
      );
    }
    await q(client, 'source', 'COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
  const roles = [...new Set(record.grants?.map((g) => g.role))];
  record.sessionsEnded =
    roles.length > 0
      ? await endSessions(client, roles).catch(async (err) => {
          await unfreezeWrites(client, source, record).catch(() => {});
          throw err;
        })
      : 0;
  return record;
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
    for (const g of record.grants ?? []) {
      await q(
        client,
        'source',
        `GRANT ${g.privileges.join(', ')} ON ${g.kind === 'sequence' ? 'SEQUENCE ' : ''}${g.table} TO ${quoteIdent(g.role)}`,
      );
    }
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
          hint: 'Stop the application (e.g. heroku maintenance:on and scale workers to 0), or use --freeze revoke or readonly.',
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
