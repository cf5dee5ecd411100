// Preflight's checks of the PostgreSQL client programs the run uses: pg_dump (at least the
// source's major version) and psql, each connecting once with the run's URLs.
import { findTool, type PgTool, runAgainst } from '../shared/pg-tools.js';
import type { Finding } from './findings.js';
import type { PreflightOptions } from './preflight.js';
import type { ServerFacts } from './server-facts.js';

/** pg_dump found and new enough for the source, then both programs exercised; returns pg_dump. */
export async function checkClientTools(
  source: ServerFacts,
  opts: PreflightOptions,
  problems: Finding[],
): Promise<PgTool | null> {
  const dump = await findTool('pg_dump');
  if (!dump) {
    problems.push({
      code: 'pg-dump-missing',
      message: 'pg_dump was not found on this machine',
      fix: `install the PostgreSQL client tools ${source.major} or newer (Debian: postgresql-client), or set PGFERRY_PG_BIN`,
    });
  } else if (dump.major < source.major) {
    problems.push({
      code: 'pg-dump-too-old',
      message: `pg_dump ${dump.version} (${dump.path}) is older than the source server ${source.version}`,
      fix: `install postgresql-client-${source.major} or newer, or point PGFERRY_PG_BIN at its bin directory`,
    });
  } else {
    problems.push(...(await exerciseTools(dump, opts)));
  }
  return dump;
}

/**
 * The run uses libpq's programs too (pg_dump on the source, psql on the target): each connects
 * once here with the same URL, so a setting one of them reads differently (an sslmode it rejects,
 * a certificate it cannot verify) is found before anything starts.
 */
async function exerciseTools(dump: PgTool, opts: PreflightOptions): Promise<Finding[]> {
  const found: Finding[] = [];
  const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';
  const fix = (side: 'source' | 'target') =>
    `the --${side} URL must mean the same to libpq as to pgferry: check sslmode, sslrootcert (a file path, or system), sslcert/sslkey, and that this machine may connect`;
  // Nothing is dumped (every schema is excluded): only the connection and pg_dump's setup run.
  const d = await runAgainst(dump, opts.source, ['--schema-only', '--exclude-schema=*', '--file=/dev/null']);
  if (d.code !== 0) {
    found.push({
      code: 'pg-dump-cannot-connect',
      message: `pg_dump (${dump.path}) failed on the source: ${firstLine(d.stderr)}`,
      fix: fix('source'),
    });
  }
  const psql = await findTool('psql');
  if (!psql) {
    found.push({
      code: 'psql-missing',
      message: 'psql was not found on this machine',
      fix: 'install the PostgreSQL client tools (Debian: postgresql-client), or set PGFERRY_PG_BIN',
    });
    return found;
  }
  const p = await runAgainst(psql, opts.target, ['-X', '-q', '-At', '-c', 'SELECT 1']);
  if (p.code !== 0) {
    found.push({
      code: 'psql-cannot-connect',
      message: `psql (${psql.path}) failed on the target: ${firstLine(p.stderr)}`,
      fix: fix('target'),
    });
  }
  return found;
}
