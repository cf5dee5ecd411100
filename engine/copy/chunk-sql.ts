// SQL for one chunk: a primary-key range of one table. COPY takes no bind parameters, so the
// range's boundary values (read from the source itself) are inlined as escaped literals cast to
// the key column's type. Row comparison `(a, b) >= (x, y)` follows the composite index's order, and
// a literal takes the column's collation, so a range means the same as a walk of the PK index.
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';

export interface KeyColumnRef {
  name: string;
  type: string;
}

export interface ChunkTable {
  schema: string;
  name: string;
  /** Columns written by the copy: generated columns are left out. */
  columns: string[];
  key: KeyColumnRef[] | null;
  format: 'binary' | 'text';
}

const tuple = (parts: string[]) => (parts.length === 1 ? parts[0]! : `(${parts.join(', ')})`);

/** WHERE clause of a key range; null bounds are open ends. */
export function rangePredicate(
  key: KeyColumnRef[] | null,
  lo: string[] | null,
  hi: string[] | null,
  /** Qualifies the key columns with this (already quoted) alias. */
  alias?: string,
): string {
  if (!key || (lo === null && hi === null)) return 'true';
  const cols = tuple(key.map((k) => (alias ? `${alias}.${quoteIdent(k.name)}` : quoteIdent(k.name))));
  const literal = (values: string[]) => tuple(values.map((v, i) => `${quoteLiteral(v)}::${key[i]!.type}`));
  const parts: string[] = [];
  if (lo !== null) parts.push(`${cols} >= ${literal(lo)}`);
  if (hi !== null) parts.push(`${cols} < ${literal(hi)}`);
  return parts.join(' AND ');
}

const formatClause = (format: 'binary' | 'text') => (format === 'binary' ? ' WITH (FORMAT binary)' : '');

export function copyOutSql(t: ChunkTable, lo: string[] | null, hi: string[] | null): string {
  const cols = t.columns.map(quoteIdent).join(', ');
  // ONLY: rows of inheritance children and partitions are copied as their own tables.
  return `COPY (SELECT ${cols} FROM ONLY ${qualified(t.schema, t.name)} WHERE ${rangePredicate(t.key, lo, hi)}) TO STDOUT${formatClause(t.format)}`;
}

export function copyInSql(t: ChunkTable): string {
  const cols = t.columns.map(quoteIdent).join(', ');
  return `COPY ${qualified(t.schema, t.name)} (${cols}) FROM STDIN${formatClause(t.format)}`;
}
