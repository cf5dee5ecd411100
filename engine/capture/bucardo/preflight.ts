// What `--capture bucardo` needs of the source, each problem with its fix (reads only): Bucardo 5
// installed on the source database; every included table in a Bucardo sync whose source is this
// database (its delta trigger, delta and track tables, truncate trigger) and not partitioned
// (Bucardo 5 takes ordinary tables only); and the privileges pgferry uses: SELECT on the delta tables, INSERT and DELETE on the track tables, on
// bucardo_delta_targets and bucardo_truncate_trigger_log, and pg_read_all_stats, without which
// other roles' transactions are hidden from the guard of settled.ts.
import type pg from 'pg';
import { qualified, quoteIdent } from '../../../lib/sql.js';
import type { Finding } from '../../preflight/findings.js';
import { displayName, type TableInfo } from '../../shared/catalog.js';
import { q } from '../../shared/db.js';
import {
  addTableFix,
  BUCARDO_SCHEMA,
  bucardoGap,
  DELTA_TARGETS,
  inspectTables,
  missingBucardo,
  TRUNCATES,
  TRUNCATES_APPLIED,
} from './bucardo-objects.js';

const problem = (message: string, fix: string, object?: string): Finding => ({
  code: 'PGFERRY_PREFLIGHT_PROBLEMS',
  message,
  fix,
  ...(object ? { object } : {}),
});

const listed = (names: string[], most = 5) =>
  `${names.slice(0, most).join(', ')}${names.length > most ? `, … (${names.length} in all)` : ''}`;

export async function bucardoProblems(client: pg.Client, tables: TableInfo[]): Promise<Finding[]> {
  const missing = await missingBucardo(client);
  if (missing.includes(`schema ${BUCARDO_SCHEMA}`)) {
    return [
      problem(
        'the source database has no bucardo schema: Bucardo does not replicate from it',
        'put the tables in a Bucardo 5 sync whose source is this database (bucardo add db, bucardo add table, bucardo add sync), or use --capture triggers',
        BUCARDO_SCHEMA,
      ),
    ];
  }
  if (missing.length > 0) {
    return [
      problem(
        `the source's Bucardo is not Bucardo 5: it lacks ${missing.join(', ')}`,
        'upgrade Bucardo to 5.x (bucardo upgrade, then bucardo validate all), or use --capture triggers',
        BUCARDO_SCHEMA,
      ),
    ];
  }
  const out: Finding[] = [];
  // Partitions come with their root (refused whole); tables without a key are preflight's. Bucardo's
  // own tables are never listed (engine/shared/catalog.ts leaves its schema out).
  const units = tables.filter((t) => t.partitionRoot === null && t.primaryKey);
  const found = await inspectTables(
    client,
    units.filter((u) => u.kind === 'r').map((t) => t.oid),
  );
  const read: string[] = [];
  const written = [DELTA_TARGETS, TRUNCATES_APPLIED];
  for (const t of units) {
    const name = displayName(t);
    const b = found.get(t.oid);
    const gap =
      t.kind === 'p'
        ? 'is partitioned: Bucardo 5 cannot replicate a partitioned table'
        : bucardoGap(b, t.primaryKey?.map((k) => k.name) ?? []);
    const fix =
      t.kind === 'p' ? 'use --capture triggers, or leave the table out with --exclude' : addTableFix(name);
    if (gap) out.push(problem(`${name} ${gap}`, fix, name));
    else if (b?.delta && b.track) {
      read.push(b.delta);
      written.push(b.track);
    }
  }
  const lacking = await missingPrivileges(client, [...read, TRUNCATES], written);
  if (lacking.denied.length > 0) {
    out.push(
      problem(
        `role ${lacking.role} lacks ${listed(lacking.denied)}`,
        grants(lacking.role, lacking.denied, written),
        BUCARDO_SCHEMA,
      ),
    );
  }
  return out;
}

/** Privileges pgferry uses that the current role lacks, as "PRIVILEGE on object". */
async function missingPrivileges(
  client: pg.Client,
  read: string[],
  written: string[],
): Promise<{ role: string; denied: string[] }> {
  const rels = [
    ...read.map((r) => [r, 'SELECT']),
    ...written.flatMap((w) => ['SELECT', 'INSERT', 'DELETE'].map((p) => [w, p])),
  ];
  // The role-wide privileges first, then each relation's: a long list is cut after a few.
  const rows = await q<{ denied: string }>(
    client,
    'source',
    `SELECT denied FROM (
       SELECT 1 AS ord, 0::bigint AS n, 'membership in pg_read_all_stats' AS denied WHERE NOT pg_has_role('pg_read_all_stats', 'MEMBER')
       UNION ALL
       SELECT 2, 0, 'USAGE on schema ' || quote_ident($3) WHERE NOT has_schema_privilege($3, 'USAGE')
       UNION ALL
       SELECT 3, 0, 'EXECUTE on ' || $3 || '.bucardo_tablename_maker(text)'
        WHERE NOT has_function_privilege($3 || '.bucardo_tablename_maker(text)', 'EXECUTE')
       UNION ALL
       SELECT 4, f.n, f.priv || ' on ' || format('%I.%I', $3::text, f.rel)
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS f(rel, priv, n)
        WHERE NOT has_table_privilege(to_regclass(format('%I.%I', $3::text, f.rel)), f.priv)) d
     ORDER BY ord, n`,
    [rels.map((r) => r[0]), rels.map((r) => r[1]), BUCARDO_SCHEMA],
  );
  const [role] = await q<{ role: string }>(client, 'source', 'SELECT current_user AS role');
  return { role: role?.role ?? 'the role', denied: rows.map((r) => r.denied) };
}

/** The GRANTs that give the role what it lacks (as a superuser or the tables' owner). */
function grants(role: string, denied: string[], written: string[]): string {
  const r = quoteIdent(role);
  const out = [`GRANT USAGE ON SCHEMA ${quoteIdent(BUCARDO_SCHEMA)} TO ${r}`];
  if (denied.some((d) => d.startsWith('SELECT')))
    out.push(`GRANT SELECT ON ALL TABLES IN SCHEMA ${quoteIdent(BUCARDO_SCHEMA)} TO ${r}`);
  if (denied.some((d) => d.startsWith('INSERT') || d.startsWith('DELETE')))
    out.push(
      `GRANT INSERT, DELETE ON ${written.map((w) => qualified(BUCARDO_SCHEMA, w)).join(', ')} TO ${r}`,
    );
  if (denied.some((d) => d.startsWith('membership'))) out.push(`GRANT pg_read_all_stats TO ${r}`);
  return `as a superuser: ${out.join('; ')}`;
}
