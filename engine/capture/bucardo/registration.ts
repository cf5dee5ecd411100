// pgferry as one more target of a table in Bucardo's books, under its run's own name. Bucardo's
// purge (bucardo_purge_delta_oid) deletes a txntime's delta rows once the track table holds as
// many rows for it as bucardo_delta_targets names targets for the table: registered there, pgferry
// holds back every delta row it has not applied, and its track rows count towards the purge like
// any target's. Both are kept in step (a registration without its track rows, or track rows
// without their registration, would make the counts lie: delta rows kept forever, or purged before
// a target read them), so every change below writes them in one transaction.
import type pg from 'pg';
import { PgferryError } from '../../../lib/errors.js';
import { qualified, quoteLiteral } from '../../../lib/sql.js';
import { displayName, PGFERRY_SCHEMA, type TableInfo } from '../../shared/catalog.js';
import type { InstallOptions } from '../change-source.js';
import { CAPTURED_TABLE } from '../registry.js';
import { underShortLocks } from '../triggers/triggers.js';
import {
  addTableFix,
  BUCARDO_SCHEMA,
  bucardoGap,
  bucardoRel,
  DELTA_TARGETS,
  inspectTables,
  missingBucardo,
  TRUNCATES,
  TRUNCATES_APPLIED,
  targetName,
  trackTableOf,
} from './bucardo-objects.js';
import { horizon, settled } from './settled.js';

const captured = qualified(PGFERRY_SCHEMA, CAPTURED_TABLE);

/** Truncate rows of a table that a target has not marked applied (`r`: bucardo_truncate_trigger). */
export const unapplied = (target: string) =>
  `NOT EXISTS (SELECT 1 FROM ${bucardoRel(TRUNCATES_APPLIED)} l WHERE l.tablename = r.tablename
       AND l.sync = r.sync AND l.cdate = r.cdate AND l.target = ${quoteLiteral(target)})`;

/** Delta rows (`d`) whose txntime a target has not tracked. */
export const untracked = (track: string, target: string) =>
  `NOT EXISTS (SELECT 1 FROM ${bucardoRel(track)} t WHERE t.txntime = d.txntime AND t.target = ${quoteLiteral(target)})`;

/** Marks every truncate row of a table that the snapshot sees applied by a target. */
export const markTruncates = (oid: number, target: string) =>
  `INSERT INTO ${bucardoRel(TRUNCATES_APPLIED)} (tablename, sname, tname, sync, target, replicated, cdate)
   SELECT DISTINCT r.tablename, r.sname, r.tname, r.sync, ${quoteLiteral(target)}, now(), r.cdate
     FROM ${bucardoRel(TRUNCATES)} r WHERE r.tablename = ${oid} AND ${unapplied(target)}`;

/**
 * The delta table Bucardo writes the table's changes into, once it is sure Bucardo tracks the
 * table fully; PGFERRY_PREFLIGHT_PROBLEMS naming the table and the fix otherwise.
 */
export async function deltaOf(
  client: pg.Client,
  table: TableInfo,
  partitions: TableInfo[],
  key: string[],
): Promise<string> {
  const name = displayName(table);
  const refuse = (why: string, hint: string) =>
    new PgferryError('PGFERRY_PREFLIGHT_PROBLEMS', `${name} ${why}`, { side: 'source', object: name, hint });
  // Bucardo 5 takes ordinary tables only, and a partition's delta table holds that partition's
  // changes alone, where replay takes a partitioned table as one.
  if (table.kind === 'p' || partitions.length > 0)
    throw refuse(
      'is partitioned: Bucardo 5 cannot replicate it',
      'use --capture triggers, or leave it out with --exclude',
    );
  const missing = await missingBucardo(client);
  if (missing.length > 0)
    throw refuse(
      `cannot be read through Bucardo: the source lacks Bucardo 5's ${missing.join(', ')}`,
      addTableFix(name),
    );
  const found = (await inspectTables(client, [table.oid])).get(table.oid);
  const gap = bucardoGap(found, key);
  if (gap || !found?.delta) throw refuse(gap ?? 'has no Bucardo delta table', addTableFix(name));
  return found.delta;
}

/**
 * Registers the run as a target of one table, in one transaction, and lists the table in
 * pgferry.captured. What committed before is in the copy (its snapshots are taken afterwards), so
 * it is marked applied: every truncate, and the delta rows whose txntime is settled (settled.ts;
 * the others are read later, which costs a re-apply and nothing else). A truncate still in flight
 * commits after this snapshot, unmarked: replay applies it, the rows written after it being in the
 * delta table, unmarked too.
 */
export async function registerConsumer(
  client: pg.Client,
  runId: string,
  table: TableInfo,
  delta: string,
  opts: InstallOptions,
): Promise<void> {
  const me = targetName(runId);
  const track = bucardoRel(trackTableOf(delta));
  await underShortLocks(client, displayName(table), opts, 'install', async () => {
    // Waits out a bucardo_purge_delta in progress, which holds this lock from its first read of
    // the targets to its end: one that counted the targets before this registration could still
    // purge, after it, txntimes that only Bucardo's own targets tracked. Nothing of the
    // application's reads it; Bucardo's purge and validate_sync wait a moment.
    await client.query(`LOCK TABLE ${bucardoRel(DELTA_TARGETS)} IN ACCESS EXCLUSIVE MODE`);
    // Read committed: the statements below each take a snapshot later than this horizon.
    const h = await horizon(client);
    await client.query(
      `INSERT INTO ${bucardoRel(DELTA_TARGETS)} (tablename, target) SELECT $1, $2
        WHERE NOT EXISTS (SELECT 1 FROM ${bucardoRel(DELTA_TARGETS)} WHERE tablename = $1 AND target = $2)`,
      [table.oid, me],
    );
    // Marking saves a re-apply, no more: without a full view of the open transactions, none.
    await client.query(
      `INSERT INTO ${track} (txntime, target)
       SELECT DISTINCT d.txntime, $1 FROM ${bucardoRel(delta)} d
        WHERE ${settled('d.txntime', h.complete ? h : null)} AND ${untracked(trackTableOf(delta), me)}`,
      [me],
    );
    await client.query(markTruncates(table.oid, me));
    await client.query(
      `INSERT INTO ${captured} (run_id, relid, schema_name, table_name, log_table) VALUES ($1, $2, $3, $4, $5)`,
      [runId, table.oid, table.schema, table.name, delta],
    );
  });
}

/**
 * Removes the run's registration, track rows and applied truncates of one table, and its
 * pgferry.captured row, in one transaction: Bucardo's purge then goes on without pgferry.
 * Idempotent; Bucardo's objects gone meanwhile are fine.
 */
export async function unregisterConsumer(
  client: pg.Client,
  runId: string,
  table: { schema: string; name: string; oid: number; logTable: string },
  opts: InstallOptions,
): Promise<void> {
  const me = targetName(runId);
  await underShortLocks(client, `${table.schema}.${table.name}`, opts, 'removal', async () => {
    const { rows } = await client.query<{ name: string }>(
      `SELECT n AS name FROM unnest($1::text[]) n WHERE to_regclass(format('%I.%I', $2::text, n)) IS NOT NULL`,
      [[DELTA_TARGETS, TRUNCATES_APPLIED, trackTableOf(table.logTable)], BUCARDO_SCHEMA],
    );
    const present = new Set(rows.map((r) => r.name));
    if (present.has(DELTA_TARGETS))
      await client.query(`DELETE FROM ${bucardoRel(DELTA_TARGETS)} WHERE tablename = $1 AND target = $2`, [
        table.oid,
        me,
      ]);
    if (present.has(TRUNCATES_APPLIED))
      await client.query(
        `DELETE FROM ${bucardoRel(TRUNCATES_APPLIED)} WHERE tablename = $1 AND target = $2`,
        [table.oid, me],
      );
    if (present.has(trackTableOf(table.logTable)))
      await client.query(`DELETE FROM ${bucardoRel(trackTableOf(table.logTable))} WHERE target = $1`, [me]);
    await client.query(`DELETE FROM ${captured} WHERE run_id = $1 AND relid = $2`, [runId, table.oid]);
  });
}
