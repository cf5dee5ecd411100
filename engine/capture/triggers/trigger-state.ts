// Whether a run's capture triggers are all still there and firing: a trigger dropped, disabled
// (ALTER TABLE … DISABLE TRIGGER ALL, as load scripts do) or made ENABLE REPLICA leaves its table's
// writes out of the log from then on, so the run cannot go on (trigger-source.ts's removed()).
import type pg from 'pg';
import { qualified } from '../../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../../shared/catalog.js';
import { triggerRow, triggerTruncate } from './triggers.js';

/**
 * A captured table of the run whose row or TRUNCATE trigger was dropped, or one of the run's
 * triggers on it or on one of its partitions disabled or made ENABLE REPLICA: its writes since are
 * not in the log. A partition is checked only for the triggers it has (one attached a moment ago
 * gets its TRUNCATE trigger from the membership watch), and a partition detached from the tree no
 * longer at all. Older runs' triggers are plain (O), which counts as enabled. Null when all are
 * in place.
 */
export async function triggersOff(client: pg.Client, runId: string): Promise<string | null> {
  const captured = qualified(PGFERRY_SCHEMA, 'captured');
  const { rows } = await client.query<{ rel: string; state: string | null }>(
    `SELECT c.oid::regclass::text AS rel,
            (SELECT t.tgenabled::text FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = g.name) AS state
       FROM ${captured} k JOIN pg_class c ON c.oid = k.relid, (VALUES ($2), ($3)) g (name)
      WHERE k.run_id = $1
     UNION ALL
     -- pg_partition_tree lists nothing for a table that is not partitioned, or is gone.
     SELECT t.tgrelid::regclass::text, t.tgenabled::text
       FROM ${captured} k, pg_partition_tree(k.relid) p JOIN pg_trigger t ON t.tgrelid = p.relid
      WHERE k.run_id = $1 AND t.tgname IN ($2, $3)`,
    [runId, triggerRow(runId), triggerTruncate(runId)],
  );
  const off = rows.filter((r) => r.state !== 'O' && r.state !== 'A');
  if (off.length === 0) return null;
  const rels = [...new Set(off.map((r) => r.rel))];
  const how = off.some((r) => r.state === null) ? 'dropped or disabled' : 'disabled';
  return `its capture trigger on ${rels.slice(0, 3).join(', ')}${rels.length > 3 ? ', …' : ''} was ${how} (ALTER TABLE … DISABLE TRIGGER, DROP TRIGGER)`;
}
