// What a cutover that does not go through leaves on the target must not disturb the replay that
// goes on: its foreign keys would reject rows replayed in any order, and user triggers would fire
// a second time for every replayed row (the source already ran them). Every such object on the
// run's tables comes from the cutover stage (the schema phase defers them all), so giving the
// writes back removes them all and marks the stage to be created again by the next cutover.
import type pg from 'pg';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { qualified } from '../../lib/sql.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q, withClient } from '../shared/db.js';

export async function removeCutoverObjects(target: ConnInfo, store: CheckpointStore): Promise<number> {
  const tables = [
    ...new Set([...store.tables(), ...store.captures()].map((t) => qualified(t.schema, t.name))),
  ];
  if (tables.length === 0) return 0;
  const removed = await withClient(target, 'ddl', async (client: pg.Client) => {
    // Triggers and foreign keys cloned onto partitions go with their parent's (tgparentid, conparentid).
    const statements = await q<{ sql: string }>(
      client,
      'target',
      `WITH rel AS (SELECT unnest($1::regclass[])::oid AS oid)
       SELECT format('DROP TRIGGER %I ON %s', tgname, tgrelid::regclass) AS sql
         FROM pg_trigger WHERE NOT tgisinternal AND tgparentid = 0 AND tgrelid IN (SELECT oid FROM rel)
       UNION ALL
       SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname)
         FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND conrelid IN (SELECT oid FROM rel)
       UNION ALL
       SELECT format('DROP POLICY %I ON %s', polname, polrelid::regclass)
         FROM pg_policy WHERE polrelid IN (SELECT oid FROM rel)
       UNION ALL
       SELECT format('DROP RULE %I ON %s', rulename, ev_class::regclass)
         FROM pg_rewrite WHERE rulename <> '_RETURN' AND ev_class IN (SELECT oid FROM rel)
       UNION ALL
       SELECT format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', oid::regclass)
         FROM pg_class WHERE relrowsecurity AND oid IN (SELECT oid FROM rel)`,
      [tables],
    );
    await q(client, 'target', 'BEGIN');
    for (const s of statements) await q(client, 'target', s.sql);
    await q(client, 'target', 'COMMIT');
    return statements.length;
  });
  store.resetSchemaObjects('cutover');
  return removed;
}
