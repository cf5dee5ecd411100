// Preflight's checks of the selected tables: something selected, nothing selected that depends on
// an excluded table, a primary key on each (or, with --copy-only, a warning), the privileges to
// read each and (with capture) to create its trigger, no row-level security hiding rows.
import type pg from 'pg';
import { qualified } from '../../lib/sql.js';
import { displayName, splitTables, type TableInfo, tablesWithoutKey } from '../shared/catalog.js';
import { dependentFix, describeDependent, excludedDependents } from './excluded-dependents.js';
import type { Finding, Findings } from './findings.js';
import type { PreflightOptions } from './preflight.js';

const quoteName = (t: TableInfo) => qualified(t.schema, t.name);

/** The selected tables, each problem with them found. */
export async function checkTables(
  src: pg.Client,
  opts: PreflightOptions,
  { problems, warnings }: Findings,
): Promise<TableInfo[]> {
  const { selected: tables, excluded } = await splitTables(src, opts.filter);
  if (tables.length === 0) {
    problems.push({
      code: 'no-tables',
      message: 'no table on the source matches the --include/--exclude patterns',
      fix: 'check the patterns: they match schema.table, with * as a wildcard',
    });
  }
  const dependents = await excludedDependents(
    src,
    tables.map((t) => t.oid),
    excluded.map((t) => t.oid),
  );
  for (const d of dependents) {
    problems.push({
      code: d.kind === 'foreign key' ? 'foreign-key-to-excluded' : 'view-on-excluded',
      object: d.object,
      message: describeDependent(d),
      fix: dependentFix(d),
    });
  }
  for (const t of tablesWithoutKey(tables)) {
    const finding: Finding = {
      code: 'no-primary-key',
      object: displayName(t),
      message: `table ${displayName(t)} has no primary key`,
      fix: `add one on the source (ALTER TABLE ${quoteName(t)} ADD PRIMARY KEY (...)), or leave the table out with --exclude '${displayName(t)}'${opts.copyOnly ? '' : '; a --copy-only run copies it whole'}`,
    };
    (opts.copyOnly ? warnings : problems).push(
      opts.copyOnly
        ? { ...finding, message: `${finding.message}: it is copied whole, in one chunk` }
        : finding,
    );
  }
  for (const t of tables.filter((t) => !t.canSelect)) {
    problems.push({
      code: 'no-select-privilege',
      object: displayName(t),
      message: `the source role ${opts.source.user} cannot read ${displayName(t)}`,
      fix: `GRANT SELECT ON ${quoteName(t)} TO ${opts.source.user}, or --exclude '${displayName(t)}'`,
    });
  }
  for (const t of tables.filter((t) => t.rowSecurity)) {
    problems.push({
      code: 'row-level-security',
      object: displayName(t),
      message: `row-level security on ${displayName(t)} would hide rows from the source role ${opts.source.user}`,
      fix: `connect as a role with BYPASSRLS, or ALTER TABLE ${quoteName(t)} NO FORCE ROW LEVEL SECURITY while migrating`,
    });
  }
  if (!opts.copyOnly) {
    for (const t of tables.filter((t) => t.canSelect && !t.canTrigger && t.partitionRoot === null)) {
      problems.push({
        code: 'no-trigger-privilege',
        object: displayName(t),
        message: `the source role ${opts.source.user} cannot create the capture trigger on ${displayName(t)}`,
        fix: `connect as the table's owner, or GRANT TRIGGER ON ${quoteName(t)} TO ${opts.source.user}`,
      });
    }
  }
  return tables;
}
