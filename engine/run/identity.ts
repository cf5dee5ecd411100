// What a server is, as opposed to how its URL spells it, and the mark a run leaves on its target.
//
// A database is identified by the cluster's system identifier (pg_control_system(), readable by
// most roles; managed services may hide it) and the database's oid and name. Two URLs point at the
// same live database when those agree and the server was started at the same instant
// (pg_postmaster_start_time(): readable by every role, so the check also holds where the system
// identifier is hidden, and a physical clone with the same identifier is not mistaken for it).
//
// The target carries the run's id in pgferry.run, created in the same transaction as the schema:
// present exactly when pgferry created the target's tables, so a resume can tell its own target
// from a database it must not touch.

import type pg from 'pg';
import type { ServerIdentity } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';
import { dropChunkMarks } from '../copy/chunk-marks.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q } from '../shared/db.js';

export interface LiveIdentity extends ServerIdentity {
  /** When the server last started: tells two servers apart where the system identifier is hidden. */
  startedAt: string;
}

export async function readIdentity(client: pg.Client, conn: ConnInfo): Promise<LiveIdentity> {
  const [row] = await q<{ oid: number; name: string; started: string }>(
    client,
    conn.side,
    `SELECT d.oid::int AS oid, d.datname AS name, pg_postmaster_start_time()::text AS started
       FROM pg_database d WHERE d.datname = current_database()`,
  );
  let systemIdentifier: string | null = null;
  try {
    const { rows } = await client.query<{ id: string }>(
      'SELECT system_identifier::text AS id FROM pg_control_system()',
    );
    systemIdentifier = rows[0]?.id ?? null;
  } catch {
    // Revoked (some managed services): the database oid, name and start time still tell.
  }
  return {
    ...conn.identity(),
    systemIdentifier,
    databaseOid: row!.oid,
    databaseName: row!.name,
    startedAt: row!.started,
  };
}

/** Whether two live identities are one database, however their URLs are spelled. */
export function sameDatabase(a: LiveIdentity, b: LiveIdentity): boolean {
  if (a.systemIdentifier && b.systemIdentifier && a.systemIdentifier !== b.systemIdentifier) return false;
  return a.startedAt === b.startedAt && a.databaseOid === b.databaseOid && a.databaseName === b.databaseName;
}

/** Refuses a source and a target that are one database. */
export function refuseSameDatabase(source: LiveIdentity, target: LiveIdentity): void {
  if (!sameDatabase(source, target)) return;
  throw new PgferryError(
    'PGFERRY_SAME_DATABASE',
    `--source and --target are the same database (${target.databaseName} on the server ${source.host}:${source.port} also reached as ${target.host}:${target.port})`,
    { side: 'config' },
  );
}

export const RUN_MARK_TABLE = 'run';

/** The SQL, appended to the pre-data script, that marks the target as this run's. */
export function runMarkSql(runId: string, source: ServerIdentity): string {
  const table = qualified(PGFERRY_SCHEMA, RUN_MARK_TABLE);
  const from = `${source.databaseName} on ${source.host}:${source.port}`;
  return [
    `CREATE SCHEMA ${quoteIdent(PGFERRY_SCHEMA)};`,
    `CREATE TABLE ${table} (run_id text PRIMARY KEY, source text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`,
    `INSERT INTO ${table} (run_id, source) VALUES (${quoteLiteral(runId)}, ${quoteLiteral(from)});`,
    `COMMENT ON SCHEMA ${quoteIdent(PGFERRY_SCHEMA)} IS ${quoteLiteral(`pgferry: this database is the target of run ${runId}; removed at cutover`)};`,
  ].join('\n');
}

/**
 * The mark again on a target that gave it up at the cutover, once a rollback makes it the run's
 * target again (idempotent).
 */
export async function restoreRunMark(
  client: pg.Client,
  runId: string,
  source: ServerIdentity,
): Promise<void> {
  if ((await readRunMark(client)) === runId) return;
  const table = qualified(PGFERRY_SCHEMA, RUN_MARK_TABLE);
  await q(client, 'target', 'BEGIN');
  try {
    await q(client, 'target', `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(PGFERRY_SCHEMA)}`);
    await q(
      client,
      'target',
      `CREATE TABLE IF NOT EXISTS ${table} (run_id text PRIMARY KEY, source text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
    );
    await q(client, 'target', `DELETE FROM ${table}`);
    await q(client, 'target', `INSERT INTO ${table} (run_id, source) VALUES ($1, $2)`, [
      runId,
      `${source.databaseName} on ${source.host}:${source.port}`,
    ]);
    await q(client, 'target', 'COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** The run id the target carries, or null when it carries none. */
export async function readRunMark(client: pg.Client): Promise<string | null> {
  const [exists] = await q<{ ok: boolean }>(client, 'target', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${quoteIdent(PGFERRY_SCHEMA)}.${quoteIdent(RUN_MARK_TABLE)}`,
  ]);
  if (!exists?.ok) return null;
  const rows = await q<{ run_id: string }>(
    client,
    'target',
    `SELECT run_id FROM ${qualified(PGFERRY_SCHEMA, RUN_MARK_TABLE)} LIMIT 1`,
  );
  return rows[0]?.run_id ?? null;
}

/** Removes the mark once the run is over (the target then belongs to the application). */
export async function dropRunMark(client: pg.Client): Promise<void> {
  await q(client, 'target', `DROP TABLE IF EXISTS ${qualified(PGFERRY_SCHEMA, RUN_MARK_TABLE)}`);
  await dropChunkMarks(client);
  // Only if pgferry put nothing else there (reverse replication keeps its capture in it).
  await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(PGFERRY_SCHEMA)}`).catch(() => {});
}
