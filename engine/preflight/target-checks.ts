// Preflight's checks of the target: the role may create schemas, and the database is empty (a
// run resuming with its state file is checked by the run's binding instead).
import type pg from 'pg';
import { q } from '../shared/db.js';
import type { Finding } from './findings.js';
import type { PreflightOptions } from './preflight.js';

export async function checkTargetPrivilege(
  dst: pg.Client,
  opts: PreflightOptions,
  problems: Finding[],
): Promise<void> {
  const [tdb] = await q<{ can_create: boolean }>(
    dst,
    'target',
    "SELECT has_database_privilege(current_database(), 'CREATE') AS can_create",
  );
  if (!tdb?.can_create) {
    problems.push({
      code: 'target-no-create-privilege',
      message: `the target role ${opts.target.user} cannot create schemas in ${opts.target.database}`,
      fix: `GRANT CREATE ON DATABASE ${opts.target.database} TO ${opts.target.user}`,
    });
  }
}

/** The target's user tables, a problem if there are any. */
export async function checkTargetEmpty(
  dst: pg.Client,
  opts: PreflightOptions,
  problems: Finding[],
): Promise<string[]> {
  const targetTables = await targetUserTables(dst);
  if (targetTables.length > 0) {
    const sample = targetTables.slice(0, 5).join(', ');
    problems.push({
      code: 'target-not-empty',
      message: `the target database ${opts.target.database} already has ${targetTables.length} table(s) or view(s): ${sample}${targetTables.length > 5 ? ', …' : ''}`,
      fix: 'use an empty target database (CREATE DATABASE …), or resume the earlier run with its --state file',
    });
  }
  return targetTables;
}

/** User tables on the target (extension-owned ones, e.g. PostGIS's spatial_ref_sys, do not count). */
export async function targetUserTables(client: pg.Client): Promise<string[]> {
  const rows = await q<{ name: string }>(
    client,
    'target',
    `SELECT n.nspname || '.' || c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}
