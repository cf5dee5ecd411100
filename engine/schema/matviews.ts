// Materialized views are created WITH NO DATA by the schema step (their data is not schema).
// They are refreshed on the target once the tables they read are complete. A view that reads
// another materialized view must wait for that one: views are refreshed in passes, each pass
// taking those whose dependencies are populated, until all are done.
import type pg from 'pg';
import { PgferryError, sqlstateOf } from '../../lib/errors.js';
import { qualified } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

// 55000 object_not_in_prerequisite_state: "materialized view ... has not been populated".
const NOT_POPULATED = '55000';

export async function refreshMatviews(source: pg.Client, target: pg.Client): Promise<string[]> {
  // Only views that are populated on the source: one left WITH NO DATA there stays so.
  const wanted = await q<{ schema: string; name: string }>(
    source,
    'source',
    `SELECT schemaname AS schema, matviewname AS name FROM pg_matviews
      WHERE ispopulated AND schemaname NOT IN ('pg_catalog', 'information_schema', $1) ORDER BY 1, 2`,
    [PGFERRY_SCHEMA],
  );
  const present = new Set(
    (
      await q<{ name: string }>(
        target,
        'target',
        "SELECT schemaname || '.' || matviewname AS name FROM pg_matviews",
      )
    ).map((r) => r.name),
  );
  let pending = wanted.filter((m) => present.has(`${m.schema}.${m.name}`));
  const done: string[] = [];
  while (pending.length > 0) {
    const waiting: typeof pending = [];
    let lastError: unknown;
    for (const m of pending) {
      try {
        await target.query(`REFRESH MATERIALIZED VIEW ${qualified(m.schema, m.name)}`);
        done.push(`${m.schema}.${m.name}`);
      } catch (err) {
        if (sqlstateOf(err) !== NOT_POPULATED) throw refreshError(m, err);
        waiting.push(m);
        lastError = err;
      }
    }
    if (waiting.length === pending.length) throw refreshError(waiting[0]!, lastError);
    pending = waiting;
  }
  return done;
}

function refreshError(m: { schema: string; name: string }, err: unknown): PgferryError {
  const state = sqlstateOf(err);
  return new PgferryError(
    'PGFERRY_TARGET_QUERY',
    `REFRESH MATERIALIZED VIEW ${m.schema}.${m.name}: ${(err as Error)?.message}${state ? ` (SQLSTATE ${state})` : ''}`,
    { side: 'target', object: `${m.schema}.${m.name}`, sqlstate: state, cause: err },
  );
}
