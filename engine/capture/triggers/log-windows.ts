// The SQL that bounds a batch's rows in a trigger log (trigger-source.ts): the key columns, a
// slice's filter, and the last position of a window of the oldest rows.
import { logColumns } from '../../../lib/log-columns.js';
import { quoteIdent, quoteLiteral } from '../../../lib/sql.js';
import type { Slice, SourceTable } from '../change-source.js';

/**
 * The last position among the log's oldest `rows` rows, read through its index. A range up to it
 * with a lower bound (positions are positive) is read through the index too, even before the log
 * has statistics.
 */
export const lastPosition = (log: string, seq: string, rows: number) =>
  `(SELECT max(${seq}) FROM (SELECT ${seq} FROM ${log} ORDER BY ${seq} LIMIT ${rows}) pgferry_c)`;

/** The key columns, quoted. */
export const keyIdents = (t: SourceTable): string[] => t.key.map((k) => quoteIdent(k.name));

/** The log rows of one slice, and the TRUNCATE rows (which every slice sees, so that none applies across one). */
export function sliceFilter(t: SourceTable, slice: Slice | undefined): string {
  if (!slice) return 'true';
  // Row comparison orders like ORDER BY on the key columns; the untyped literals take the
  // columns' types, and values come back exactly: every session pins the output formats.
  const key = `(${keyIdents(t).join(', ')})`;
  const bound = (values: string[]) => `(${values.map(quoteLiteral).join(', ')})`;
  const range = [
    slice.from ? `${key} >= ${bound(slice.from)}` : null,
    slice.to ? `${key} < ${bound(slice.to)}` : null,
  ].filter((c): c is string => c !== null);
  return `(${logColumns(t.key).op} = 'T' OR (${range.join(' AND ') || 'true'}))`;
}
