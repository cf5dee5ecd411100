// Change capture with plain PL/pgSQL triggers: no superuser, no extension, no replication slot.
// Each captured table gets a log table in the pgferry schema holding the primary key in the key's
// own column types, plus the operation, a timestamp and the writing transaction's id for ordering
// (as Bucardo's delta tables keep a key and a time), and row triggers that write the key of every
// inserted, updated or deleted row (both keys when an UPDATE changes the key). A TRUNCATE trigger
// logs the truncated relation.
//
// Row triggers on a partitioned table are cloned to every partition, so direct writes into a
// partition and rows moving between partitions are captured with the partitioned table's key.
// Statement triggers are not cloned: TRUNCATE triggers go on the root and on each partition.
//
// The triggers are ENABLE ALWAYS: a plain trigger does not fire in a session whose
// session_replication_role is replica, as are the writes of Bucardo, Slony or pglogical into a
// database they feed, and of ETL jobs skipping foreign-key checks; those changes would be lost.
// (That takes the table's owner; a role with only the TRIGGER privilege gets plain ones, warned.)
// A trigger disabled or dropped under the run is found (trigger-state.ts) and stops it.
//
// Capture belongs to one run: every object carries the run's id in its name (log_<run>_<oid>,
// capture_row_<run>_<oid>, triggers pgferry_capture_<run>), and pgferry.captured lists each run's
// tables, so two runs from one source (two targets) each have a log of their own and never
// consume the other's changes. pgferry.runs is the registry of those runs (engine/capture/registry.ts).
import type pg from 'pg';
import { classify, dbError, PgferryError } from '../../../lib/errors.js';
import { logColumns } from '../../../lib/log-columns.js';
import { sleep } from '../../../lib/sleep.js';
import { qualified, quoteIdent, quoteLiteral } from '../../../lib/sql.js';
import { displayName, PGFERRY_SCHEMA, type TableInfo } from '../../shared/catalog.js';
import { type InstallOptions, keyType } from '../change-source.js';

/** The capture triggers of one run. */
export const triggerRow = (runId: string) => `pgferry_capture_${runId}`;
export const triggerTruncate = (runId: string) => `pgferry_capture_truncate_${runId}`;

export interface CapturedTable {
  runId: string;
  schema: string;
  name: string;
  oid: number;
  logTable: string;
  key: { name: string; type: string; collation?: string }[];
  partitioned: boolean;
}

export const logTableName = (runId: string, oid: number) => `log_${runId}_${oid}`;
const fn = (c: Pick<CapturedTable, 'runId' | 'oid'>, what: 'row' | 'truncate') =>
  qualified(PGFERRY_SCHEMA, `capture_${what}_${c.runId}_${c.oid}`);

/** Tables whose changes are captured: ordinary tables and partitioned roots, never partitions. */
export const captureUnits = (tables: TableInfo[]): TableInfo[] =>
  tables.filter((t) => t.partitionRoot === null);

export function describeCapture(runId: string, t: TableInfo): CapturedTable {
  if (!t.primaryKey) {
    throw new PgferryError('PGFERRY_TABLE_NO_PRIMARY_KEY', `${displayName(t)} has no primary key`, {
      side: 'source',
      object: displayName(t),
    });
  }
  return {
    runId,
    schema: t.schema,
    name: t.name,
    oid: t.oid,
    logTable: logTableName(runId, t.oid),
    key: t.primaryKey.map((k) => ({
      name: k.name,
      type: k.type,
      ...(k.collation ? { collation: k.collation } : {}),
    })),
    partitioned: t.kind === 'p',
  };
}

/**
 * The setting pgferry's apply sessions carry (sessions.ts): the run whose replay writes. Any role
 * may set a custom (dotted) setting, where session_replication_role needs a superuser.
 */
export const ORIGIN_SETTING = 'pgferry.origin';

/**
 * The capture functions of one table. With `origin` (a run id: reverse replication and two-way
 * sync), rows written by that run's own apply sessions are not captured, so that a change applied
 * to a side never comes back from it (no echo). A one-way run's functions skip the check.
 */
export function captureFunctions(c: CapturedTable, origin?: string): string[] {
  const log = qualified(PGFERRY_SCHEMA, c.logTable);
  const L = logColumns(c.key);
  const keyCols = c.key.map((k) => quoteIdent(k.name));
  const row = (rec: 'NEW' | 'OLD') => keyCols.map((k) => `${rec}.${k}`).join(', ');
  const insert = (op: string, rec: 'NEW' | 'OLD') =>
    `INSERT INTO ${log} (${L.op}, ${keyCols.join(', ')}) VALUES ('${op}', ${row(rec)});`;
  const keyChanged = `(${row('OLD')}) IS DISTINCT FROM (${row('NEW')})`;
  const skip = origin
    ? `IF current_setting('${ORIGIN_SETTING}', true) = ${quoteLiteral(origin)} THEN RETURN NULL; END IF;`
    : '';
  // SECURITY DEFINER with a pinned search_path: application roles need no privilege on the
  // pgferry schema, and nothing they put on their search_path can hijack the function.
  const definer = 'SECURITY DEFINER SET search_path = pg_catalog, pg_temp';
  // The bodies embed user identifiers (key column names), so they are passed as a quoted string
  // literal, never inside a fixed dollar-quote tag that a column named with it would end.
  return [
    `CREATE OR REPLACE FUNCTION ${fn(c, 'row')}() RETURNS trigger LANGUAGE plpgsql ${definer} AS ${quoteLiteral(`
BEGIN
  ${skip}
  IF TG_OP = 'DELETE' THEN
    ${insert('D', 'OLD')}
  ELSIF TG_OP = 'INSERT' THEN
    ${insert('I', 'NEW')}
  ELSE
    ${insert('U', 'NEW')}
    IF ${keyChanged} THEN
      ${insert('U', 'OLD')}
    END IF;
  END IF;
  RETURN NULL;
END
`)}`,
    `CREATE OR REPLACE FUNCTION ${fn(c, 'truncate')}() RETURNS trigger LANGUAGE plpgsql ${definer} AS ${quoteLiteral(`
BEGIN
  ${skip}
  INSERT INTO ${log} (${L.op}, ${L.rel}) VALUES ('T', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
  RETURN NULL;
END
`)}`,
  ];
}

/** The DDL that creates one table's log, functions and row trigger (not the TRUNCATE triggers). */
export function captureDdl(c: CapturedTable, origin?: string): string[] {
  const log = qualified(PGFERRY_SCHEMA, c.logTable);
  const L = logColumns(c.key);
  const table = qualified(c.schema, c.name);
  return [
    // The position is the writing transaction's id, not a sequence: under concurrent writers a
    // nextval per captured row (and a unique index on it) cost the application's transactions
    // about half of the capture's overhead (measured: pgbench -c 4, CPU per transaction +0.13 ms
    // with an identity primary key, +0.07 ms with txid_current() and a plain index). Batches are
    // still windows of positions (trigger-source.ts), a transaction's rows always in one.
    `CREATE TABLE ${log} (
       ${L.seq} bigint NOT NULL DEFAULT txid_current(),
       ${L.op} "char" NOT NULL,
       ${L.at} timestamptz NOT NULL DEFAULT clock_timestamp(),
       ${L.rel} text,
       ${c.key.map((k) => `${quoteIdent(k.name)} ${keyType(k)}`).join(',\n       ')}
     ) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000)`,
    `CREATE INDEX ON ${log} (${L.seq})`,
    `COMMENT ON TABLE ${log} IS ${quoteLiteral(`pgferry change log of ${c.schema}.${c.name} for run ${c.runId}`)}`,
    ...captureFunctions(c, origin),
    `CREATE TRIGGER ${quoteIdent(triggerRow(c.runId))} AFTER INSERT OR UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${fn(c, 'row')}()`,
  ];
}

const truncateTrigger = (c: CapturedTable, on: { schema: string; name: string }) =>
  `CREATE TRIGGER ${quoteIdent(triggerTruncate(c.runId))} AFTER TRUNCATE ON ${qualified(on.schema, on.name)} FOR EACH STATEMENT EXECUTE FUNCTION ${fn(c, 'truncate')}()`;

/** A capture trigger made ENABLE ALWAYS (a row trigger's partition clones with it). */
const always = (on: { schema: string; name: string }, trigger: string) =>
  `ALTER TABLE ${qualified(on.schema, on.name)} ENABLE ALWAYS TRIGGER ${quoteIdent(trigger)}`;

/**
 * The relations of `tables` the session's role does not own (nor inherits the owner's rights):
 * CREATE TRIGGER needs only the TRIGGER privilege, ALTER TABLE … ENABLE ALWAYS ownership.
 */
async function notOwned(client: pg.Client, tables: TableInfo[]): Promise<Set<number>> {
  const { rows } = await client.query<{ oid: number }>(
    `SELECT c.oid FROM pg_class c WHERE c.oid = ANY($1::oid[]) AND NOT pg_has_role(c.relowner, 'USAGE')`,
    [tables.map((t) => t.oid)],
  );
  return new Set(rows.map((r) => Number(r.oid)));
}

/** Installs capture on one table in one transaction (CREATE TRIGGER under short lock waits). */
export async function installCapture(
  client: pg.Client,
  runId: string,
  table: TableInfo,
  partitions: TableInfo[],
  opts: InstallOptions,
): Promise<CapturedTable> {
  const c = describeCapture(runId, table);
  const all = [table, ...partitions];
  const foreign = await notOwned(client, all);
  if (foreign.size > 0) {
    opts.log.warn(
      { table: displayName(table), notOwned: all.filter((t) => foreign.has(t.oid)).map(displayName) },
      'the source role does not own the table: its capture triggers are plain ones, which writers in session_replication_role replica skip',
    );
  }
  const owned = all.filter((t) => !foreign.has(t.oid));
  const statements = [
    ...captureDdl(c, opts.origin),
    truncateTrigger(c, c),
    ...partitions.map((p) => truncateTrigger(c, p)),
    // Each relation's own: minor releases before a 2022 fix neither recurse to a row trigger's
    // clones nor clone its state to partitions.
    ...owned.flatMap((t) => [always(t, triggerRow(runId)), always(t, triggerTruncate(runId))]),
    `INSERT INTO ${qualified(PGFERRY_SCHEMA, 'captured')} (run_id, relid, schema_name, table_name, log_table) VALUES (${quoteLiteral(runId)}, ${c.oid}, ${quoteLiteral(c.schema)}, ${quoteLiteral(c.name)}, ${quoteLiteral(c.logTable)})`,
  ];
  await underShortLocks(client, displayName(table), opts, 'install', async () => {
    for (const sql of statements) await client.query(sql);
  });
  return c;
}

/**
 * Makes a run's installed capture functions skip its own apply sessions' rows (reverse replication
 * is about to write into this side). CREATE OR REPLACE FUNCTION locks no table: the triggers keep
 * firing and call the new bodies from the next statement on.
 */
export async function skipOwnWrites(client: pg.Client, captured: CapturedTable[]): Promise<void> {
  for (const c of captured) {
    for (const sql of captureFunctions(c, c.runId)) {
      try {
        await client.query(sql);
      } catch (err) {
        throw dbError('source', err, `${c.schema}.${c.name}`);
      }
    }
  }
}

/**
 * Removes one table's capture (a table leaving the run): its triggers (the row trigger's clones on
 * partitions go with it), functions, log table and registry row, in one transaction under the
 * same short lock waits as the install. Idempotent; a table dropped meanwhile is fine.
 */
export async function uninstallCapture(
  client: pg.Client,
  c: Pick<CapturedTable, 'runId' | 'schema' | 'name' | 'oid' | 'logTable'>,
  opts: InstallOptions,
): Promise<void> {
  const fns = [fn(c, 'row'), fn(c, 'truncate')];
  await underShortLocks(client, `${c.schema}.${c.name}`, opts, 'removal', async () => {
    const { rows } = await client.query<{ sql: string }>(
      `SELECT format('DROP TRIGGER %I ON %s', tgname, tgrelid::regclass) AS sql FROM pg_trigger
        WHERE tgparentid = 0 AND tgfoid IN (SELECT to_regprocedure(f || '()') FROM unnest($1::text[]) f)`,
      [fns],
    );
    for (const r of rows) await client.query(r.sql);
    await client.query(`DROP FUNCTION IF EXISTS ${fns.map((f) => `${f}()`).join(', ')}`);
    await client.query(`DROP TABLE IF EXISTS ${qualified(PGFERRY_SCHEMA, c.logTable)}`);
    await client.query(
      `DELETE FROM ${qualified(PGFERRY_SCHEMA, 'captured')} WHERE run_id = $1 AND relid = $2`,
      [c.runId, c.oid],
    );
  });
}

/**
 * Runs `body` in one transaction whose locks are waited for under a short lock_timeout, retried
 * with backoff: CREATE and DROP TRIGGER take locks that queue behind any long holder (an
 * anti-wraparound VACUUM, a long transaction) and would then block the application behind them.
 * A table that stays locked is reported by name.
 */
export async function underShortLocks(
  client: pg.Client,
  table: string,
  opts: InstallOptions,
  what: 'install' | 'removal',
  body: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + (opts.lockWaitMs ?? 120_000);
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '${opts.lockTimeoutMs ?? 2000}ms'`);
      await body();
      await client.query('COMMIT');
      return;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      const e = dbError('source', err, table);
      if (classify(e) === 'retry' && Date.now() < deadline && !opts.signal.aborted) {
        opts.log.warn({ table, attempt, err: e.message }, `table is locked: retrying the capture ${what}`);
        const backoff = Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random());
        await sleep(Math.max(0, Math.min(backoff, deadline - Date.now())), opts.signal);
        continue;
      }
      if (e.sqlstate === '55P03') {
        throw new PgferryError(
          'PGFERRY_CAPTURE_LOCKED',
          `${table} stayed locked for ${Math.round((opts.lockWaitMs ?? 120_000) / 1000)}s (${attempt} attempts) while ${what === 'install' ? 'installing' : 'removing'} capture`,
          { side: 'source', object: table, sqlstate: e.sqlstate, cause: err },
        );
      }
      throw e;
    }
  }
}

/**
 * A partition that joined a captured partitioned table after the capture was installed: its rows
 * are captured by the parent's cloned row trigger, but a TRUNCATE of it needs a trigger of its own,
 * and rows it held when it was attached were never captured: their keys are logged now, as
 * updates, so that replay copies them (a new, empty partition logs nothing).
 */
export async function capturePartition(
  client: pg.Client,
  c: CapturedTable,
  partition: { schema: string; name: string },
): Promise<number> {
  const log = qualified(PGFERRY_SCHEMA, c.logTable);
  const keyCols = c.key.map((k) => quoteIdent(k.name)).join(', ');
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ present: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2) AS present`,
      [qualified(partition.schema, partition.name), triggerTruncate(c.runId)],
    );
    if (!rows[0]?.present) await client.query(truncateTrigger(c, partition));
    const { rows: own } = await client.query<{ owns: boolean }>(
      `SELECT pg_has_role(relowner, 'USAGE') AS owns FROM pg_class WHERE oid = $1::regclass`,
      [qualified(partition.schema, partition.name)],
    );
    if (own[0]?.owns) {
      for (const name of [triggerRow(c.runId), triggerTruncate(c.runId)])
        await client.query(always(partition, name));
    }
    const res = await client.query(
      `INSERT INTO ${log} (${logColumns(c.key).op}, ${keyCols}) SELECT 'U', ${keyCols} FROM ${qualified(partition.schema, partition.name)}`,
    );
    await client.query('COMMIT');
    return res.rowCount ?? 0;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw dbError('source', err, `${partition.schema}.${partition.name}`);
  }
}
