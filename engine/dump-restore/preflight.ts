// Preflight of `pgferry dump-restore`: migrate's checks for a copy (servers, pg_dump at least the
// source's major, tables, source objects, target privileges and emptiness, extensions), plus
// pg_restore, and the extensions held to a stricter rule: pg_restore's CREATE EXTENSION takes the
// target's default version, so each extension is created beforehand at the source's version when
// the target offers it; one the target offers only at another version stops the run unless
// --adapt-extensions (then it is created at the target's version, and the run says so). Tables
// without a primary key are fine here (a dump copies them whole) and listed.
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import { quoteIdent, quoteLiteral } from '../../lib/sql.js';
import type { ExtensionCheck } from '../preflight/extension-checks.js';
import type { Finding } from '../preflight/findings.js';
import { type PreflightReport, preflight } from '../preflight/preflight.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q } from '../shared/db.js';
import { findTool, type PgTool } from '../shared/pg-tools.js';
import type { TableFilter } from '../shared/table-filter.js';

export interface DumpRestorePreflight {
  report: PreflightReport;
  problems: Finding[];
  warnings: Finding[];
  pgDump: PgTool | null;
  pgRestore: PgTool | null;
  extensions: ExtensionCheck[];
  /** Schemas the source's extensions live in besides public and pg_catalog (Heroku's heroku_ext). */
  extensionSchemas: string[];
  tablesWithoutKey: string[];
}

export interface DumpRestorePreflightOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  adaptExtensions: boolean;
  src: pg.Client;
  dst: pg.Client;
  /** The target is the one an interrupted restore from this workdir wrote into: its tables are expected. */
  targetMayHoldRestore: boolean;
}

export async function dumpRestorePreflight(opts: DumpRestorePreflightOptions): Promise<DumpRestorePreflight> {
  const report = await preflight({
    source: opts.source,
    target: opts.target,
    filter: opts.filter,
    copyOnly: true,
  });
  const problems = report.problems.filter(
    (p) => !(opts.targetMayHoldRestore && p.code === 'target-not-empty'),
  );
  const pgDump = await findTool('pg_dump');
  const pgRestore = await findTool('pg_restore');
  if (!pgRestore) {
    problems.push({
      code: 'pg-restore-missing',
      message: 'pg_restore was not found on this machine',
      fix: `install the PostgreSQL client tools ${report.source.major} or newer (Debian: postgresql-client), or set PGFERRY_PG_BIN`,
    });
  } else if (pgDump && pgRestore.major < pgDump.major) {
    problems.push({
      code: 'pg-restore-too-old',
      message: `pg_restore ${pgRestore.version} (${pgRestore.path}) is older than pg_dump ${pgDump.version}, whose archives it cannot read`,
      fix: `install postgresql-client-${pgDump.major} (pg_dump and pg_restore of one release), or point PGFERRY_PG_BIN at its bin directory`,
    });
  }
  for (const e of report.extensions.filter((x) => x.status === 'other-version' && !opts.adaptExtensions)) {
    problems.push({
      code: 'extension-version',
      object: e.name,
      message: `extension ${e.name} is ${e.sourceVersion} on the source; the target offers ${e.targetInstalled ? `${e.targetInstalled} (installed)` : e.targetAvailable.join(', ')}, not ${e.sourceVersion}`,
      fix: `run again with --adapt-extensions: pgferry creates ${e.name} at the target's version before the restore and leaves the dump's CREATE EXTENSION out (check ${e.name}'s release notes between the two versions), or install ${e.name} ${e.sourceVersion} on the target`,
    });
  }
  const warnings = report.warnings.filter((w) => !(w.code === 'extension-version' && !opts.adaptExtensions));
  if (problems.length > 0) {
    throw new PgferryError(
      'PGFERRY_PREFLIGHT_PROBLEMS',
      `preflight found ${problems.length} problem(s): ${problems.map((p) => `${p.message} (fix: ${p.fix})`).join('; ')}`,
      { side: 'config', hint: '`pgferry preflight` with the same URLs lists them too.' },
    );
  }
  return {
    report,
    problems,
    warnings,
    pgDump,
    pgRestore,
    extensions: report.extensions,
    extensionSchemas: [
      ...new Set(report.extensions.map((e) => e.schema).filter((s) => s !== 'public' && s !== 'pg_catalog')),
    ],
    tablesWithoutKey: report.tables
      .filter((t) => t.kind !== 'partitioned' && !t.primaryKey)
      .map((t) => t.table),
  };
}

/**
 * Every extension of the source created on the target before the restore (which then leaves the
 * dump's CREATE EXTENSION out): at the source's version, or, where the target lacks it and
 * --adapt-extensions allows, at the target's default. Returns the ones whose version changed.
 */
export async function createExtensions(
  dst: pg.Client,
  extensions: ExtensionCheck[],
): Promise<{ name: string; from: string; to: string }[]> {
  const adapted = [];
  for (const e of extensions) {
    await dst.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(e.schema)}`);
    const version = e.status === 'ok' ? ` VERSION ${quoteLiteral(e.sourceVersion)}` : '';
    await dst.query(
      `CREATE EXTENSION IF NOT EXISTS ${quoteIdent(e.name)} WITH SCHEMA ${quoteIdent(e.schema)}${version}`,
    );
    const [row] = await q<{ v: string }>(
      dst,
      'target',
      'SELECT extversion AS v FROM pg_extension WHERE extname = $1',
      [e.name],
    );
    if (row && row.v !== e.sourceVersion) adapted.push({ name: e.name, from: e.sourceVersion, to: row.v });
  }
  return adapted;
}
