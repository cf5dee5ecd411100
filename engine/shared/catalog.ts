// What the source holds: tables, their columns and primary keys, read from the catalogs.
import type pg from 'pg';
import { PgferryError, stateOf } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { q } from './db.js';
import { makeMatcher, type TableFilter } from './table-filter.js';

/** The schema on the source where pgferry keeps its own objects (capture). Never migrated. */
export const PGFERRY_SCHEMA = 'pgferry';
/**
 * Bucardo's schema on a source it replicates (its delta and track tables, its trigger functions):
 * replication machinery like pgferry's own, never a table or function to move to the target.
 */
export const BUCARDO_SCHEMA = 'bucardo';

export interface Column {
  name: string;
  /** format_type() of the column: usable verbatim in a cast. */
  type: string;
  /** Generated (STORED) columns cannot be written by COPY: they are left out of column lists. */
  generated: boolean;
  /** Whether the type's binary COPY format means the same on any server (BINARY_SAFE_TYPES). */
  binaryPortable: boolean;
}

export interface KeyColumn {
  name: string;
  type: string;
  typeOid: number;
  /**
   * Whether the column's values are ordered by a collation other than C (text under the database's
   * or a column's locale, or a composite holding text): its order, and so any range of it, can
   * differ between two servers.
   */
  collated: boolean;
  /**
   * The column's collation where it is not its type's own (quoted and schema-qualified), else
   * null. Under a nondeterministic one, two spellings of a key are one key: whatever holds or
   * compares keys on the column's behalf (a capture log, a cast) must carry it.
   */
  collation: string | null;
}

export interface TableInfo {
  schema: string;
  name: string;
  oid: number;
  /** 'r' ordinary table or leaf partition, 'p' partitioned table (holds no rows itself). */
  kind: 'r' | 'p';
  unlogged: boolean;
  /** The partitioned table at the top of this partition's tree, or null. */
  partitionRoot: { schema: string; name: string } | null;
  rowsEstimate: number;
  bytes: number;
  primaryKey: KeyColumn[] | null;
  columns: Column[];
  canSelect: boolean;
  canTrigger: boolean;
  /** Row-level security applies to this role here: its policies would hide rows from the copy. */
  rowSecurity: boolean;
}

/**
 * Built-in types whose binary COPY form means the same on any server of any supported version:
 * copied and replayed in binary (arrays of them too, whose element OID is fixed for built-ins).
 * Everything else goes in text, in particular the reg* types (regclass, regproc, regtype,
 * regconfig, ...), whose binary form is the OID of the object named, which is another object or
 * none on the target, and user-defined types, whose OIDs differ between servers.
 */
export const BINARY_SAFE_TYPES = [
  'bool bytea char name int2 int4 int8 float4 float8 numeric money text varchar bpchar json jsonb',
  'uuid date time timetz timestamp timestamptz interval inet cidr macaddr macaddr8 bit varbit',
  'pg_lsn point line lseg box path polygon circle',
]
  .join(' ')
  .split(' ');

export const displayName = (t: { schema: string; name: string }): string => `${t.schema}.${t.name}`;

interface TableRow {
  oid: number;
  schema: string;
  name: string;
  relkind: 'r' | 'p';
  relpersistence: string;
  root_schema: string | null;
  root_name: string | null;
  reltuples: string;
  bytes: string;
  can_select: boolean;
  can_trigger: boolean;
  row_security: boolean;
}

/**
 * Every table the migration could take, split by the include/exclude filter (one catalog read):
 * `excluded` is what pg_dump is told to leave out and what nothing selected may depend on.
 */
export async function splitTables(
  client: pg.Client,
  filter: TableFilter,
  opts: { lockWaitMs?: number } = {},
): Promise<{ selected: TableInfo[]; excluded: TableInfo[] }> {
  const all = await listTables(client, 'source', { include: [], exclude: [] }, opts);
  const matches = makeMatcher(filter);
  const chosen = (t: TableInfo) => matches((t.partitionRoot ?? t).schema, (t.partitionRoot ?? t).name);
  return { selected: all.filter(chosen), excluded: all.filter((t) => !chosen(t)) };
}

/**
 * Lists user tables (ordinary, partitioned and partitions), without extension-owned tables,
 * system schemas and pgferry's and Bucardo's schemas, then applies the include/exclude filter: a
 * partition is selected when its partitioned root is.
 */
export async function listTables(
  client: pg.Client,
  side: 'source' | 'target',
  filter: TableFilter,
  opts: { lockWaitMs?: number } = {},
): Promise<TableInfo[]> {
  // pg_table_size() takes each table's ACCESS SHARE lock: an ALTER TABLE or VACUUM FULL in
  // progress makes it wait (and time out under the session's lock_timeout). Waited out, named.
  const rows = await waitOutLocks(
    client,
    side,
    () =>
      q<TableRow>(
        client,
        side,
        `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence,
            rn.nspname AS root_schema, r.relname AS root_name,
            c.reltuples::text AS reltuples, pg_table_size(c.oid)::text AS bytes,
            has_table_privilege(c.oid, 'SELECT') AS can_select,
            has_table_privilege(c.oid, 'TRIGGER') AS can_trigger,
            (c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)) AS row_security
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
       LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
      WHERE c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1, $2)
        AND n.nspname !~ '^pg_(toast|temp)'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY n.nspname, c.relname`,
        [PGFERRY_SCHEMA, BUCARDO_SCHEMA],
      ),
    opts.lockWaitMs,
  );
  const matches = makeMatcher(filter);
  const selected = rows.filter((r) =>
    r.root_schema !== null && r.root_name !== null
      ? matches(r.root_schema, r.root_name)
      : matches(r.schema, r.name),
  );
  if (selected.length === 0) return [];
  const oids = selected.map((r) => r.oid);

  // Collation oids 950 and 951 are the built-in "C" and "POSIX": byte order everywhere.
  const keyRows = await q<{
    relid: number;
    name: string;
    type: string;
    type_oid: number;
    collated: boolean;
    collation: string | null;
  }>(
    client,
    side,
    `SELECT i.indrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.atttypid::int AS type_oid,
            (a.attcollation NOT IN (0, 950, 951) OR t.typtype IN ('c', 'r', 'm')) AS collated,
            CASE WHEN a.attcollation NOT IN (0, t.typcollation) THEN format('%I.%I', cn.nspname, co.collname) END AS collation
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation
       LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      WHERE i.indisprimary AND i.indrelid = ANY($1::oid[])
      ORDER BY i.indrelid, k.pos`,
    [oids],
  );
  const colRows = await q<{ relid: number; name: string; type: string; generated: boolean; binary: boolean }>(
    client,
    side,
    `SELECT a.attrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attgenerated <> '' AS generated,
            (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = ANY($2::text[]))
            OR (t.typcategory = 'A' AND e.typnamespace = 'pg_catalog'::regnamespace
                AND e.typname = ANY($2::text[])) AS binary
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typelem <> 0
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`,
    [oids, BINARY_SAFE_TYPES],
  );
  const keys = new Map<number, KeyColumn[]>();
  for (const k of keyRows) {
    const list = keys.get(k.relid) ?? [];
    list.push({
      name: k.name,
      type: k.type,
      typeOid: k.type_oid,
      collated: k.collated,
      collation: k.collation,
    });
    keys.set(k.relid, list);
  }
  const cols = new Map<number, Column[]>();
  for (const c of colRows) {
    const list = cols.get(c.relid) ?? [];
    list.push({ name: c.name, type: c.type, generated: c.generated, binaryPortable: c.binary });
    cols.set(c.relid, list);
  }
  return selected.map((r) => ({
    schema: r.schema,
    name: r.name,
    oid: r.oid,
    kind: r.relkind,
    unlogged: r.relpersistence === 'u',
    partitionRoot:
      r.root_schema !== null && r.root_name !== null ? { schema: r.root_schema, name: r.root_name } : null,
    rowsEstimate: Math.max(0, Math.round(Number(r.reltuples))),
    bytes: Number(r.bytes),
    primaryKey: keys.get(r.oid) ?? null,
    columns: cols.get(r.oid) ?? [],
    canSelect: r.can_select,
    canTrigger: r.can_trigger,
    rowSecurity: r.row_security,
  }));
}

/** Tables that hold rows (ordinary tables and leaf partitions): the units of the copy. */
export const copyUnits = (tables: TableInfo[]): TableInfo[] => tables.filter((t) => t.kind === 'r');

/** Tables without a primary key; a partition is judged by its root, whose key it inherits. */
export const tablesWithoutKey = (tables: TableInfo[]): TableInfo[] =>
  tables.filter((t) => t.primaryKey === null && t.partitionRoot === null);

const isLockTimeout = (err: unknown) => stateOf(err) === '55P03';

/**
 * Runs a catalog read that touches tables' locks, retrying a lock timeout with backoff for up to
 * lockWaitMs (default 2 minutes); then names the tables that someone holds an exclusive lock on.
 */
async function waitOutLocks<T>(
  client: pg.Client,
  side: 'source' | 'target',
  read: () => Promise<T>,
  lockWaitMs = 120_000,
): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (!isLockTimeout(err)) throw err;
      if (Date.now() - started >= lockWaitMs) {
        const held = await q<{ rel: string; pid: number }>(
          client,
          side,
          `SELECT DISTINCT l.relation::regclass::text AS rel, l.pid
             FROM pg_locks l
            WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'AccessExclusiveLock'
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY 1`,
        ).catch(() => []);
        const what = held.map((h) => `${h.rel} (pid ${h.pid})`).join(', ') || 'a table';
        throw new PgferryError(
          'PGFERRY_TABLE_LOCKED',
          `${what} stayed locked for ${Math.round((Date.now() - started) / 1000)}s (${attempt} attempts) while pgferry read the ${side}'s tables`,
          { side, object: held[0]?.rel, sqlstate: '55P03', cause: err },
        );
      }
      await sleep(Math.min(5_000, 250 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}
