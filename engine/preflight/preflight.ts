// Preflight: everything that can be known about a migration before it starts, and every reason
// it would fail, each named with its object and its fix. Reads only; changes nothing anywhere.

import type pg from 'pg';
import { qualified } from '../../lib/sql.js';
import { type CaptureRun, describeRun, listCaptures } from '../capture/registry.js';
import { readIdentity, sameDatabase } from '../run/identity.js';
import {
  displayName,
  PGFERRY_SCHEMA,
  splitTables,
  type TableInfo,
  tablesWithoutKey,
} from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q, withClient } from '../shared/db.js';
import { findTool, type PgTool, runAgainst } from '../shared/pg-tools.js';
import type { TableFilter } from '../shared/table-filter.js';
import { collationDifference, type DatabaseCollation, readCollation } from './collations.js';
import { dependentFix, describeDependent, excludedDependents } from './excluded-dependents.js';

export interface Finding {
  code: string;
  object?: string;
  message: string;
  fix?: string;
}

export interface ServerFacts {
  server: string;
  version: string;
  major: number;
  /** How the database sorts text. */
  collation: DatabaseCollation;
}

export interface ExtensionCheck {
  name: string;
  schema: string;
  sourceVersion: string;
  targetInstalled: string | null;
  targetAvailable: string[];
  status: 'ok' | 'missing' | 'other-version';
}

export interface PreflightReport {
  ok: boolean;
  source: ServerFacts;
  target: ServerFacts;
  pgDump: { path: string; version: string } | null;
  tables: {
    table: string;
    kind: 'table' | 'partitioned' | 'partition';
    rowsEstimate: number;
    bytes: number;
    primaryKey: string[] | null;
    unlogged: boolean;
  }[];
  totals: { tables: number; rowsEstimate: number; bytes: number };
  sequences: string[];
  materializedViews: string[];
  largeObjects: number;
  unloggedTables: string[];
  extensions: ExtensionCheck[];
  targetTables: string[];
  /** Change captures already on the source (other runs', alive or abandoned). */
  captures: CaptureRun[];
  problems: Finding[];
  warnings: Finding[];
}

export interface PreflightOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  /** A --copy-only run needs no capture privileges and copies a table without a key whole. */
  copyOnly?: boolean;
}

async function serverFacts(client: pg.Client, conn: ConnInfo): Promise<ServerFacts> {
  const [row] = await q<{ v: string; n: string }>(
    client,
    conn.side,
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n",
  );
  const major = Math.floor(Number(row!.n) / 10000);
  return {
    server: conn.label().slice(conn.side.length + 1),
    version: row!.v,
    major,
    collation: await readCollation(client, conn.side as 'source' | 'target', major),
  };
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

async function targetExtensions(client: pg.Client, names: string[]) {
  const rows = await q<{ name: string; version: string; installed: boolean }>(
    client,
    'target',
    `SELECT name, version, installed FROM pg_available_extension_versions WHERE name = ANY($1) ORDER BY name, version`,
    [names],
  );
  return rows;
}

export async function preflight(opts: PreflightOptions): Promise<PreflightReport> {
  const problems: Finding[] = [];
  const warnings: Finding[] = [];
  return withClient(opts.source, 'control', async (src) =>
    withClient(opts.target, 'control', async (dst) => {
      const source = await serverFacts(src, opts.source);
      const target = await serverFacts(dst, opts.target);
      const [sourceId, targetId] = await Promise.all([
        readIdentity(src, opts.source),
        readIdentity(dst, opts.target),
      ]);
      if (sameDatabase(sourceId, targetId)) {
        problems.push({
          code: 'same-database',
          message: `--source and --target are the same database (${targetId.databaseName} on ${opts.source.host}:${opts.source.port}, also reached as ${opts.target.host}:${opts.target.port})`,
          fix: 'point --target at the new, empty database',
        });
      }
      if (target.major < source.major) {
        problems.push({
          code: 'target-older',
          message: `target runs PostgreSQL ${target.version}, older than the source's ${source.version}`,
          fix: 'migrate to a target of the same or a newer major version',
        });
      }

      const sorting = collationDifference(source.collation, target.collation);
      if (sorting) warnings.push(sorting);

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
      const objects = await sourceObjects(src);
      if (!opts.copyOnly) {
        for (const t of tables.filter((t) => t.canSelect && !t.canTrigger && t.partitionRoot === null)) {
          problems.push({
            code: 'no-trigger-privilege',
            object: displayName(t),
            message: `the source role ${opts.source.user} cannot create the capture trigger on ${displayName(t)}`,
            fix: `connect as the table's owner, or GRANT TRIGGER ON ${quoteName(t)} TO ${opts.source.user}`,
          });
        }
        if (!objects.canCreate) {
          problems.push({
            code: 'no-create-privilege',
            message: `the source role ${opts.source.user} cannot create the capture schema "${PGFERRY_SCHEMA}"`,
            fix: `GRANT CREATE ON DATABASE ${opts.source.database} TO ${opts.source.user}`,
          });
        }
      }
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

      const available = await targetExtensions(
        dst,
        objects.exts.map((e) => e.name),
      );
      const extensions: ExtensionCheck[] = objects.exts.map((e) => {
        const versions = available.filter((a) => a.name === e.name);
        const installed = versions.find((a) => a.installed)?.version ?? null;
        const status: ExtensionCheck['status'] =
          versions.length === 0
            ? 'missing'
            : (installed ?? '') === e.version || (!installed && versions.some((v) => v.version === e.version))
              ? 'ok'
              : 'other-version';
        return {
          name: e.name,
          schema: e.schema,
          sourceVersion: e.version,
          targetInstalled: installed,
          targetAvailable: versions.map((v) => v.version),
          status,
        };
      });
      for (const e of extensions) {
        if (e.status === 'missing') {
          problems.push({
            code: 'extension-missing',
            object: e.name,
            message: `extension ${e.name} ${e.sourceVersion} is installed on the source but not available on the target`,
            fix: `install ${e.name} on the target server (on RDS: check it is supported for the engine version), or DROP EXTENSION ${e.name} on the source if unused`,
          });
        } else if (e.status === 'other-version') {
          warnings.push({
            code: 'extension-version',
            object: e.name,
            message: `extension ${e.name} is ${e.sourceVersion} on the source; the target has ${e.targetInstalled ?? `only ${e.targetAvailable.join(', ')}`}`,
            fix: `check ${e.name}'s release notes for changes between these versions; ALTER EXTENSION ${e.name} UPDATE after the migration if needed`,
          });
        }
      }

      const targetTables = await targetUserTables(dst);
      if (targetTables.length > 0) {
        const sample = targetTables.slice(0, 5).join(', ');
        problems.push({
          code: 'target-not-empty',
          message: `the target database ${opts.target.database} already has ${targetTables.length} table(s) or view(s): ${sample}${targetTables.length > 5 ? ', …' : ''}`,
          fix: 'use an empty target database (CREATE DATABASE …), or resume the earlier run with its --state file',
        });
      }

      const captures = await existingCaptures(src, warnings);

      const unlogged = tables.filter((t) => t.unlogged).map(displayName);
      const listed = tables.map((t) => ({
        table: displayName(t),
        kind: (t.kind === 'p' ? 'partitioned' : t.partitionRoot ? 'partition' : 'table') as
          | 'table'
          | 'partitioned'
          | 'partition',
        rowsEstimate: t.rowsEstimate,
        bytes: t.bytes,
        primaryKey: t.primaryKey?.map((k) => k.name) ?? null,
        unlogged: t.unlogged,
      }));
      return {
        ok: problems.length === 0,
        source,
        target,
        pgDump: dump ? { path: dump.path, version: dump.version } : null,
        tables: listed,
        totals: {
          tables: tables.length,
          rowsEstimate: tables.reduce((a, t) => a + t.rowsEstimate, 0),
          bytes: tables.reduce((a, t) => a + t.bytes, 0),
        },
        sequences: objects.seqs.map((s) => s.name),
        materializedViews: objects.matviews,
        largeObjects: objects.largeObjects,
        unloggedTables: unlogged,
        extensions,
        targetTables,
        captures,
        problems,
        warnings,
      };
    }),
  );
}

const quoteName = (t: TableInfo) => qualified(t.schema, t.name);

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

/**
 * Captures already on the source, each a warning: a new run gets a capture of its own, but every
 * capture adds a trigger call and a log insert to each write of the application.
 */
async function existingCaptures(src: pg.Client, warnings: Finding[]): Promise<CaptureRun[]> {
  let captures: CaptureRun[];
  try {
    captures = await listCaptures(src);
  } catch (err) {
    warnings.push({
      code: 'capture-unreadable',
      object: PGFERRY_SCHEMA,
      message: `the captures already on the source could not be read: ${(err as Error).message}`,
      fix: `grant the source role SELECT on ${PGFERRY_SCHEMA}.runs and ${PGFERRY_SCHEMA}.captured, or run preflight as the role that created them`,
    });
    return [];
  }
  for (const c of captures) {
    const cost = 'each capture costs every write on the source a trigger call and a log row';
    if (c.runId === null) {
      warnings.push({
        code: 'capture-unregistered',
        object: PGFERRY_SCHEMA,
        message: `the source has ${describeRun(c)} (an older pgferry's, or its registry row was deleted): ${cost}`,
        fix: 'pgferry cleanup --source URL (removes every capture on the source; it refuses while a run is alive)',
      });
    } else if (c.alive) {
      warnings.push({
        code: 'capture-of-live-run',
        object: c.runId,
        message: `the source already has the capture of ${describeRun(c)}: alive; a new run gets a capture of its own, and ${cost}`,
        fix: `nothing, if both runs are wanted (two targets); otherwise stop run ${c.runId}, then pgferry cleanup --source URL --run ${c.runId}`,
      });
    } else {
      warnings.push({
        code: 'capture-abandoned',
        object: c.runId,
        message: `the source has the capture of ${describeRun(c)}: abandoned (its run is not alive), its logs grow with every write, and ${cost}`,
        fix: `pgferry cleanup --source URL --run ${c.runId} (or resume that run with its --state file)`,
      });
    }
  }
  return captures;
}
