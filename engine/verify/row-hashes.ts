// The SQL verify runs on each side: row counts, and hashes of rows (per range, per key, per
// bucket of key hashes) that are equal for equal rows on servers of other versions, settings and
// encodings (verify.ts says how).
import type pg from 'pg';
import { qualified, quoteIdent } from '../../lib/sql.js';
import { serverEncoding } from '../preflight/encodings.js';
import { displayName, type TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q, withClient } from '../shared/db.js';

export const ALIAS = '"pgferry verify row"';

/** The unit verify compares: partitioned tables whole at their root, others without children. */
export const fromClause = (t: TableInfo) =>
  `${t.kind === 'p' ? '' : 'ONLY '}${qualified(t.schema, t.name)} AS ${ALIAS}`;

export async function countRows(c: pg.Client, side: 'source' | 'target', t: TableInfo): Promise<number> {
  const [row] = await q<{ n: string }>(
    c,
    side,
    `SELECT count(*) AS n FROM ${fromClause(t)}`,
    [],
    displayName(t),
  );
  return Number(row?.n ?? 0);
}

/** SQL hashing a text expression: its bytes, or with `portable` its UTF-8 bytes escaped to ASCII. */
const hashOf = (text: string, portable: boolean) =>
  `hashtextextended(${portable ? `encode(convert_to(${text}, 'UTF8'), 'escape')` : text}, 0)`;

/** Whether the two databases store text in different encodings. */
export async function encodingsDiffer(opts: { source: ConnInfo; target: ConnInfo }): Promise<boolean> {
  const read = (conn: ConnInfo) =>
    withClient(conn, 'control', (c) => serverEncoding(c, conn.side as 'source' | 'target'));
  const [a, b] = await Promise.all([read(opts.source), read(opts.target)]);
  return a !== b;
}

export async function rangeHash(
  c: pg.Client,
  side: 'source' | 'target',
  t: TableInfo,
  where: string,
  portable: boolean,
) {
  const [row] = await q<{ n: string; h: string | null }>(
    c,
    side,
    `SELECT count(*) AS n, sum(${hashOf(`${ALIAS}::text`, portable)}::numeric)::text AS h FROM ${fromClause(t)} WHERE ${where}`,
    [],
    displayName(t),
  );
  return `${row?.n}:${row?.h ?? ''}`;
}

/** Per-key hashes of one range on one side. */
export async function keyHashes(
  c: pg.Client,
  side: 'source' | 'target',
  t: TableInfo,
  where: string,
  portable: boolean,
) {
  const key = t.primaryKey!;
  const cols = key.map((k, i) => `${ALIAS}.${quoteIdent(k.name)}::text AS k${i}`).join(', ');
  const rows = await q<Record<string, string>>(
    c,
    side,
    `SELECT ${cols}, ${hashOf(`${ALIAS}::text`, portable)}::text AS h FROM ${fromClause(t)} WHERE ${where}`,
    [],
    displayName(t),
  );
  const map = new Map<string, string>();
  for (const r of rows) map.set(JSON.stringify(key.map((_, i) => r[`k${i}`])), r.h!);
  return map;
}

/** The bucket of a row by its key's text form: independent of either server's collation. */
export const bucketOf = (t: TableInfo, buckets: number, portable: boolean) => {
  const key = t.primaryKey!.map((k) => `${ALIAS}.${quoteIdent(k.name)}`);
  const text = key.length === 1 ? `${key[0]}::text` : `ROW(${key.join(', ')})::text`;
  return `abs(${hashOf(text, portable)} % ${buckets})`;
};

/** count:hash of every bucket of a table on one side, in one scan. */
export async function bucketHashes(
  c: pg.Client,
  side: 'source' | 'target',
  t: TableInfo,
  buckets: number,
  portable: boolean,
) {
  const rows = await q<{ b: string; n: string; h: string }>(
    c,
    side,
    `SELECT ${bucketOf(t, buckets, portable)} AS b, count(*) AS n, sum(${hashOf(`${ALIAS}::text`, portable)}::numeric)::text AS h
       FROM ${fromClause(t)} GROUP BY 1`,
    [],
    displayName(t),
  );
  return new Map(rows.map((r) => [Number(r.b), `${r.n}:${r.h}`]));
}
