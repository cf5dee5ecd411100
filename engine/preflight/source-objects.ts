// Preflight's look at what else the source holds: sequences (readable?), materialized views,
// large objects (not migrated), extensions; and whether the capture schema can be created.
import type pg from 'pg';
import { foreignObjects, schemaTaken } from '../capture/own-objects.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';
import type { Findings } from './findings.js';
import type { PreflightOptions } from './preflight.js';

export type SourceObjects = Awaited<ReturnType<typeof sourceObjects>>;

export async function checkSourceObjects(
  src: pg.Client,
  opts: PreflightOptions,
  { problems, warnings }: Findings,
): Promise<SourceObjects> {
  const objects = await sourceObjects(src);
  if (!opts.copyOnly && !objects.canCreate) {
    problems.push({
      code: 'no-create-privilege',
      message: `the source role ${opts.source.user} cannot create the capture schema "${PGFERRY_SCHEMA}"`,
      fix: `GRANT CREATE ON DATABASE ${opts.source.database} TO ${opts.source.user}`,
    });
  }
  // Every mode: the schema's tables are left out of the copy, and cleanup must never drop them.
  const foreign = await foreignObjects(src, 'source');
  if (foreign.length > 0) problems.push(schemaTaken(foreign));
  for (const s of objects.seqs.filter((s) => !s.readable)) {
    problems.push({
      code: 'no-sequence-privilege',
      object: s.name,
      message: `the source role ${opts.source.user} cannot read sequence ${s.name}`,
      fix: `GRANT SELECT ON SEQUENCE ${s.name} TO ${opts.source.user}`,
    });
  }
  if (objects.largeObjects > 0) {
    warnings.push({
      code: 'large-objects',
      message: `the source holds ${objects.largeObjects} large objects, which are not migrated`,
      fix: 'move them with pg_dump --large-objects, or store them as bytea',
    });
  }
  return objects;
}

async function sourceObjects(client: pg.Client) {
  const seqs = await q<{ name: string; readable: boolean }>(
    client,
    'source',
    `SELECT n.nspname || '.' || c.relname AS name, has_sequence_privilege(c.oid, 'SELECT') AS readable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [PGFERRY_SCHEMA],
  );
  const matviews = await q<{ name: string }>(
    client,
    'source',
    `SELECT schemaname || '.' || matviewname AS name FROM pg_matviews
      WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
  );
  const [lo] = await q<{ n: number }>(
    client,
    'source',
    'SELECT count(*)::int AS n FROM pg_largeobject_metadata',
  );
  const exts = await q<{ name: string; version: string; schema: string }>(
    client,
    'source',
    `SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname <> 'plpgsql' ORDER BY 1`,
  );
  const [db] = await q<{ can_create: boolean }>(
    client,
    'source',
    "SELECT has_database_privilege(current_database(), 'CREATE') AS can_create",
  );
  return {
    seqs,
    matviews: matviews.map((m) => m.name),
    largeObjects: lo?.n ?? 0,
    exts,
    canCreate: db?.can_create ?? false,
  };
}
