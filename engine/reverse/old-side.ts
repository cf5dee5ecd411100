// The old source as reverse replication's target. Replay applies each table's batch on its own
// and in any order (delete, then insert the current rows), so on the side it writes into:
// - a foreign key would reject a row whose parent comes in another table's batch, and one with
//   ON DELETE CASCADE from any table would delete that table's rows with each replayed key;
// - a user trigger would fire a second time for every replayed row (the new side already ran it,
//   and its effects are replicated).
// The forward direction defers these objects on the target to the cutover; the reverse one
// suspends them on the old source while it is frozen for the application: foreign keys on or
// referencing a replicated table dropped, user triggers disabled, both recorded first (meta
// `reverse_suspended`, so that a crash anywhere is undone exactly), and restored by the rollback
// (foreign keys NOT VALID, validated once writes are back). Table owner privileges only.
import type pg from 'pg';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { qualified, quoteIdent } from '../../lib/sql.js';
import { BUCARDO_SCHEMA, PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export interface Suspended {
  foreignKeys: { table: string; name: string; definition: string }[];
  /** tgenabled: O (origin and local), A (always). */
  triggers: { table: string; name: string; enabled: 'O' | 'A' }[];
  at: string;
}

const KEY = 'reverse_suspended';

export function readSuspended(store: CheckpointStore): Suspended | null {
  const raw = store.getMeta(KEY);
  return raw ? (JSON.parse(raw) as Suspended) : null;
}

/** Foreign keys touching the tables (their partitions too) and their enabled user triggers. */
async function plan(client: pg.Client, tables: { schema: string; name: string }[]): Promise<Suspended> {
  // With an empty search_path, regclass output and pg_get_constraintdef qualify every name.
  await q(client, 'source', 'BEGIN');
  const rows = await readPlan(client, tables).catch(async (err) => {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  });
  await q(client, 'source', 'COMMIT');
  return {
    foreignKeys: rows
      .filter((r) => r.kind === 'fk')
      .map((r) => ({ table: r.tbl, name: r.name, definition: r.def ?? '' })),
    triggers: rows
      .filter((r) => r.kind === 'trigger')
      .map((r) => ({ table: r.tbl, name: r.name, enabled: r.enabled as 'O' | 'A' })),
    at: new Date().toISOString(),
  };
}

async function readPlan(client: pg.Client, tables: { schema: string; name: string }[]) {
  await q(client, 'source', "SET LOCAL search_path = ''");
  return q<{
    kind: 'fk' | 'trigger';
    tbl: string;
    name: string;
    def: string | null;
    enabled: string;
  }>(
    client,
    'source',
    `WITH t AS (SELECT unnest($1::regclass[]) AS r),
          -- pg_partition_tree lists nothing for a table that is not partitioned.
          rel AS (SELECT r::oid AS oid FROM t UNION SELECT p.relid FROM t, pg_partition_tree(t.r) p)
     SELECT 'fk' AS kind, conrelid::regclass::text AS tbl, conname AS name, pg_get_constraintdef(oid) AS def, '' AS enabled
       FROM pg_constraint
      WHERE contype = 'f' AND conparentid = 0
        AND (conrelid IN (SELECT oid FROM rel) OR confrelid IN (SELECT oid FROM rel))
     UNION ALL
     SELECT 'trigger', tgrelid::regclass::text, tgname, NULL, tgenabled::text
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE NOT tgisinternal AND tgenabled IN ('O', 'A') AND tgrelid IN (SELECT oid FROM rel)
        AND p.pronamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ($2, $3))
      ORDER BY 1, 2, 3`,
    [tables.map((t) => qualified(t.schema, t.name)), PGFERRY_SCHEMA, BUCARDO_SCHEMA],
  );
}

async function inTransaction(client: pg.Client, statements: string[]): Promise<void> {
  if (statements.length === 0) return;
  await q(client, 'source', 'BEGIN');
  try {
    await q(client, 'source', "SET LOCAL search_path = ''");
    for (const sql of statements) await q(client, 'source', sql);
    await q(client, 'source', 'COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Suspends them on the old source (planned and recorded once; applied again after a crash, every
 * statement idempotent). The old source must be frozen for the application.
 */
export async function suspendOnOldSide(
  client: pg.Client,
  store: CheckpointStore,
  tables: { schema: string; name: string }[],
): Promise<Suspended> {
  let record = readSuspended(store);
  if (!record) {
    record = await plan(client, tables);
    store.setMeta(KEY, JSON.stringify(record));
    store.event(
      'info',
      store.phase(),
      `reverse replication: ${record.foreignKeys.length} foreign key(s) dropped and ${record.triggers.length} trigger(s) disabled on the old source until a rollback`,
    );
  }
  await inTransaction(client, [
    ...record.foreignKeys.map(
      (f) => `ALTER TABLE ${f.table} DROP CONSTRAINT IF EXISTS ${quoteIdent(f.name)}`,
    ),
    ...record.triggers.map((t) => `ALTER TABLE ${t.table} DISABLE TRIGGER ${quoteIdent(t.name)}`),
  ]);
  return record;
}

/** The triggers enabled again and the foreign keys created NOT VALID (before the old side takes writes). */
export async function restoreOnOldSide(client: pg.Client, store: CheckpointStore): Promise<number> {
  const record = readSuspended(store);
  if (!record) return 0;
  const existing = new Set(
    (
      await q<{ k: string }>(
        client,
        'source',
        `SELECT conrelid::regclass::text || '|' || conname AS k FROM pg_constraint WHERE contype = 'f'`,
      )
    ).map((r) => r.k),
  );
  const statements = [
    ...record.triggers.map(
      (t) =>
        `ALTER TABLE ${t.table} ENABLE ${t.enabled === 'A' ? 'ALWAYS ' : ''}TRIGGER ${quoteIdent(t.name)}`,
    ),
    ...record.foreignKeys
      .filter((f) => !existing.has(`${f.table}|${f.name}`))
      .map((f) => `ALTER TABLE ${f.table} ADD CONSTRAINT ${quoteIdent(f.name)} ${notValid(f.definition)}`),
  ];
  try {
    await inTransaction(client, statements);
  } catch {
    // NOT VALID foreign keys on partitioned tables arrive only in PostgreSQL 18: plain there.
    await inTransaction(
      client,
      statements.map((s) => s.replace(/ NOT VALID$/, '')),
    );
  }
  return record.triggers.length + record.foreignKeys.length;
}

const notValid = (def: string) => (/\bNOT VALID$/.test(def) ? def : `${def} NOT VALID`);

/** Once the old side took its writes back: the foreign keys validated (reads only), the record gone. */
export async function validateOnOldSide(client: pg.Client, store: CheckpointStore): Promise<number> {
  const record = readSuspended(store);
  if (!record) return 0;
  let n = 0;
  for (const f of record.foreignKeys) {
    if (/\bNOT VALID$/.test(f.definition)) continue;
    await q(
      client,
      'source',
      `ALTER TABLE ${f.table} VALIDATE CONSTRAINT ${quoteIdent(f.name)}`,
      [],
      f.table,
    );
    n++;
  }
  store.deleteMeta(KEY);
  return n;
}
