// What in the pgferry schema is pgferry's own, by name: a database may hold a schema of that name
// of its own (an application's, a tool's), whose objects pgferry neither copies (the schema is
// left out of every table list) nor may ever drop. Preflight refuses such a source, and cleanup
// drops pgferry's objects one by one and the schema only once nothing else is in it.
import type pg from 'pg';
import type { Finding } from '../preflight/findings.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

/**
 * Relations pgferry creates in its schema: the run registry, the capture logs (log_<run>_<oid>;
 * log_<oid> from versions before runs had ids; a log's owned sequence, from versions before logs
 * had none), two-way sync's kept triggers, and on a target the run mark and the copy's chunk marks
 * (with their indexes and TOAST, which go with them).
 */
export const OWN_RELATION =
  '^(runs|captured|two_way_triggers|run|copied_chunks|log_([0-9a-f]+_)?[0-9]+(_.+_seq)?)$';
/** The capture's trigger functions (capture_row_<run>_<oid>, or capture_row_<oid> before run ids). */
export const OWN_FUNCTION = '^capture_(row|truncate)_([0-9a-f]+_)?[0-9]+$';

/**
 * Objects in the pgferry schema that are not pgferry's: relations, functions and types of their
 * own (not a table's row type or an array), named `schema.name`.
 */
export async function foreignObjects(client: pg.Client, side: 'source' | 'target'): Promise<string[]> {
  const rows = await q<{ name: string }>(
    client,
    side,
    `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind NOT IN ('i', 'I', 't') AND c.relname !~ $2
        AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class o ON o.oid = d.refobjid
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                           AND o.relnamespace = c.relnamespace AND o.relname ~ $2)
     UNION ALL
     SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname !~ $3
     UNION ALL
     SELECT format_type(t.oid, NULL) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = $1 AND t.typrelid = 0 AND t.typcategory <> 'A'
     ORDER BY 1`,
    [PGFERRY_SCHEMA, OWN_RELATION, OWN_FUNCTION],
  );
  return rows.map((r) => r.name);
}

/** The source's pgferry schema holds these objects of its own: the problem, for preflight and a new run. */
export function schemaTaken(foreign: string[]): Finding {
  const listed =
    foreign.slice(0, 5).join(', ') + (foreign.length > 5 ? `, and ${foreign.length - 5} more` : '');
  return {
    code: 'capture-schema-taken',
    object: PGFERRY_SCHEMA,
    message: `the source's schema "${PGFERRY_SCHEMA}" is not pgferry's: it holds ${listed}, which pgferry would neither copy nor keep apart from its own capture objects`,
    fix: `ALTER SCHEMA ${PGFERRY_SCHEMA} RENAME TO <another name> on the source (and update what uses it), then run again`,
  };
}
