// Removes what pgferry created on the source: every run's capture (triggers that call into the
// pgferry schema, then the schema with what it holds; publications and replication slots named
// pgferry_*; pgferry's registrations as a Bucardo target), or with a run id only that run's (its
// triggers, functions, log tables, slot, publication, Bucardo track rows and registry rows). A live run's capture (heartbeat younger
// than ALIVE_SECONDS) is never removed without --force: the run could not go on without it.
// Idempotent: a second run finds nothing and says so.
import type pg from 'pg';
import { classify, dbError, PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { qualified, quoteIdent } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q, withClient } from '../shared/db.js';
import { hasKeptTriggers, restoreTriggers } from '../two-way/triggers.js';

import { removeBucardoConsumers } from './bucardo/cleanup.js';
import { dropSlot, logicalObjects } from './logical/slot.js';
import { foreignObjects, OWN_FUNCTION, OWN_RELATION } from './own-objects.js';
import {
  ALIVE_SECONDS,
  CAPTURED_TABLE,
  type CaptureRun,
  describeRun,
  listCaptures,
  RUNS_TABLE,
} from './registry.js';

export interface Removed {
  kind: string;
  name: string;
}

export interface CleanupOptions {
  /** Remove a live run's capture too. */
  force?: boolean;
  /** Only this run's objects; without it, everything. */
  runId?: string;
}

interface Inventory {
  triggers: (Removed & { sql: string })[];
  objects: (Removed & { sql: string | null })[];
  /** What a pgferry schema holds that pgferry did not create: never dropped, so the schema stays. */
  kept: string[];
}

/** What a cleanup of the source removed, and (without a run id) what it kept in the pgferry schema. */
export interface CleanupReport {
  removed: Removed[];
  kept: string[];
}

/** LIKE patterns of one run's functions and log tables (run ids are hex: nothing to escape but _). */
const runPatterns = (runId: string) => ({
  functions: [`capture\\_row\\_${runId}\\_%`, `capture\\_truncate\\_${runId}\\_%`],
  logs: `log\\_${runId}\\_%`,
});

/**
 * Every run's objects: pgferry's tables and functions in its schema, by name (own-objects.ts), then
 * the schema itself unless something else is in it, which is never dropped with it.
 */
async function ownObjects(
  client: pg.Client,
): Promise<{ objects: (Removed & { sql: string })[]; kept: string[] }> {
  const objects = await q<Removed & { sql: string }>(
    client,
    'source',
    `SELECT 'function' AS kind, p.oid::regprocedure::text AS name, format('DROP FUNCTION %s', p.oid::regprocedure) AS sql
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname ~ $3
     UNION ALL
     SELECT 'table', n.nspname || '.' || c.relname, format('DROP TABLE %I.%I', n.nspname, c.relname)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname ~ $2
     ORDER BY 1, 2`,
    [PGFERRY_SCHEMA, OWN_RELATION, OWN_FUNCTION],
  );
  const [schema] = await q<{ exists: boolean }>(
    client,
    'source',
    'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS exists',
    [PGFERRY_SCHEMA],
  );
  const kept = schema?.exists ? await foreignObjects(client, 'source') : [];
  if (schema?.exists && kept.length === 0)
    objects.push({ kind: 'schema', name: PGFERRY_SCHEMA, sql: `DROP SCHEMA ${quoteIdent(PGFERRY_SCHEMA)}` });
  return { objects, kept };
}

async function inventory(client: pg.Client, runId: string | undefined): Promise<Inventory> {
  const fnFilter = runId ? 'AND (p.proname LIKE $2 OR p.proname LIKE $3)' : 'AND p.proname ~ $2';
  const params = runId ? [PGFERRY_SCHEMA, ...runPatterns(runId).functions] : [PGFERRY_SCHEMA, OWN_FUNCTION];
  const triggers = await q<{ name: string; tbl: string; sql: string }>(
    client,
    'source',
    `SELECT t.tgname AS name, t.tgrelid::regclass::text AS tbl,
            format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) AS sql
       FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND NOT t.tgisinternal
        AND t.tgparentid = 0 ${fnFilter}
      ORDER BY 2, 1`,
    params,
  );
  const { objects, kept } = runId
    ? {
        kept: [],
        objects: await q<{ kind: string; name: string; sql: string }>(
          client,
          'source',
          `SELECT 'table' AS kind, n.nspname || '.' || c.relname AS name, format('DROP TABLE %I.%I', n.nspname, c.relname) AS sql
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname LIKE $4
         UNION ALL
         SELECT 'function', p.oid::regprocedure::text, format('DROP FUNCTION %s', p.oid::regprocedure)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND (p.proname LIKE $2 OR p.proname LIKE $3)
          ORDER BY 1, 2`,
          [PGFERRY_SCHEMA, ...runPatterns(runId).functions, runPatterns(runId).logs],
        ),
      }
    : await ownObjects(client);
  return {
    triggers: triggers.map((t) => ({ kind: 'trigger', name: `${t.name} on ${t.tbl}`, sql: t.sql })),
    objects,
    kept,
  };
}

/**
 * The registry rows concerned, locked (FOR UPDATE) until the removal commits: a heartbeat waits
 * for it and then finds its row gone. Throws PGFERRY_CLEANUP_REFUSED for a live one unless forced.
 */
async function lockRuns(client: pg.Client, opts: CleanupOptions): Promise<CaptureRun[]> {
  const [reg] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
    `${PGFERRY_SCHEMA}.${RUNS_TABLE}`,
  ]);
  if (!reg?.ok) return [];
  await q(
    client,
    'source',
    `SELECT run_id FROM ${qualified(PGFERRY_SCHEMA, RUNS_TABLE)} WHERE $1::text IS NULL OR run_id = $1 FOR UPDATE`,
    [opts.runId ?? null],
  );
  const runs = (await listCaptures(client)).filter(
    (r) => r.runId !== null && (opts.runId === undefined || r.runId === opts.runId),
  );
  const live = runs.filter((r) => r.alive);
  if (live.length > 0 && !opts.force) {
    throw new PgferryError(
      'PGFERRY_CLEANUP_REFUSED',
      `${live.map(describeRun).join('; ')}: ${live.length > 1 ? 'these runs are' : 'this run is'} alive (heartbeat less than ${ALIVE_SECONDS}s old), and removing the capture would end ${live.length > 1 ? 'them' : 'it'} for good`,
      { side: 'source' },
    );
  }
  return runs;
}

export async function cleanup(source: ConnInfo, opts: CleanupOptions = {}): Promise<Removed[]> {
  return (await cleanupReport(source, opts)).removed;
}

export async function cleanupReport(source: ConnInfo, opts: CleanupOptions = {}): Promise<CleanupReport> {
  if (opts.runId !== undefined && !/^[0-9a-f]{1,32}$/.test(opts.runId)) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--run ${opts.runId} is not a pgferry run id (hex digits)`,
      {
        side: 'config',
      },
    );
  }
  return withClient(source, 'control', async (client) => {
    // DROP TRIGGER takes an exclusive lock on its table: under lock_timeout, retried, so it never
    // queues in front of the application's queries for long.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query('BEGIN');
        await client.query("SET LOCAL lock_timeout = '2s'");
        // Bucardo's registrations first: an abandoned run's hold Bucardo's purge even with nothing else left.
        const bucardo = await removeBucardoConsumers(client, opts.runId);
        const runs = await lockRuns(client, opts);
        const { triggers, objects, kept } = await inventory(client, opts.runId);
        const logical = await logicalObjects(client, opts.runId);
        if (
          triggers.length === 0 &&
          objects.length === 0 &&
          runs.length === 0 &&
          logical.slots.length === 0 &&
          logical.publications.length === 0 &&
          bucardo.length === 0 &&
          !(await hasKeptTriggers(client, opts.runId))
        ) {
          await client.query('ROLLBACK');
          return { removed: [], kept };
        }
        // Two-way sync's rewritten user triggers get their own definitions back.
        const restored = await restoreTriggers(client, opts.runId);
        for (const t of triggers) await client.query(t.sql);
        for (const p of logical.publications)
          await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(p)}`);
        for (const o of objects) if (o.sql) await client.query(o.sql);
        if (opts.runId) {
          if (runs.length > 0) {
            await client.query(`DELETE FROM ${qualified(PGFERRY_SCHEMA, CAPTURED_TABLE)} WHERE run_id = $1`, [
              opts.runId,
            ]);
            await client.query(`DELETE FROM ${qualified(PGFERRY_SCHEMA, RUNS_TABLE)} WHERE run_id = $1`, [
              opts.runId,
            ]);
          }
        }
        await client.query('COMMIT');
        // A slot cannot be dropped inside a transaction block that wrote: after the commit.
        const slots: Removed[] = [];
        for (const slot of logical.slots) {
          if (await dropSlot(client, slot, opts.force === true))
            slots.push({ kind: 'replication slot', name: slot });
        }
        const removed = [
          ...runs.map((r) => ({ kind: 'run', name: describeRun(r) })),
          ...triggers.map(({ kind, name }) => ({ kind, name })),
          ...objects.map(({ kind, name }) => ({ kind, name })),
          ...logical.publications.map((name) => ({ kind: 'publication', name })),
          ...slots,
          ...bucardo,
          ...restored.map((name) => ({ kind: 'trigger restored', name })),
        ];
        return { removed, kept };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        if (err instanceof PgferryError && err.code === 'PGFERRY_CLEANUP_REFUSED') throw err;
        if (classify(err) === 'retry' && attempt < 10) {
          await sleep(500 * attempt);
          continue;
        }
        throw dbError('source', err, PGFERRY_SCHEMA);
      }
    }
  });
}

/**
 * Every registered run's capture on a database, run by run (reverse replication's, on a run's
 * target): the pgferry schema stays, since a target's run mark lives there too.
 */
export async function cleanupRuns(conn: ConnInfo, opts: CleanupOptions = {}): Promise<Removed[]> {
  const runs = await withClient(conn, 'control', async (client) => {
    const [reg] = await q<{ ok: boolean }>(client, 'source', 'SELECT to_regclass($1) IS NOT NULL AS ok', [
      `${PGFERRY_SCHEMA}.${RUNS_TABLE}`,
    ]);
    return reg?.ok ? await listCaptures(client) : [];
  });
  const removed: Removed[] = [];
  for (const r of runs) {
    if (r.runId === null || (opts.runId !== undefined && r.runId !== opts.runId)) continue;
    removed.push(...(await cleanup(conn, { ...opts, runId: r.runId })));
  }
  return removed;
}
