// User triggers in two-way sync: both sides take writes and keep their triggers, which must fire
// for the application's writes and never for pgferry's replay (the other side already ran them,
// and their effects are replicated). A superuser would run replay with
// session_replication_role = replica; pgferry, without one, adds to each user trigger of a
// replicated table the condition `WHEN (current_setting('pgferry.origin', true) IS DISTINCT FROM
// '<run>')`: the trigger is dropped and created again with it, in one transaction under short lock
// waits, and its original definition is kept on that side (pgferry.two_way_triggers), from which
// `pgferry cleanup` restores it.
import type pg from 'pg';
import type { Logger } from 'pino';
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';
import { ORIGIN_SETTING, underShortLocks } from '../capture/triggers/triggers.js';
import { BUCARDO_SCHEMA, PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export const KEPT_TRIGGERS = 'two_way_triggers';
const kept = qualified(PGFERRY_SCHEMA, KEPT_TRIGGERS);

/** The definition with the origin condition added to its WHEN clause (or a WHEN clause made for it). */
export function withOriginCondition(definition: string, runId: string): string {
  const condition = `current_setting('${ORIGIN_SETTING}', true) IS DISTINCT FROM ${quoteLiteral(runId)}`;
  const execute = Math.max(
    definition.lastIndexOf(' EXECUTE FUNCTION '),
    definition.lastIndexOf(' EXECUTE PROCEDURE '),
  );
  if (execute < 0) throw new Error(`unexpected trigger definition: ${definition}`);
  const head = definition.slice(0, execute);
  const tail = definition.slice(execute);
  const when = head.indexOf(' WHEN (');
  if (when < 0) return `${head} WHEN (${condition})${tail}`;
  return `${head.slice(0, when)} WHEN (${condition} AND ${head.slice(when + ' WHEN '.length)})${tail}`;
}

/**
 * Rewrites every user row trigger of the tables (not pgferry's or Bucardo's, not internal, not a
 * partition's clone: the parent's is created again with its clones); idempotent. Returns how many.
 */
export async function skipReplayInTriggers(
  client: pg.Client,
  runId: string,
  tables: { schema: string; name: string }[],
  opts: { log: Logger; signal: AbortSignal; side: 'source' | 'target' },
): Promise<number> {
  await q(
    client,
    opts.side,
    `CREATE TABLE IF NOT EXISTS ${kept} (run_id text NOT NULL, table_name text NOT NULL, trigger_name text NOT NULL,
       definition text NOT NULL, PRIMARY KEY (run_id, table_name, trigger_name))`,
  );
  // Row triggers only (tgtype bit 0): a statement trigger fires once per statement, and a
  // TRUNCATE trigger takes no WHEN condition. Read with an empty search_path, every name in the
  // definitions is qualified.
  await q(client, opts.side, 'BEGIN');
  await q(client, opts.side, "SET LOCAL search_path = ''");
  const triggers = await q<{ tbl: string; name: string; def: string }>(
    client,
    opts.side,
    `SELECT format('%I.%I', n.nspname, c.relname) AS tbl, t.tgname AS name, pg_get_triggerdef(t.oid) AS def
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND (t.tgtype::int & 1) = 1
        AND t.tgrelid = ANY($1::regclass[])
        AND p.pronamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ($2, $3))
        AND NOT EXISTS (SELECT 1 FROM ${kept} k WHERE k.run_id = $4
                           AND k.table_name = format('%I.%I', n.nspname, c.relname) AND k.trigger_name = t.tgname)`,
    [tables.map((t) => qualified(t.schema, t.name)), PGFERRY_SCHEMA, BUCARDO_SCHEMA, runId],
  ).finally(() => client.query('COMMIT').catch(() => {}));
  for (const t of triggers) {
    await underShortLocks(client, t.tbl, opts, 'install', async () => {
      await client.query(
        `INSERT INTO ${kept} (run_id, table_name, trigger_name, definition) VALUES ($1, $2, $3, $4)`,
        [runId, t.tbl, t.name, t.def],
      );
      await client.query(`DROP TRIGGER ${quoteIdent(t.name)} ON ${t.tbl}`);
      await client.query(withOriginCondition(t.def, runId));
    });
  }
  if (triggers.length > 0)
    opts.log.info(
      { side: opts.side, triggers: triggers.length },
      'two-way: user triggers fire for the application only, not for replay',
    );
  return triggers.length;
}

/** Whether triggers rewritten for two-way sync (one run's, or any run's) wait to be restored. */
export async function hasKeptTriggers(client: pg.Client, runId?: string): Promise<boolean> {
  const [exists] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${PGFERRY_SCHEMA}.${KEPT_TRIGGERS}`,
  ]);
  if (!exists?.ok) return false;
  const [row] = await q<{ n: number }>(
    client,
    'source',
    `SELECT count(*)::int AS n FROM ${kept} WHERE $1::text IS NULL OR run_id = $1`,
    [runId ?? null],
  );
  return (row?.n ?? 0) > 0;
}

/** The original definitions back (one run's, or every run's): `pgferry cleanup`. Returns the triggers restored. */
export async function restoreTriggers(client: pg.Client, runId?: string): Promise<string[]> {
  const [exists] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${PGFERRY_SCHEMA}.${KEPT_TRIGGERS}`,
  ]);
  if (!exists?.ok) return [];
  const rows = await q<{ tbl: string; name: string; def: string }>(
    client,
    'source',
    `SELECT table_name AS tbl, trigger_name AS name, definition AS def FROM ${kept}
      WHERE $1::text IS NULL OR run_id = $1 ORDER BY 1, 2`,
    [runId ?? null],
  );
  for (const r of rows) {
    // The table may be gone: then so is its trigger.
    await client.query(
      `DO $pgferry$ BEGIN
         IF to_regclass(${quoteLiteral(r.tbl)}) IS NOT NULL THEN
           EXECUTE ${quoteLiteral(`DROP TRIGGER IF EXISTS ${quoteIdent(r.name)} ON ${r.tbl}`)};
           EXECUTE ${quoteLiteral(r.def)};
         END IF;
       END $pgferry$`,
    );
  }
  await q(client, 'source', `DELETE FROM ${kept} WHERE $1::text IS NULL OR run_id = $1`, [runId ?? null]);
  return rows.map((r) => `${r.name} on ${r.tbl}`);
}
