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
  const done: SequenceValue[] = [];
  for (const s of seqs) {
    const name = qualified(s.schema, s.name);
    const [row] = await q<{ last_value: string; is_called: boolean }>(
      source,
      'source',
      `SELECT last_value::text, is_called FROM ${name}`,
      [],
      `${s.schema}.${s.name}`,
    );
    if (!row) continue;
    await q(
      target,
      'target',
      'SELECT pg_catalog.setval($1::regclass, $2::bigint, $3)',
      [name, row.last_value, row.is_called],
      `${s.schema}.${s.name}`,
    );
    done.push({ schema: s.schema, name: s.name, lastValue: row.last_value, isCalled: row.is_called });
  }
  return done;
}
