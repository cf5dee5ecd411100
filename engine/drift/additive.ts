// The changes pgferry applies to the target itself: a partition new on the source (always: its
// rows cannot be applied without it) and, with --drift additive, a column new on the source that
// every existing row reads alike on both sides once added (compare.ts additiveColumn).
import type pg from 'pg';
import type { CaptureRecord } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { qualified, quoteIdent, quoteLiteral } from '../../lib/sql.js';
import type { ChangeSourceKind } from '../capture/change-source.js';
import { capturePartition } from '../capture/triggers/triggers.js';
import { q } from '../shared/db.js';
import type { Difference, TablePair } from './compare.js';
import type { DriftMode } from './modes.js';
import type { ColumnShape, PartitionShape, TableShape } from './shape.js';

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

export interface ApplyContext {
  src: pg.Client;
  dst: pg.Client;
  runId: string;
  mode: DriftMode;
  /** The run's change source: only the trigger log can be given a partition's existing rows. */
  capture: ChangeSourceKind;
  note: (level: 'info' | 'warn', message: string) => void;
}

/** Applies new partitions (always) and additive columns (--drift additive); true when it changed anything. */
export async function applyOwn(
  ctx: ApplyContext,
  captures: CaptureRecord[],
  pairs: TablePair[],
  diffs: Difference[],
): Promise<boolean> {
  const { dst, src } = ctx;
  let changed = false;
  for (const p of pairs) {
    if (!p.source || !p.target) continue;
    const source: TableShape = p.source;
    const mine = diffs.filter((d) => d.table === `${source.schema}.${source.name}` && d.additive);
    for (const d of mine) {
      if (d.kind === 'partition-missing-on-target') {
        const part = source.partitions.find((x) => x.name === d.partition)!;
        await onTarget(dst, [createPartitionDdl(part)], d);
        const c = captures.find((x) => x.oid === p.oid)!;
        if (ctx.capture !== 'triggers') {
          // Its later changes stream; the rows it held when attached were never a change.
          const [held] = await q<{ n: number }>(
            src,
            'source',
            `SELECT count(*)::int AS n FROM ${qualified(part.schema, part.table)}`,
          );
          ctx.note(
            held?.n ? 'warn' : 'info',
            held?.n
              ? `${d.message}: created on the target, but its ${held.n} rows from before it was attached are not in the ${ctx.capture} change stream: run \`pgferry tables remove ${c.schema}.${c.name}\` then \`pgferry tables add ${c.schema}.${c.name}\` to copy the table again`
              : `${d.message}: created on the target`,
          );
          changed = true;
          continue;
        }
        const logged = await capturePartition(
          src,
          {
            runId: ctx.runId,
            schema: c.schema,
            name: c.name,
            oid: c.oid,
            logTable: c.logTable,
            key: JSON.parse(c.keyColumns) as { name: string; type: string }[],
            partitioned: true,
          },
          { schema: part.schema, name: part.table },
        );
        ctx.note(
          'info',
          `${d.message}: created on the target${logged ? `, its ${logged} existing rows queued for replay` : ''}`,
        );
        changed = true;
      } else if (d.kind === 'column-missing-on-target' && ctx.mode === 'additive') {
        const col = source.columns.find((x) => x.name === d.column)!;
        await onTarget(dst, addColumnDdl({ schema: source.schema, name: source.name }, col), d);
        ctx.note('info', `${d.message}: added to the target (--drift additive)`);
        changed = true;
      }
    }
  }
  return changed;
}

async function onTarget(dst: pg.Client, statements: string[], d: Difference): Promise<void> {
  try {
    await dst.query(['BEGIN', ...statements, 'COMMIT'].join(';\n'));
  } catch (err) {
    await dst.query('ROLLBACK').catch(() => {});
    throw new PgferryError(
      'PGFERRY_SCHEMA_DRIFT',
      `${d.message}: pgferry could not apply it to the target: ${(err as Error).message}`,
      {
        side: 'target',
        object: d.table,
        cause: err,
      },
    );
  }
}
