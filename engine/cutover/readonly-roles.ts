// --freeze readonly sets the database's default_transaction_read_only; a role that sets it off
// for itself (ALTER ROLE … SET, for this database or all) outranks that, so the freeze is refused
// before anything is frozen while one does. Superusers are beyond every freeze (freeze.ts).
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { q } from '../shared/db.js';

/**
 * A role's own default_transaction_read_only (ALTER ROLE … SET, for this database or all) outranks
 * the database's: its new sessions would write through a readonly freeze, after the drain.
 */
export async function refuseWritableRoles(client: pg.Client): Promise<void> {
  const rows = await q<{ role: string }>(
    client,
    'source',
    `SELECT DISTINCT r.rolname AS role
       FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) AS c
      WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        AND NOT r.rolsuper AND c ILIKE 'default_transaction_read_only=%'
        AND split_part(c, '=', 2) !~* '^(on|t|tr|tru|true|y|ye|yes|1)$'
      ORDER BY 1`,
  );
  if (rows.length === 0) return;
  const roles = rows.map((r) => r.role).join(', ');
  throw new PgferryError(
    'PGFERRY_CUTOVER_FAILED',
    `role(s) ${roles} set default_transaction_read_only off for themselves, which outranks the database's: --freeze readonly would not stop their writes`,
    {
      side: 'source',
      hint: `Use --freeze revoke (or stop the application and use --freeze external), or ALTER ROLE … RESET default_transaction_read_only for ${roles}. Nothing was frozen.`,
    },
  );
}
