// Sequences carry no rows: their positions are copied separately. Reading a sequence is not
// transactional (a snapshot does not freeze it), so the value read is at least the one any copied
// row saw: the target's next value can never collide with a copied key.
import type pg from 'pg';
import { qualified } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export interface SequenceValue {
  schema: string;
  name: string;
  lastValue: string;
  isCalled: boolean;
}

/** Sequences read per statement on the source. */
const READ_AT_ONCE = 500;

/** Every sequence on the target (the ones the schema created), set to the source's position. */
export async function syncSequences(source: pg.Client, target: pg.Client): Promise<SequenceValue[]> {
  const seqs = await q<{ schema: string; name: string }>(
    target,
    'target',
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1, 2`,
    [PGFERRY_SCHEMA],
  );
  if (seqs.length === 0) return [];
  // Every source position in one statement, every target set in one: two round trips however
  // many sequences there are (the cutover sets them while writes are frozen).
  const values: { i: number; last_value: string; is_called: boolean }[] = [];
  for (let from = 0; from < seqs.length; from += READ_AT_ONCE) {
    const sql = seqs
      .slice(from, from + READ_AT_ONCE)
      .map(
        (s, j) => `SELECT ${from + j} AS i, last_value::text, is_called FROM ${qualified(s.schema, s.name)}`,
      )
      .join(' UNION ALL ');
    values.push(...(await q<(typeof values)[number]>(source, 'source', sql)));
  }
  values.sort((a, b) => a.i - b.i);
  const done: SequenceValue[] = values.map((v) => {
    const s = seqs[v.i]!;
    return { schema: s.schema, name: s.name, lastValue: v.last_value, isCalled: v.is_called };
  });
  await q(
    target,
    'target',
    `SELECT pg_catalog.setval(n::regclass, v, c) FROM unnest($1::text[], $2::bigint[], $3::boolean[]) AS u(n, v, c)`,
    [done.map((d) => qualified(d.schema, d.name)), done.map((d) => d.lastValue), done.map((d) => d.isCalled)],
  );
  return done;
}
