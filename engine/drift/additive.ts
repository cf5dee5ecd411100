// The changes pgferry applies to the target itself: a partition new on the source (always: its
// rows cannot be applied without it) and, with --drift additive, a column new on the source that
// every existing row reads alike on both sides once added (compare.ts additiveColumn).
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';
import type { ColumnShape, PartitionShape } from './shape.js';

/**
 * ALTER TABLE … ADD COLUMN as the source has it. A column added there with a default that rows
 * written before it read without storing it gets that very value on the target (the source's
 * attmissingval, not the default evaluated again: now() on the target is another time), then the
 * source's default for rows to come.
 */
export function addColumnDdl(table: { schema: string; name: string }, c: ColumnShape): string[] {
  const t = qualified(table.schema, table.name);
  const col = quoteIdent(c.name);
  if (c.generated)
    return [`ALTER TABLE ${t} ADD COLUMN ${col} ${c.type} GENERATED ALWAYS AS (${c.default}) STORED`];
  if (c.default === null) return [`ALTER TABLE ${t} ADD COLUMN ${col} ${c.type}`];
  const missing = `(${quoteLiteral(c.missingValue ?? '{}')}::${c.type}[])[1]`;
  return [
    `ALTER TABLE ${t} ADD COLUMN ${col} ${c.type} DEFAULT ${missing}${c.notNull ? ' NOT NULL' : ''}`,
    `ALTER TABLE ${t} ALTER COLUMN ${col} SET DEFAULT ${c.default}`,
  ];
}

/** CREATE TABLE … PARTITION OF as on the source (indexes come from the parent's partitioned ones). */
export const createPartitionDdl = (p: PartitionShape): string =>
  `CREATE TABLE ${qualified(p.schema, p.table)} PARTITION OF ${qualified(p.parentSchema, p.parentTable)} ${p.bound}${
    p.partitionKey ? ` PARTITION BY ${p.partitionKey}` : ''
  }`;
