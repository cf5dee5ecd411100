// Autovacuum is off on the target's copied tables from their creation until their primary keys and
// indexes are built. On a table being loaded it scans pages as they are written, and an index
// build or ANALYZE that needs the table's lock waits deadlock_timeout (1 s by default) for it to
// be cancelled: 1-2 s of Lock:relation in two clones out of three in the bench, and as much again
// for every table of a big schema. Each table then gets the source's setting back. The list is in
// the state file before the tables exist, so a run that crashes in between still restores it.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { stateOf } from '../../lib/errors.js';
import { qualified, quoteLiteral } from '../../lib/sql.js';
import type { TableInfo } from '../shared/catalog.js';
import { q } from '../shared/db.js';

const META = 'autovacuum_paused';

interface Paused {
  schema: string;
  name: string;
  /** The table's own autovacuum_enabled on the source, null when it has none. */
  setting: string | null;
}

/**
 * Records the tables' settings (read from the source) and returns the statements that turn
 * autovacuum off on the target, to run with the pre-data.
 */
export async function pauseAutovacuumSql(
  src: pg.Client,
  store: CheckpointStore,
  tables: TableInfo[],
): Promise<string> {
  if (tables.length === 0) return '';
  const rows = await q<{ oid: number; setting: string | null }>(
    src,
    'source',
    `SELECT c.oid::int AS oid,
            (SELECT o.option_value FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'autovacuum_enabled') AS setting
       FROM pg_class c WHERE c.oid = ANY($1::oid[])`,
    [tables.map((t) => t.oid)],
  );
  const settings = new Map(rows.map((r) => [r.oid, r.setting]));
  // A table that has it off already is left as it is (its options keep their order too).
  const paused: Paused[] = tables
    .map((t) => ({ schema: t.schema, name: t.name, setting: settings.get(t.oid) ?? null }))
    .filter((p) => p.setting !== 'false');
  store.setMeta(META, JSON.stringify(paused));
  return paused
    .map((p) => `ALTER TABLE ONLY ${qualified(p.schema, p.name)} SET (autovacuum_enabled = false);`)
    .join('\n');
}

/** Gives each paused table its own setting back (a no-op once done). */
export async function resumeAutovacuum(dst: pg.Client, store: CheckpointStore, log: Logger): Promise<void> {
  const saved = store.getMeta(META);
  if (!saved) return;
  const paused = JSON.parse(saved) as Paused[];
  for (const p of paused) {
    const table = qualified(p.schema, p.name);
    const action =
      p.setting === null
        ? 'RESET (autovacuum_enabled)'
        : `SET (autovacuum_enabled = ${quoteLiteral(p.setting)})`;
    try {
      await q(dst, 'target', `ALTER TABLE ONLY ${table} ${action}`, [], `${p.schema}.${p.name}`);
    } catch (err) {
      // 42P01: the table left the run (pgferry tables remove) and the target.
      if (stateOf(err) !== '42P01') throw err;
    }
  }
  store.deleteMeta(META);
  log.info({ tables: paused.length }, "autovacuum back on the target's tables");
}
