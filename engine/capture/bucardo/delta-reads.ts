// The statements a Bucardo source reads and marks with (bucardo-source.ts): over a table's delta
// rows (alias d) that pgferry's target has not tracked, and over its truncate rows (alias r) that
// it has not marked applied.
import { quoteIdent, quoteLiteral } from '../../../lib/sql.js';
import { columnsSigSql } from '../../drift/shape.js';
import type { SourceTable } from '../change-source.js';
import { bucardoRel, TRUNCATES, trackTableOf } from './bucardo-objects.js';
import { markTruncates, unapplied, untracked } from './registration.js';
import { type Horizon, settled } from './settled.js';

/** A followed table and its delta table (in the bucardo schema). */
export interface Followed {
  t: SourceTable;
  delta: string;
}

/** The untracked delta rows, as FROM … WHERE. */
const pending = (f: Followed, me: string) =>
  `${bucardoRel(f.delta)} d WHERE ${untracked(trackTableOf(f.delta), me)}`;

/** The unapplied truncate rows, as FROM … WHERE. */
export const truncateRows = (f: Followed, me: string) =>
  `${bucardoRel(TRUNCATES)} r WHERE r.tablename = ${f.t.oid} AND ${unapplied(me)}`;

/** Pending changes (delta rows plus truncates) and the age of the oldest, per table, in one query. */
export function backlogSql(tables: Followed[], me: string): string {
  return tables
    .map(
      (f, i) => `SELECT ${i} AS i, (a.n + b.n)::int AS n,
                        extract(epoch FROM clock_timestamp() - least(a.oldest, b.oldest))::float8 AS lag
                   FROM (SELECT count(*) AS n, min(d.txntime) AS oldest FROM ${pending(f, me)}) a,
                        (SELECT count(*) AS n, min(r.cdate) AS oldest FROM ${truncateRows(f, me)}) b`,
    )
    .join(' UNION ALL ');
}

/**
 * A batch's head: its delta rows (n), their last txntime (cutoff), its truncates, the age of its
 * oldest change, and the table's columns signature. The window is the oldest `limit` untracked
 * rows; the batch, every untracked row up to the window's last txntime (rows past the cut may
 * share it), so that it holds whole txntimes and consume tracks exactly what it read.
 */
export function headSql(f: Followed, me: string, limit: number | null): string {
  const window =
    limit === null
      ? `SELECT min(d.txntime) AS first, max(d.txntime) AS cutoff FROM ${pending(f, me)}`
      : `SELECT min(txntime) AS first, max(txntime) AS cutoff
           FROM (SELECT d.txntime FROM ${pending(f, me)} ORDER BY d.txntime LIMIT ${limit}) s`;
  return `WITH pgferry_w AS (${window}),
               pgferry_r AS (SELECT count(*)::int AS n, min(r.cdate) AS oldest FROM ${truncateRows(f, me)})
          SELECT (SELECT count(*)::int FROM ${pending(f, me)} AND d.txntime <= pgferry_w.cutoff) AS n,
                 pgferry_w.cutoff::text AS cutoff, pgferry_r.n AS truncs,
                 extract(epoch FROM clock_timestamp() - least(pgferry_w.first, pgferry_r.oldest))::float8 AS lag,
                 ${columnsSigSql(String(f.t.oid))} AS sig
            FROM pgferry_w, pgferry_r`;
}

/** The batch's delta rows up to its cutoff, as FROM … WHERE (none without a cutoff). */
const inBatch = (f: Followed, me: string, cutoff: string | null) =>
  cutoff === null
    ? `${pending(f, me)} AND false`
    : `${pending(f, me)} AND d.txntime <= ${quoteLiteral(cutoff)}::timestamptz`;

/** The batch's distinct keys in key order, named as the table's key columns. */
export function keysSql(f: Followed, me: string, cutoff: string | null): string {
  const cols = f.t.key.map((k) => quoteIdent(k.name));
  // Under the key's collation (Bucardo's delta columns have their type's): one row per key.
  const distinct = f.t.key.map(
    (k, i) => `d.${cols[i]}${k.collation ? ` COLLATE ${k.collation}` : ''} AS ${cols[i]}`,
  );
  return `SELECT DISTINCT ${distinct.join(', ')} FROM ${inBatch(f, me, cutoff)} ORDER BY ${cols.join(', ')}`;
}

/**
 * What consume writes, in the batch's snapshot: a track row for each of the batch's settled
 * txntimes (at horizon `h`; none without one), and every truncate read marked applied. A truncate
 * is always marked: applied again after later batches, it would empty what they wrote.
 */
export function marksSql(
  f: Followed,
  me: string,
  cutoff: string | null,
  truncates: number,
  h: Horizon | null,
): string[] {
  return [
    ...(cutoff === null
      ? []
      : [
          `INSERT INTO ${bucardoRel(trackTableOf(f.delta))} (txntime, target)
           SELECT DISTINCT d.txntime, ${quoteLiteral(me)} FROM ${inBatch(f, me, cutoff)} AND ${settled('d.txntime', h)}`,
        ]),
    ...(truncates > 0 ? [markTruncates(f.t.oid, me)] : []),
  ];
}
