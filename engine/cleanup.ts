// Removes everything pgferry created on the source: triggers that call into its schema, then the
// schema itself with what it holds. Idempotent: a second run finds nothing and says so.
import type pg from 'pg';
import { PGFERRY_SCHEMA } from './catalog.js';
import type { ConnInfo } from './conn-info.js';
import { q, quoteIdent, withClient } from './db.js';
import { classify, dbError } from './errors.js';
import { sleep } from './sleep.js';

export interface Removed {
  kind: string;
  name: string;
}

async function inventory(
  client: pg.Client,
): Promise<{ triggers: (Removed & { sql: string })[]; objects: Removed[] }> {
  const triggers = await q<{ name: string; tbl: string; sql: string }>(
    client,
    'source',
    `SELECT t.tgname AS name, t.tgrelid::regclass::text AS tbl,
            format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) AS sql
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND NOT t.tgisinternal
        AND t.tgparentid = 0
      ORDER BY 2, 1`,
    [PGFERRY_SCHEMA],
  );
  const objects = await q<{ kind: string; name: string }>(
    client,
    'source',
    `SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'relation' END AS kind,
            n.nspname || '.' || c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'S', 'v', 'p')
     UNION ALL
     SELECT 'function', p.oid::regprocedure::text
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
     UNION ALL
     SELECT 'schema', nspname FROM pg_namespace WHERE nspname = $1
     ORDER BY 1, 2`,
    [PGFERRY_SCHEMA],
  );
  return {
    triggers: triggers.map((t) => ({ kind: 'trigger', name: `${t.name} on ${t.tbl}`, sql: t.sql })),
    objects,
  };
}

export async function cleanup(source: ConnInfo): Promise<Removed[]> {
  return withClient(source, 'control', async (client) => {
    const { triggers, objects } = await inventory(client);
    if (triggers.length === 0 && objects.length === 0) return [];
    // DROP TRIGGER takes an exclusive lock on its table: under lock_timeout, retried, so it never
    // queues in front of the application's queries for long.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query('BEGIN');
        await client.query("SET LOCAL lock_timeout = '2s'");
        for (const t of triggers) await client.query(t.sql);
        await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(PGFERRY_SCHEMA)} CASCADE`);
        await client.query('COMMIT');
        break;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        if (classify(err) === 'retry' && attempt < 10) {
          await sleep(500 * attempt);
          continue;
        }
        throw dbError('source', err, PGFERRY_SCHEMA);
      }
    }
    return [...triggers.map(({ kind, name }) => ({ kind, name })), ...objects];
  });
}
