// Objects the migration would carry over that need a table --exclude leaves out. pg_dump's
// --exclude-table drops only the table: a view over it is still dumped (and its creation fails in
// the schema phase), a foreign key referencing it is still dumped (and its creation fails at the
// cutover, hours later). Both are found before anything starts.
import type pg from 'pg';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export interface ExcludedDependent {
  kind: 'foreign key' | 'view' | 'materialized view';
  /** The constraint's table and name, or the view. */
  object: string;
  /** The excluded table it needs. */
  needs: string;
  /** The statement that would remove it from the source, for the fix. */
  drop: string;
}

export async function excludedDependents(
  client: pg.Client,
  selectedOids: number[],
  excludedOids: number[],
): Promise<ExcludedDependent[]> {
  if (selectedOids.length === 0 || excludedOids.length === 0) return [];
  // conparentid = 0: a foreign key of a partitioned table once, not again per partition.
  const fks = await q<{ object: string; needs: string; drop: string }>(
    client,
    'source',
    `SELECT n.nspname || '.' || r.relname || ' (' || c.conname || ')' AS object,
            fn.nspname || '.' || f.relname AS needs,
            format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, r.relname, c.conname) AS drop
       FROM pg_constraint c
       JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
       JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
      WHERE c.contype = 'f' AND c.conparentid = 0
        AND c.conrelid = ANY($1::oid[]) AND c.confrelid = ANY($2::oid[])
      ORDER BY 1, 2`,
    [selectedOids, excludedOids],
  );
  const views = await q<{ kind: 'v' | 'm'; object: string; needs: string; drop: string }>(
    client,
    'source',
    `SELECT DISTINCT v.relkind AS kind, vn.nspname || '.' || v.relname AS object,
            tn.nspname || '.' || t.relname AS needs,
            format(CASE v.relkind WHEN 'm' THEN 'DROP MATERIALIZED VIEW %I.%I' ELSE 'DROP VIEW %I.%I' END,
                   vn.nspname, v.relname) AS drop
       FROM pg_depend d
       JOIN pg_rewrite rw ON rw.oid = d.objid
       JOIN pg_class v ON v.oid = rw.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
       JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.refobjid = ANY($1::oid[]) AND v.oid <> d.refobjid AND v.relkind IN ('v', 'm')
        AND vn.nspname <> $2
      ORDER BY 2, 3`,
    [excludedOids, PGFERRY_SCHEMA],
  );
  return [
    ...fks.map((r) => ({ kind: 'foreign key' as const, ...r })),
    ...views.map((r) => ({
      kind: r.kind === 'm' ? ('materialized view' as const) : ('view' as const),
      object: r.object,
      needs: r.needs,
      drop: r.drop,
    })),
  ];
}

/** One line for an operator: what needs which excluded table. */
export const describeDependent = (d: ExcludedDependent): string =>
  d.kind === 'foreign key'
    ? `foreign key ${d.object} references ${d.needs}, which --exclude leaves out`
    : `${d.kind} ${d.object} reads ${d.needs}, which --exclude leaves out`;

export const dependentFix = (d: ExcludedDependent): string =>
  `migrate ${d.needs} too (drop the --exclude that matches it), or remove the ${d.kind} from the source first (${d.drop}); --exclude applies to tables only`;
