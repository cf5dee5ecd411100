// The registry of capture runs on the source: pgferry.runs (one row per run that installed
// capture: its state file, host, pid, and a heartbeat) and pgferry.captured (the tables each run
// captures). A run's capture is alive while its heartbeat is fresh; `cleanup` refuses to remove a
// live one, and a run whose registry row or log tables are gone stops with PGFERRY_CAPTURE_REMOVED
// (the changes made since are lost to it: no rerun can bring them back). The heartbeat that keeps
// a run alive, and the size of its log, are heartbeat.ts.
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { qualified, quoteIdent } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';
import type { ChangeSourceKind } from './change-source.js';

export const RUNS_TABLE = 'runs';
export const CAPTURED_TABLE = 'captured';
/** A run whose last heartbeat is older than this (by the source's clock) is abandoned. */
export const ALIVE_SECONDS = 60;

const runs = qualified(PGFERRY_SCHEMA, RUNS_TABLE);
const captured = qualified(PGFERRY_SCHEMA, CAPTURED_TABLE);

export function captureRemoved(runId: string, what: string): PgferryError {
  return new PgferryError(
    'PGFERRY_CAPTURE_REMOVED',
    `the change capture of run ${runId} was removed from the source (${what}): changes made since then are lost to this run, so it cannot go on (running it again cannot help)`,
    { side: 'source' },
  );
}

/** Creates the capture schema and the registry (and brings a registry of an older pgferry up to date). */
export async function ensureCaptureSchema(client: pg.Client): Promise<void> {
  try {
    await q(client, 'source', 'BEGIN');
    // Two runs starting at once would race on CREATE … IF NOT EXISTS (a unique violation in the
    // catalog): one at a time.
    await q(client, 'source', "SELECT pg_advisory_xact_lock(hashtext('pgferry capture schema'))");
    await createRegistry(client);
    await q(client, 'source', 'COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function createRegistry(client: pg.Client): Promise<void> {
  await q(client, 'source', `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(PGFERRY_SCHEMA)}`);
  await q(
    client,
    'source',
    `CREATE TABLE IF NOT EXISTS ${runs} (
       run_id text PRIMARY KEY, state_file text, host text, pid int,
       started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz, stopped_at timestamptz)`,
  );
  // The change source of each run (a registry of an older pgferry: every run used triggers).
  // Checked first: ALTER TABLE would lock the registry against other runs' heartbeats every time.
  const [has] = await q<{ ok: boolean }>(
    client,
    'source',
    `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'capture'
                       AND NOT attisdropped) AS ok`,
    [`${PGFERRY_SCHEMA}.${RUNS_TABLE}`],
  );
  if (!has?.ok)
    await q(client, 'source', `ALTER TABLE ${runs} ADD COLUMN capture text NOT NULL DEFAULT 'triggers'`);
  await q(
    client,
    'source',
    `CREATE TABLE IF NOT EXISTS ${captured} (
       run_id text NOT NULL, relid oid NOT NULL, schema_name text NOT NULL, table_name text NOT NULL,
       log_table text NOT NULL, installed_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (run_id, relid))`,
  );
  // pgferry.captured of a pgferry before runs had captures of their own: keyed by relid alone.
  // Its rows belong to no run ('' here); `pgferry cleanup` without --run removes them.
  await q(
    client,
    'source',
    `DO $pgferry$ BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '${PGFERRY_SCHEMA}.${CAPTURED_TABLE}'::regclass
                         AND attname = 'run_id' AND NOT attisdropped) THEN
         ALTER TABLE ${captured} ADD COLUMN run_id text NOT NULL DEFAULT '';
         ALTER TABLE ${captured} DROP CONSTRAINT IF EXISTS captured_pkey;
         ALTER TABLE ${captured} ADD PRIMARY KEY (run_id, relid);
       END IF;
     END $pgferry$`,
  );
}

export interface RunOwner {
  runId: string;
  statePath: string;
}

/** A run as it registers: its owner and its change source's kind (cleanup removes by kind). */
export interface RunRegistration extends RunOwner {
  capture: ChangeSourceKind;
}

export const ownerParams = (o: RunOwner) => [o.runId, path.resolve(o.statePath), os.hostname(), process.pid];

/**
 * Records this run in the registry (or takes its row over on a resume), heartbeat now, creating
 * the registry first if need be: every change source readies the source server so.
 */
export async function registerRun(client: pg.Client, owner: RunRegistration): Promise<void> {
  await ensureCaptureSchema(client);
  await q(
    client,
    'source',
    `INSERT INTO ${runs} (run_id, state_file, host, pid, heartbeat_at, capture) VALUES ($1, $2, $3, $4, now(), $5)
     ON CONFLICT (run_id) DO UPDATE
       SET state_file = EXCLUDED.state_file, host = EXCLUDED.host, pid = EXCLUDED.pid,
           heartbeat_at = now(), stopped_at = NULL`,
    [...ownerParams(owner), owner.capture],
  );
}

/** This run's tables whose capture is already installed (a resumed install finds them). */
export async function installedCapture(client: pg.Client, runId: string): Promise<Set<number>> {
  const [exists] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${PGFERRY_SCHEMA}.${CAPTURED_TABLE}`,
  ]);
  if (!exists?.ok) return new Set();
  const rows = await q<{ relid: number }>(
    client,
    'source',
    `SELECT relid::int AS relid FROM ${captured} WHERE run_id = $1`,
    [runId],
  );
  return new Set(rows.map((r) => r.relid));
}

/**
 * What of this run's capture is missing on the source: its registry row, or log tables (by name).
 * Null when everything is in place.
 */
export async function missingCapture(
  client: pg.Client,
  runId: string,
  logTables: string[],
): Promise<string | null> {
  const [reg] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${PGFERRY_SCHEMA}.${RUNS_TABLE}`,
  ]);
  if (!reg?.ok) return `${PGFERRY_SCHEMA}.${RUNS_TABLE} does not exist`;
  const [row] = await q<{ n: number }>(
    client,
    'source',
    `SELECT count(*)::int AS n FROM ${runs} WHERE run_id = $1`,
    [runId],
  );
  if (!row?.n) return `the run is not in ${PGFERRY_SCHEMA}.${RUNS_TABLE}`;
  const gone = await q<{ t: string }>(
    client,
    'source',
    `SELECT t FROM unnest($1::text[]) t WHERE to_regclass(format('%I.%I', $2::text, t)) IS NULL ORDER BY t`,
    [logTables, PGFERRY_SCHEMA],
  );
  if (gone.length > 0) {
    return `log table${gone.length > 1 ? 's' : ''} ${gone
      .slice(0, 3)
      .map((g) => `${PGFERRY_SCHEMA}.${g.t}`)
      .join(', ')}${gone.length > 3 ? ', …' : ''} missing`;
  }
  return null;
}

/** Throws PGFERRY_CAPTURE_REMOVED unless this run's registry row and every log table exist. */
export async function requireCapture(client: pg.Client, runId: string, logTables: string[]): Promise<void> {
  const missing = await missingCapture(client, runId, logTables);
  if (missing) throw captureRemoved(runId, missing);
}

/** A capture found on the source: a registered run, or (runId null) triggers that belong to none. */
export interface CaptureRun {
  runId: string | null;
  stateFile: string | null;
  host: string | null;
  pid: number | null;
  startedAt: string | null;
  heartbeatAt: string | null;
  /** Seconds since the last heartbeat, by the source's clock. */
  heartbeatAgeSeconds: number | null;
  stopped: boolean;
  /** The heartbeat is less than ALIVE_SECONDS old and the run has not stopped. */
  alive: boolean;
  tables: number;
  /** Its change source: triggers, bucardo or logical (null for triggers of no registered run). */
  capture: ChangeSourceKind | null;
}

/** Every capture on the source, oldest run first; triggers of no registered run come last. */
export async function listCaptures(client: pg.Client): Promise<CaptureRun[]> {
  const [reg] = await q<{ runs: boolean; captured: boolean; hasRunId: boolean; hasCapture: boolean }>(
    client,
    'source',
    `SELECT to_regclass($1) IS NOT NULL AS runs, to_regclass($2) IS NOT NULL AS captured,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'run_id'
                       AND NOT attisdropped) AS "hasRunId",
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'capture'
                       AND NOT attisdropped) AS "hasCapture"`,
    [`${PGFERRY_SCHEMA}.${RUNS_TABLE}`, `${PGFERRY_SCHEMA}.${CAPTURED_TABLE}`],
  );
  const out: CaptureRun[] = [];
  if (reg?.runs) {
    const tables =
      reg.captured && reg.hasRunId
        ? `(SELECT count(*)::int FROM ${captured} c WHERE c.run_id = r.run_id)`
        : '0';
    const rows = await q<{
      run_id: string;
      state_file: string | null;
      host: string | null;
      pid: number | null;
      started_at: Date | null;
      heartbeat_at: Date | null;
      age: number | null;
      stopped: boolean;
      alive: boolean;
      tables: number;
      capture: ChangeSourceKind;
    }>(
      client,
      'source',
      `SELECT r.run_id, r.state_file, r.host, r.pid, r.started_at, r.heartbeat_at,
              extract(epoch FROM clock_timestamp() - r.heartbeat_at)::float8 AS age,
              r.stopped_at IS NOT NULL AS stopped,
              coalesce(r.stopped_at IS NULL AND r.heartbeat_at > clock_timestamp() - make_interval(secs => $1), false) AS alive,
              ${tables} AS tables, ${reg.hasCapture ? 'r.capture' : "'triggers'"} AS capture
         FROM ${runs} r ORDER BY r.started_at, r.run_id`,
      [ALIVE_SECONDS],
    );
    for (const r of rows) {
      out.push({
        runId: r.run_id,
        stateFile: r.state_file,
        host: r.host,
        pid: r.pid,
        startedAt: r.started_at?.toISOString() ?? null,
        heartbeatAt: r.heartbeat_at?.toISOString() ?? null,
        heartbeatAgeSeconds: r.age === null ? null : Math.round(r.age * 10) / 10,
        stopped: r.stopped,
        alive: r.alive,
        tables: r.tables,
        capture: r.capture,
      });
    }
  }
  // Row triggers calling into the pgferry schema whose function names no registered run: a
  // capture of an older pgferry, or one whose registry row was deleted by hand.
  const ownedBy = reg?.runs
    ? `AND NOT EXISTS (SELECT 1 FROM ${runs} r WHERE p.proname LIKE 'capture\\_%\\_' || r.run_id || '\\_%')`
    : '';
  const [orphans] = await q<{ n: number }>(
    client,
    'source',
    `SELECT count(DISTINCT t.tgrelid)::int AS n
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND NOT t.tgisinternal AND t.tgparentid = 0 AND (t.tgtype::int & 1) = 1 ${ownedBy}`,
    [PGFERRY_SCHEMA],
  );
  if (orphans && orphans.n > 0) {
    out.push({
      runId: null,
      stateFile: null,
      host: null,
      pid: null,
      startedAt: null,
      heartbeatAt: null,
      heartbeatAgeSeconds: null,
      stopped: true,
      alive: false,
      tables: orphans.n,
      capture: null,
    });
  }
  return out;
}

/** One line about a capture run, for preflight and cleanup. */
export function describeRun(r: CaptureRun): string {
  if (r.runId === null) return `capture triggers on ${r.tables} table(s) that belong to no registered run`;
  const beat =
    r.heartbeatAgeSeconds === null
      ? 'no heartbeat'
      : `last heartbeat ${r.heartbeatAgeSeconds}s ago (${r.heartbeatAt})`;
  const source = r.capture && r.capture !== 'triggers' ? `, --capture ${r.capture}` : '';
  return `run ${r.runId}${source} (state ${r.stateFile ?? '?'}, host ${r.host ?? '?'}, pid ${r.pid ?? '?'}, ${beat}${r.stopped ? ', stopped' : ''}) capturing ${r.tables} table(s)`;
}
