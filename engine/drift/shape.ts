// The shape of a replicated table as replay depends on it, read from the catalogs: its columns
// (type with typmod, nullability, generated, identity, default), its primary key, and for a
// partitioned table its partition key and the whole tree of partitions with their bounds. The
// source is read by oid (a table renamed there is still the same table), the target by name.
import type pg from 'pg';
import { dbError } from '../../lib/errors.js';
import { qualified, quoteLiteral } from '../../lib/sql.js';
import { BINARY_SAFE_TYPES } from '../shared/catalog.js';

export interface ColumnShape {
  name: string;
  /** format_type() under search_path pg_catalog: built-in types bare, every other one qualified. */
  type: string;
  notNull: boolean;
  generated: boolean;
  /** '' none, 'a' GENERATED ALWAYS, 'd' BY DEFAULT. */
  identity: '' | 'a' | 'd';
  /** The default's expression (a generated column's: its expression), or null. */
  default: string | null;
  /**
   * The column was added with a non-volatile default that rows written before it read without
   * storing it (atthasmissing): every such row holds that one value.
   */
  missingDefault: boolean;
  /** The value rows written before the column was added read (attmissingval, as an array literal). */
  missingValue: string | null;
  /** Whether the type's binary COPY form means the same on any server (catalog.ts). */
  binaryPortable: boolean;
  /** The column's collation where it is not its type's own (catalog.ts's KeyColumn.collation). */
  collation: string | null;
}

export interface PartitionShape {
  /** schema.name, unquoted. */
  name: string;
  schema: string;
  table: string;
  /** The parent, schema.name unquoted. */
  parent: string;
  parentSchema: string;
  parentTable: string;
  /** `FOR VALUES …` or `DEFAULT`. */
  bound: string;
  /** A partition that is itself partitioned: its partition key. */
  partitionKey: string | null;
}

export interface TableShape {
  oid: number;
  schema: string;
  name: string;
  kind: 'r' | 'p';
  columns: ColumnShape[];
  primaryKey: string[];
  partitionKey: string | null;
  /** Every partition below the table, at any depth, by name. */
  partitions: PartitionShape[];
  /**
   * A signature of the columns that the same expression reads inside a replay batch's snapshot
   * (trigger-source.ts): a batch whose table's signature differs from the one replay was set up
   * with stops before applying anything. Meaningful only on the server it was read from.
   */
  columnsSig: string;
}

/**
 * The signature of a table's columns as SQL over its oid: names, type oids, typmods and
 * generation, in name order. Replay batches evaluate the same expression.
 */
export const columnsSigSql = (oid: string) =>
  `(SELECT md5(coalesce(string_agg(concat_ws(':', a.attname, a.atttypid, a.atttypmod, a.attgenerated::text), ',' ORDER BY a.attname), ''))
      FROM pg_catalog.pg_attribute a WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped)`;

const BINARY_SAFE = `ARRAY[${BINARY_SAFE_TYPES.map(quoteLiteral).join(', ')}]::text[]`;

const SHAPE_SELECT = `
SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
  (SELECT coalesce(json_agg(json_build_object(
            'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), 'notNull', a.attnotnull,
            'generated', a.attgenerated <> '', 'identity', a.attidentity::text,
            'default', pg_get_expr(d.adbin, d.adrelid), 'missingDefault', a.atthasmissing,
            'missingValue', a.attmissingval::text,
            'binaryPortable', (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname = ANY(${BINARY_SAFE}))
              OR (t.typcategory = 'A' AND e.typnamespace = 'pg_catalog'::regnamespace AND e.typname = ANY(${BINARY_SAFE})),
            'collation', CASE WHEN a.attcollation NOT IN (0, t.typcollation) THEN format('%I.%I', cn.nspname, co.collname) END)
          ORDER BY a.attnum), '[]')
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typelem <> 0
     LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT coalesce(json_agg(a.attname ORDER BY k.pos), '[]')
     FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary) AS "primaryKey",
  CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS "partitionKey",
  (SELECT coalesce(json_agg(json_build_object(
            'name', pn.nspname || '.' || p.relname, 'schema', pn.nspname, 'table', p.relname,
            'parent', qn.nspname || '.' || q.relname, 'parentSchema', qn.nspname, 'parentTable', q.relname,
            'bound', pg_get_expr(p.relpartbound, p.oid),
            'partitionKey', CASE WHEN p.relkind = 'p' THEN pg_get_partkeydef(p.oid) END)
          ORDER BY t.level, pn.nspname, p.relname), '[]')
     FROM pg_partition_tree(c.oid) t
     JOIN pg_class p ON p.oid = t.relid JOIN pg_namespace pn ON pn.oid = p.relnamespace
     JOIN pg_class q ON q.oid = t.parentrelid JOIN pg_namespace qn ON qn.oid = q.relnamespace
    WHERE t.level > 0) AS partitions,
  ${columnsSigSql('c.oid')} AS "columnsSig"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace`;

/**
 * Runs the shape query (its aliases are TableShape's fields) with search_path pinned to pg_catalog (so that format_type qualifies
 * every type that is not built in, the same on both sides) in one round trip.
 */
async function readShapes(
  client: pg.Client,
  side: 'source' | 'target',
  where: string,
): Promise<TableShape[]> {
  try {
    const res = (await client.query(
      `BEGIN; SET LOCAL search_path = pg_catalog; ${SHAPE_SELECT} WHERE c.relkind IN ('r', 'p') AND ${where}; COMMIT`,
    )) as unknown as pg.QueryResult<TableShape>[];
    return res.find((r) => r.command === 'SELECT')?.rows ?? [];
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw dbError(side, err);
  }
}

/** The source's tables by oid; a table dropped there is absent from the map. */
export async function sourceShapes(
  client: pg.Client,
  oids: readonly number[],
): Promise<Map<number, TableShape>> {
  if (oids.length === 0) return new Map();
  const shapes = await readShapes(
    client,
    'source',
    `c.oid IN (${oids.map((o) => Math.trunc(o)).join(', ')})`,
  );
  return new Map(shapes.map((t) => [t.oid, t]));
}

/** The target's tables by `schema.name` (unquoted); a table missing there is absent from the map. */
export async function targetShapes(
  client: pg.Client,
  names: readonly { schema: string; name: string }[],
): Promise<Map<string, TableShape>> {
  if (names.length === 0) return new Map();
  const regclasses = names.map((n) => `to_regclass(${quoteLiteral(qualified(n.schema, n.name))})`);
  const shapes = await readShapes(client, 'target', `c.oid IN (${regclasses.join(', ')})`);
  return new Map(shapes.map((t) => [`${t.schema}.${t.name}`, t]));
}

/**
 * A digest of the catalog rows a table's shape and indexes are read from: every DDL that can
 * change them writes one of these rows (a new row version, so a new xmin) or adds or removes one:
 * the table's pg_class row, its columns, defaults and indexes, its partitions' inheritance and
 * pg_class rows (bounds). About four times cheaper to read than the shapes themselves; a check
 * whose digests did not move since the last one needs no more (drift.ts). `tables`: the source's
 * oids, or the target's names.
 */
export async function shapeDigest(
  client: pg.Client,
  side: 'source' | 'target',
  tables: readonly number[] | readonly { schema: string; name: string }[],
): Promise<string> {
  const rels =
    side === 'source'
      ? { sql: 'SELECT unnest($1::oid[]) AS oid', param: tables as readonly number[] }
      : {
          sql: 'SELECT to_regclass(n)::oid AS oid FROM unnest($1::text[]) n',
          param: (tables as readonly { schema: string; name: string }[]).map((t) =>
            qualified(t.schema, t.name),
          ),
        };
  try {
    const { rows } = await client.query<{ digest: string | null }>(
      `WITH rels AS (${rels.sql})
       SELECT md5(string_agg(t, ',' ORDER BY t)) AS digest FROM (
         SELECT coalesce(r.oid::text, '-') || '/' || coalesce(c.xmin::text, '-') AS t
           FROM rels r LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid
         UNION ALL SELECT a.attrelid || '.' || a.attnum || '/' || a.xmin FROM pg_catalog.pg_attribute a
          WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0
         UNION ALL SELECT d.adrelid || '.d' || d.adnum || '/' || d.xmin FROM pg_catalog.pg_attrdef d
          WHERE d.adrelid IN (SELECT oid FROM rels)
         UNION ALL SELECT i.indexrelid || '.i/' || i.xmin FROM pg_catalog.pg_index i
          WHERE i.indrelid IN (SELECT oid FROM rels)
         UNION ALL SELECT h.inhrelid || '.p/' || h.xmin || '/' || k.xmin
           FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class k ON k.oid = h.inhrelid
          WHERE h.inhparent IN (SELECT oid FROM rels)) s`,
      [rels.param],
    );
    return rows[0]?.digest ?? '';
  } catch (err) {
    throw dbError(side, err);
  }
}
