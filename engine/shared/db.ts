// Every session pgferry opens goes through here, so every one carries application_name, a
// statement_timeout and a lock_timeout (the source is production: pgferry must never queue an
// ACCESS EXCLUSIVE lock request or run a query without bound).
import { createHash } from 'node:crypto';
import pg from 'pg';
import { dbError, PgferryError, sqlstateOf } from '../../lib/errors.js';
import type { ConnInfo } from './conn-info.js';

/** What a session is for decides its timeouts. */
export const SESSION_KINDS = ['control', 'snapshot', 'copy', 'ddl', 'index', 'replication'] as const;
export type SessionKind = (typeof SESSION_KINDS)[number];

const TIMEOUTS: Record<SessionKind, { statement: number; lock: number; idleInTx: number }> = {
  // Catalog reads, checkpoints of progress: short.
  control: { statement: 60_000, lock: 5_000, idleInTx: 600_000 },
  // Holds the exported snapshot open while workers copy; it idles in its transaction by design.
  snapshot: { statement: 60_000, lock: 5_000, idleInTx: 0 },
  // One chunk's COPY: bounded by chunk size, generous for slow links.
  copy: { statement: 6 * 3_600_000, lock: 30_000, idleInTx: 3_600_000 },
  // Schema statements on the target.
  ddl: { statement: 3_600_000, lock: 30_000, idleInTx: 600_000 },
  // Index and constraint builds on the target can take hours on big tables.
  index: { statement: 24 * 3_600_000, lock: 60_000, idleInTx: 600_000 },
  // A logical slot's stream (walsender): it streams for as long as the run replays.
  replication: { statement: 0, lock: 5_000, idleInTx: 0 },
};

export type Client = pg.Client;

// Startup options of every session. Values cross servers as text (text COPY, key boundaries read
// by one session and used by another): pin their output formats as pg_dump does, whatever the role
// or database sets. row_security=off makes a table filtered by row-level security fail loudly
// (42501) instead of silently copying only the rows its policies let this role see.
// default_transaction_read_only=off: the cutover's --freeze readonly sets the source database
// read-only, and a session pgferry opens after that (the drain's, a rerun's) must still write its
// log deletes; startup options outrank ALTER DATABASE/ROLE SET. The URL's own options come first,
// so these win.
const SESSION_OPTIONS =
  '-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c row_security=off -c default_transaction_read_only=off';

// Node's codes for a certificate it did not accept.
const TLS_CERT_ERRORS =
  /^(?:ERR_TLS_CERT_ALTNAME_INVALID|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED|CERT_REJECTED|HOSTNAME_MISMATCH)$/;

/** A refusal that the next attempt of sslmode allow or prefer answers (libpq falls back the same way). */
function fallsBack(err: unknown, triedTls: boolean): boolean {
  // node-postgres's own error when the server answers the SSLRequest with N: it carries no code.
  if (triedTls) return (err as Error)?.message === 'The server does not support SSL connections';
  // pg_hba rejected the plain connection (hostssl lines only): 28000 invalid_authorization_specification.
  return sqlstateOf(err) === '28000';
}

function connectError(conn: ConnInfo, err: unknown): PgferryError {
  const code = conn.side === 'source' ? 'PGFERRY_SOURCE_CONNECT' : 'PGFERRY_TARGET_CONNECT';
  const sysCode = (err as { code?: unknown })?.code;
  if (typeof sysCode === 'string' && TLS_CERT_ERRORS.test(sysCode)) {
    const fix =
      conn.sslmode === 'require'
        ? 'sslrootcert names a CA that did not sign it: correct sslrootcert, or leave it out to encrypt without verifying'
        : `with sslmode=${conn.sslmode}, set sslrootcert to the CA that signed the server's certificate (RDS: global-bundle.pem from AWS; sslrootcert=system for public CAs), or use sslmode=require to encrypt without verifying (Heroku)`;
    return new PgferryError(
      code,
      `the ${conn.side}'s TLS certificate was not accepted for ${conn.label()}: ${(err as Error).message} (${sysCode})`,
      { side: conn.side, cause: err, hint: fix },
    );
  }
  const e = dbError(conn.side, err);
  return new PgferryError(code, `cannot connect to ${conn.label()}: ${e.message}`, {
    side: conn.side,
    sqlstate: e.sqlstate,
    cause: err,
    hint: pooled(e) ? POOLER_HINT : undefined,
  });
}

// A pooler (pgbouncer, Heroku's connection pooler, RDS Proxy) refuses the startup options every
// session carries (08P01), and would break exported snapshots and long transactions anyway.
const pooled = (e: PgferryError) => e.sqlstate === '08P01' && /startup parameter/i.test(e.message);
const POOLER_HINT =
  "A connection pooler answered (pgbouncer, Heroku's connection pooler, RDS Proxy): pgferry needs a direct connection to PostgreSQL, for its session settings, exported snapshots and long transactions. Use the database's own URL (Heroku: DATABASE_URL, not DATABASE_CONNECTION_POOL_URL).";

const worked = new WeakMap<ConnInfo, number>();

export async function connect(
  conn: ConnInfo,
  kind: SessionKind = 'control',
  opts: { connectTimeoutMs?: number } = {},
): Promise<pg.Client> {
  const t = TIMEOUTS[kind];
  const settings = conn.clientSettings();
  // allow and prefer: once one kind of connection worked, later sessions start with it.
  const start = worked.get(conn) ?? 0;
  const attempts = conn.sslAttempts().slice(start);
  for (const [i, ssl] of attempts.entries()) {
    const client = new pg.Client({
      host: settings.host,
      port: settings.port,
      user: settings.user,
      password: settings.password,
      database: settings.database,
      ssl,
      application_name: 'pgferry',
      // As startup options, not node-postgres's fields: it sends none whose value is 0 (no
      // limit), so the database's or role's own timeout (an idle_in_transaction_session_timeout
      // of minutes, common in production) would end the session holding an exported snapshot.
      options: [
        settings.options,
        SESSION_OPTIONS,
        `-c statement_timeout=${t.statement} -c lock_timeout=${t.lock} -c idle_in_transaction_session_timeout=${t.idleInTx}`,
      ]
        .filter(Boolean)
        .join(' '),
      connectionTimeoutMillis: opts.connectTimeoutMs ?? settings.connectionTimeoutMillis ?? 15_000,
      keepAlive: true,
      ...(kind === 'replication' ? { replication: 'database' } : {}),
    });
    // An idle client whose server goes away emits 'error'; the next query on it fails and is
    // reported there, so the event itself must not crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
      worked.set(conn, start + i);
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      if (i < attempts.length - 1 && fallsBack(err, ssl !== false)) continue;
      throw connectError(conn, err);
    }
  }
  throw new Error('unreachable: no connection attempt');
}

/** Runs fn with a fresh session and always closes it. */
export async function withClient<T>(
  conn: ConnInfo,
  kind: SessionKind,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = await connect(conn, kind);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Runs statements without parameters as one simple query (one round trip); returns the rows of
 * the last. A statement that fails ends the string there, and its error names the side (and object).
 */
export async function simple<T extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  side: 'source' | 'target',
  statements: string[],
  object?: string,
): Promise<T[]> {
  try {
    const res = (await client.query<T>(statements.join(';\n'))) as pg.QueryResult<T> | pg.QueryResult<T>[];
    return Array.isArray(res) ? (res.at(-1)?.rows ?? []) : res.rows;
  } catch (err) {
    throw dbError(side, err, object);
  }
}

const names = new Map<string, string>();

/** A prepared statement's name, derived from its text (remembered: replay asks every round). */
function statementName(sql: string): string {
  let name = names.get(sql);
  if (name === undefined) {
    // Texts come from a bounded set (per table and shape), but drift makes new ones over a long run.
    if (names.size >= 1_000) names.clear();
    name = `pgferry_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
    names.set(sql, name);
  }
  return name;
}

/**
 * Runs one query as a named prepared statement (parsed and planned once per session, by a name
 * derived from its text), naming the side (and object) in any error.
 */
export async function prepared<T extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  side: 'source' | 'target',
  sql: string,
  params: unknown[] = [],
  object?: string,
): Promise<T[]> {
  const name = statementName(sql);
  try {
    return (await client.query<T>({ name, text: sql, values: params })).rows;
  } catch (err) {
    throw dbError(side, err, object);
  }
}

/** Runs one query, naming the side (and object) in any error. */
export async function q<T extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  side: 'source' | 'target',
  sql: string,
  params?: unknown[],
  object?: string,
): Promise<T[]> {
  try {
    const res = await client.query<T>(sql, params);
    return res.rows;
  } catch (err) {
    throw dbError(side, err, object);
  }
}
