// Tables created on the source during the migration: Heroku grants no event trigger, so they are
// found as drift is, by reading the catalog (every NEW_TABLES_EVERY-th drift check). A table that
// matches the run's patterns and is not replicated is listed in status (meta `new_tables`) and
// named once in the events, with the command that adds it; it is not taken in by itself.
import type pg from 'pg';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';
import { makeMatcher } from '../shared/table-filter.js';

export const NEW_TABLES_META = 'new_tables';
/** Every how many drift checks the source's table list is read (with a 2 s interval: 10 s). */
export const NEW_TABLES_EVERY = 5;

export interface NewTable {
  table: string;
  seenAt: string;
}

/** The tables of the source the run's patterns take in that it does not replicate, recorded for status. */
export async function recordNewTables(client: pg.Client, store: CheckpointStore): Promise<NewTable[]> {
  const setup = store.setup();
  if (!setup) return [];
  const rows = await q<{ schema: string; name: string }>(
    client,
    'source',
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname !~ '^pg_(toast|temp)'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        AND c.oid <> ALL ($2::oid[])
      ORDER BY 1, 2`,
    [PGFERRY_SCHEMA, store.captures().map((c) => c.oid)],
  );
  const matches = makeMatcher({ include: setup.include, exclude: setup.exclude });
  // Tables an operator's request is about are not news: joining, or removed on purpose.
  const asked = new Set(
    store.tableRequests({ states: ['pending', 'running', 'done'] }).flatMap((r) => r.tables),
  );
  const known = new Map(newTables(store).map((t) => [t.table, t]));
  const now = new Date().toISOString();
  const found = rows
    .filter((r) => matches(r.schema, r.name) && !asked.has(`${r.schema}.${r.name}`))
    .map((r) => `${r.schema}.${r.name}`)
    .map((table) => known.get(table) ?? { table, seenAt: now });
  for (const t of found.filter((f) => !known.has(f.table))) {
    store.event(
      'warn',
      store.phase(),
      `${t.table} was created on the source and is not replicated: \`pgferry tables add ${t.table}\` adds it to the migration`,
    );
  }
  if (found.length > 0) store.setMeta(NEW_TABLES_META, JSON.stringify(found));
  else store.deleteMeta(NEW_TABLES_META);
  return found;
}

export function newTables(store: CheckpointStore): NewTable[] {
  const saved = store.getMeta(NEW_TABLES_META);
  return saved ? (JSON.parse(saved) as NewTable[]) : [];
}

/** Tables that joined the run are no longer news (the next listing would say so too, later). */
export function forgetNewTables(store: CheckpointStore, names: readonly string[]): void {
  const left = newTables(store).filter((t) => !names.includes(t.table));
  if (left.length > 0) store.setMeta(NEW_TABLES_META, JSON.stringify(left));
  else store.deleteMeta(NEW_TABLES_META);
}
