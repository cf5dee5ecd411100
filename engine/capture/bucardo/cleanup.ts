// `pgferry cleanup`'s part in Bucardo's tables: pgferry's registrations as a target, its track
// rows and its applied truncates, of one run or (no run id) of every pgferry run, removed together
// so that Bucardo's purge counts stay true (registration.ts). Bucardo's own rows and objects are
// never touched.
import type pg from 'pg';
import { q } from '../../shared/db.js';
import type { Removed } from '../cleanup.js';
import {
  ANY_TARGET,
  BUCARDO_SCHEMA,
  bucardoRel,
  DELTA_TARGETS,
  TRUNCATES_APPLIED,
  targetName,
} from './bucardo-objects.js';

/**
 * Removes, inside the caller's open transaction, the run's (or every run's) rows from Bucardo's
 * tables; nothing on a source without a bucardo schema. Lists what it removed.
 */
export async function removeBucardoConsumers(
  client: pg.Client,
  runId: string | undefined,
): Promise<Removed[]> {
  const [schema] = await q<{ ok: boolean }>(
    client,
    'source',
    'SELECT to_regnamespace($1) IS NOT NULL AS ok',
    [BUCARDO_SCHEMA],
  );
  if (!schema?.ok) return [];
  // Exactly the run's target, or any pgferry target (hex run ids): never one of Bucardo's.
  const mine = runId === undefined ? `target ~ '${ANY_TARGET}'` : 'target = $1';
  const params = runId === undefined ? [] : [targetName(runId)];
  const removed: Removed[] = [];
  // Track tables are Bucardo's track_* tables with its (txntime, target) columns, whether or not
  // a registration still points at them.
  const tables = await q<{ name: string }>(
    client,
    'source',
    `SELECT c.relname AS name FROM pg_class c
      WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'
        AND (c.relname = ANY ($2::text[]) OR (c.relname LIKE 'track\\_%'
             AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname IN ('txntime', 'target')
                     AND NOT a.attisdropped) = 2))
      ORDER BY c.relname`,
    [BUCARDO_SCHEMA, [DELTA_TARGETS, TRUNCATES_APPLIED]],
  );
  for (const { name } of tables) {
    if (name === DELTA_TARGETS) {
      const rows = await q<{ target: string; tbl: string }>(
        client,
        'source',
        `DELETE FROM ${bucardoRel(name)} WHERE ${mine} RETURNING target, tablename::regclass::text AS tbl`,
        params,
      );
      for (const r of rows) removed.push({ kind: 'bucardo target', name: `${r.target} of ${r.tbl}` });
      continue;
    }
    const [res] = await q<{ n: number }>(
      client,
      'source',
      `WITH gone AS (DELETE FROM ${bucardoRel(name)} WHERE ${mine} RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      params,
    );
    if (res?.n) {
      const what = name === TRUNCATES_APPLIED ? 'applied truncates' : 'track rows';
      removed.push({ kind: `bucardo ${what}`, name: `${res.n} in ${BUCARDO_SCHEMA}.${name}` });
    }
  }
  return removed;
}
