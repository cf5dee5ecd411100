// Bucardo 5's objects on a source database, named the way Bucardo names them, and what pgferry
// finds of them for a table. Bucardo's validate_sync gives each table of a sync whose source is
// this database a row trigger `bucardo_delta` writing the key of every changed row (the old and
// the new key when an UPDATE changes it) and `txntime` (now(): the writing transaction's start)
// into bucardo.delta_<name>, a track table bucardo.track_<name> (txntime, target) where each target
// marks the txntimes it has applied, and a statement trigger per sync calling
// bucardo.bucardo_note_truncation, which records a TRUNCATE in bucardo.bucardo_truncate_trigger
// and empties the delta and track tables. <name> is bucardo.bucardo_tablename_maker(schema_table)
// with its quotes removed (Bucardo.pm does exactly that): schema_table itself up to 57 characters,
// else its first 46, '!' and 10 hex digits of its md5; PostgreSQL clips both names at the same
// byte (NAMEDATALEN), so the track table's name always follows from the delta table's.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { qualified } from '../../../lib/sql.js';
import { BUCARDO_SCHEMA } from '../../shared/catalog.js';
import { q } from '../../shared/db.js';

export { BUCARDO_SCHEMA };
/** Who reads each table's deltas: bucardo_purge_delta keeps a txntime until every target tracked it. */
export const DELTA_TARGETS = 'bucardo_delta_targets';
/** One row per TRUNCATE and per sync whose trigger saw it (sync, cdate: the truncating transaction's start). */
export const TRUNCATES = 'bucardo_truncate_trigger';
/**
 * The truncates each target applied. Bucardo 5 creates it beside bucardo_truncate_trigger but
 * never writes or reads it (5.6 marks its own syncs' truncates in bucardo_truncate_trigger.replicated);
 * pgferry records there, under its target name, the truncates it has applied.
 */
export const TRUNCATES_APPLIED = 'bucardo_truncate_trigger_log';

export const bucardoRel = (name: string): string => qualified(BUCARDO_SCHEMA, name);

/** pgferry's target name in Bucardo's tables: Bucardo's own are 'dbgroup <name>', so none can clash. */
export const targetName = (runId: string): string => `pgferry_${runId}`;
/** Every run's target (a run id is hex digits), as a POSIX regular expression. */
export const ANY_TARGET = '^pgferry_[0-9a-f]+$';

/**
 * The delta table Bucardo writes a table's changes into, computed as Bucardo computes it
 * (bucardo_tablename_maker on "schema_table", quotes removed) and clipped as PostgreSQL clips an
 * identifier (63 bytes, at a character boundary). inspectTables asks the source's own function.
 */
export function deltaTableName(schema: string, name: string): string {
  const full = `${schema}_${name}`.replaceAll('.', '_');
  const chars = [...full];
  const short =
    chars.length <= 57
      ? full
      : `${chars.slice(0, 46).join('')}!${createHash('md5').update(full, 'utf8').digest('hex').slice(0, 10)}`;
  let out = '';
  for (const ch of `delta_${short.replaceAll('"', '')}`) {
    if (Buffer.byteLength(out + ch, 'utf8') > 63) break;
    out += ch;
  }
  return out;
}

export const trackTableOf = (deltaTable: string): string => `track_${deltaTable.slice('delta_'.length)}`;

/** What Bucardo keeps for one table on the source: its delta and track tables and its triggers. */
export interface BucardoTable {
  oid: number;
  /** Relation names in the bucardo schema (null: missing). */
  delta: string | null;
  track: string | null;
  deltaTrigger: boolean;
  truncateTrigger: boolean;
  /** The delta table's columns: the key Bucardo records (txntime aside). */
  deltaColumns: string[];
}

/** The Bucardo 5 objects pgferry relies on that the source lacks (none: an empty list). */
export async function missingBucardo(client: pg.Client): Promise<string[]> {
  const rows = await q<{ what: string }>(
    client,
    'source',
    `SELECT w.what FROM (VALUES
        ('schema ${BUCARDO_SCHEMA}', to_regnamespace('${BUCARDO_SCHEMA}') IS NOT NULL),
        ('function ${BUCARDO_SCHEMA}.bucardo_tablename_maker(text)',
          to_regprocedure('${BUCARDO_SCHEMA}.bucardo_tablename_maker(text)') IS NOT NULL),
        ('table ${BUCARDO_SCHEMA}.${DELTA_TARGETS} (tablename, target)',
          (SELECT count(*) = 2 FROM pg_attribute WHERE attrelid = to_regclass('${BUCARDO_SCHEMA}.${DELTA_TARGETS}')
              AND attname IN ('tablename', 'target') AND NOT attisdropped)),
        ('table ${BUCARDO_SCHEMA}.${TRUNCATES}', to_regclass('${BUCARDO_SCHEMA}.${TRUNCATES}') IS NOT NULL),
        ('table ${BUCARDO_SCHEMA}.${TRUNCATES_APPLIED}', to_regclass('${BUCARDO_SCHEMA}.${TRUNCATES_APPLIED}') IS NOT NULL)
      ) AS w(what, present) WHERE NOT w.present`,
  );
  return rows.map((r) => r.what);
}

/**
 * Bucardo's objects of these tables (by oid), found the way Bucardo names them. A trigger counts
 * when it fires for the application's writes: not disabled ('D'), nor replica-only ('R'). Needs
 * bucardo.bucardo_tablename_maker (missingBucardo first).
 */
export async function inspectTables(client: pg.Client, oids: number[]): Promise<Map<number, BucardoTable>> {
  const rows = await q<BucardoTable>(
    client,
    'source',
    `SELECT c.oid::int AS oid, d.relname AS delta, k.relname AS track,
            EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'bucardo_delta'
                       AND g.tgenabled IN ('O', 'A')) AS "deltaTrigger",
            EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
                     WHERE g.tgrelid = c.oid AND p.proname = 'bucardo_note_truncation'
                       AND p.pronamespace = '${BUCARDO_SCHEMA}'::regnamespace AND g.tgenabled IN ('O', 'A')) AS "truncateTrigger",
            coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = d.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') AS "deltaColumns"
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_class d ON d.oid = to_regclass(format('%I.%I', '${BUCARDO_SCHEMA}',
              'delta_' || replace(${BUCARDO_SCHEMA}.bucardo_tablename_maker(n.nspname || '_' || c.relname), '"', '')))
       LEFT JOIN pg_class k ON k.oid = to_regclass(CASE WHEN d.relname IS NOT NULL
              THEN format('%I.%I', '${BUCARDO_SCHEMA}', 'track_' || substr(d.relname, 7)) END)
      WHERE c.oid = ANY ($1::oid[])`,
    [oids],
  );
  return new Map(rows.map((r) => [r.oid, r]));
}

/** What keeps a table from being read through Bucardo, in words (null: nothing). */
export function bucardoGap(b: BucardoTable | undefined, key: string[]): string | null {
  if (!b?.deltaTrigger || !b.delta || !b.track)
    return 'has no Bucardo delta trigger and delta/track tables (it is in no Bucardo sync whose source is this database)';
  if (!b.truncateTrigger)
    return 'has no Bucardo truncate trigger (bucardo.bucardo_note_truncation): its TRUNCATEs would go unseen';
  const missing = key.filter((k) => !b.deltaColumns.includes(k));
  if (missing.length > 0)
    return `has a Bucardo delta table (${BUCARDO_SCHEMA}.${b.delta}) that does not record its primary key column(s) ${missing.join(', ')}`;
  return null;
}

/** The fix for a table Bucardo does not track. */
export const addTableFix = (table: string): string =>
  `add the table to a Bucardo sync whose source is this database: bucardo add table ${table} db=<source db> relgroup=<the sync's relgroup>, then bucardo validate <sync> (or use --capture triggers, or leave the table out with --exclude)`;
