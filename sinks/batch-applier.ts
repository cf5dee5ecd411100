// Applies one replay batch of one table to the target, in one target transaction: truncates
// first, then the batch's rows. Staged (one stream: every key's row and whether it still exists,
// copied into a temporary table): gone rows deleted, the others upserted on the primary key
// (existing ones updated in place, new ones inserted). Where the upsert is refused (two rows
// swapping a UNIQUE value in one statement), and
// for two streams (`DELETE … USING` the keys, then the current rows copied straight into the
// table): every key deleted before the rows are inserted, which never violates a secondary
// UNIQUE constraint. Applying the same batch twice leaves the same result: replay is idempotent.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { sqlstateOf } from '../lib/errors.js';
import { freeName, logColumns } from '../lib/log-columns.js';
import { qualified, quoteIdent, rollbackQuietly } from '../lib/sql.js';
import { CopyPipeError, pipeCopy } from './copy-pipe.js';
import {
  deleteStagedSql,
  insertMissingSql,
  insertPresentSql,
  type StagedNames,
  updatePresentSql,
  upsertPresentSql,
} from './staged-sql.js';
import { type Conflict, resolveConflicts, type TwoWayBatch, upsertStaged } from './two-way-apply.js';

export interface ApplyTable {
  schema: string;
  name: string;
  oid: number;
  key: { name: string; type: string }[];
  /** Written columns (generated columns left out). */
  columns: string[];
  format: 'binary' | 'text';
  keyFormat: 'binary' | 'text';
  /** A partitioned table: its deletes reach its partitions, which are not captured on their own. */
  partitioned: boolean;
  /** The signature of the columns above on the source (engine/drift/shape.ts), once a drift check read it. */
  columnsSig?: string;
}

export interface BatchSources {
  /** COPY … TO STDOUT of the batch's distinct keys, on the source, in the batch's snapshot. */
  keysOut: string;
  /** COPY … TO STDOUT of the current rows of those keys, same snapshot. */
  rowsOut: string;
  /**
   * Instead of both, for a small batch: one COPY … TO STDOUT of every key's row (stagedColumns),
   * its key columns always set, the others null where the row is gone, and a last boolean column
   * true where the row exists. The source then reads the change log once instead of twice; the
   * target stages the rows in a temporary table (engine/replay/table-batch.ts decides).
   */
  stagedOut?: string;
  /** Relations truncated on the source within the batch (qualified names as the source wrote them). */
  truncates: string[];
  /**
   * Two-way sync (two-way-apply.ts): stagedOut then carries a last column more, each key's last
   * change time on the sending side; conflicts are resolved and rows upserted.
   */
  twoWay?: TwoWayBatch;
  /** The caller keeps row counts (the cutover's ledger): the result must tell inserts from updates. */
  exactCounts?: boolean;
}

const fmt = (f: 'binary' | 'text') => (f === 'binary' ? ' WITH (FORMAT binary)' : '');

/**
 * A staged row could not be held (a column of a domain type that refuses NULL, which a gone row's
 * columns are): the table is applied with two streams from now on.
 */
export class StageRefused extends Error {
  constructor(override readonly cause: unknown) {
    super((cause as Error)?.message ?? String(cause));
  }
}

/**
 * The session's temporary table `name` (quoted), created once per session from `select` (WITH NO DATA),
 * emptied at each commit. CREATE TABLE AS keeps each column's type, typmod and collation but none
 * of its NOT NULL constraints: a staged gone row's columns can be null.
 */
async function ensureTemp(
  target: pg.Client,
  ready: Set<string>,
  name: string,
  select: string,
): Promise<void> {
  if (ready.has(name)) return;
  await target.query(
    `CREATE TEMP TABLE IF NOT EXISTS ${name} ON COMMIT DELETE ROWS AS ${select} WITH NO DATA`,
  );
  ready.add(name);
}

export interface ApplyResult {
  keys: number;
  rows: number;
  /** Rows the batch's DELETE removed (with `rows`, the table's row count change; truncates aside). */
  deleted: number;
  /** False when rows − deleted is not the row count change (an upsert does not tell inserts from updates). */
  exact: boolean;
  bytes: number;
  /** Two-way: the keys changed on both sides, each with the side whose version stays. */
  conflicts?: Conflict[];
}

/**
 * Runs inside the caller's source transaction (which holds the batch's snapshot) and commits the
 * target transaction; the caller then deletes the consumed log rows and commits the source, so a
 * crash in between only means the batch is applied again. A staged batch upserts its rows (or,
 * for exact counts, updates the rows that exist and inserts the others); one that is refused is
 * applied again by delete and insert (REPLACE_ON).
 */
export async function applyBatch(
  source: pg.Client,
  target: pg.Client,
  t: ApplyTable,
  batch: BatchSources,
  ready: Set<string>,
): Promise<ApplyResult> {
  const staged = batch.stagedOut !== undefined && !batch.twoWay;
  if (staged && !replaceOnly.has(t.oid) && nonKeyColumns(t).length > 0) {
    try {
      return await applyOnce(source, target, t, batch, ready, batch.exactCounts ? 'update' : 'upsert');
    } catch (err) {
      const state = sqlstateOf(err) ?? '';
      if (!REPLACE_ON.has(state)) throw err;
      if (REPLACE_ALWAYS.has(state)) replaceOnly.add(t.oid);
    }
  }
  return applyOnce(source, target, t, batch, ready, 'replace');
}

/** The columns an update sets: every written one but the key's. */
/** Key types whose equal values are equal bytes, and that an identity column may have. */
const ONE_SPELLING = new Set(['smallint', 'integer', 'bigint']);

const nonKeyColumns = (t: ApplyTable): string[] => t.columns.filter((c) => !t.key.some((k) => k.name === c));

/** Tables (oids) that an update can never write (REPLACE_ALWAYS): replaced from their first refusal on. */
const replaceOnly = new Set<number>();

/**
 * What an in-place update or upsert may refuse where deleting every key first does not: two rows
 * swapping a UNIQUE value (23505) or an excluded range (23P01) in one statement; and, for good
 * (REPLACE_ALWAYS), an identity column GENERATED ALWAYS, which an UPDATE may only set to DEFAULT
 * (428C9), a DEFERRABLE primary key, which ON CONFLICT cannot use (55000), or a server that cannot
 * upsert into the table (0A000: ON CONFLICT on a partitioned table before PostgreSQL 11). And no
 * primary key to upsert on (42P10): a partitioned table's, on the target, is attached from its
 * partitions' only after replay's first catch-up.
 */
const REPLACE_ALWAYS = new Set(['428C9', '55000', '0A000']);
const REPLACE_ON = new Set(['23505', '23P01', '42P10', ...REPLACE_ALWAYS]);

async function applyOnce(
  source: pg.Client,
  target: pg.Client,
  t: ApplyTable,
  batch: BatchSources,
  ready: Set<string>,
  method: 'upsert' | 'update' | 'replace',
): Promise<ApplyResult> {
  const table = qualified(t.schema, t.name);
  const keyCols = t.key.map((k) => quoteIdent(k.name));
  const cols = t.columns.map(quoteIdent).join(', ');
  const staged = batch.stagedOut !== undefined;
  const present = quoteIdent(freeName('pgferry_present', t.columns));
  // The batch's keys: a table of the key columns, or (staged) of every key's row and its flag.
  // Named for the columns too: a session's temporary table outlives a change of the table's shape.
  const twoWay = staged ? batch.twoWay : undefined;
  const at = quoteIdent(freeName('pgferry_at', t.columns));
  const shape = createHash('md5')
    .update(`${cols}|${keyCols.join(',')}|${t.columnsSig ?? ''}|${twoWay ? 'two-way' : ''}`)
    .digest('hex')
    .slice(0, 8);
  const temp = quoteIdent(staged ? `pgferry_stage_${t.oid}_${shape}` : `pgferry_keys_${t.oid}_${shape}`);
  await ensureTemp(
    target,
    ready,
    temp,
    staged
      ? `SELECT ${cols}, true AS ${present}${twoWay ? `, now() AS ${at}` : ''} FROM ${table}`
      : `SELECT ${keyCols.join(', ')} FROM ${table}`,
  );
  // Without truncates the transaction begins in the COPY's own query string ("BEGIN; COPY …"):
  // one round trip and one socket write fewer per batch (pg-copy-streams takes BEGIN's
  // CommandComplete in its stride: only "COPY n" sets its row count).
  const begun = batch.truncates.length > 0;
  if (begun) await target.query('BEGIN');
  try {
    for (const rel of batch.truncates) {
      // The name was written by pgferry's own trigger with format('%I.%I'); resolving it on the
      // target both validates it and yields the canonical quoted name.
      const { rows } = await target.query<{ name: string | null; kind: string | null }>(
        'SELECT to_regclass($1)::text AS name, (SELECT relkind FROM pg_class WHERE oid = to_regclass($1)) AS kind',
        [rel],
      );
      // Every table a source TRUNCATE reaches logs its own (inheritance children included), so
      // each is replayed ONLY: a parent's replay never empties a child. A partitioned table cannot
      // be truncated ONLY; its partitions are not captured on their own.
      if (rows[0]?.name) await target.query(`TRUNCATE ${rows[0].kind === 'p' ? '' : 'ONLY '}${rows[0].name}`);
    }
    const keys = await pipeCopy({
      source,
      target,
      copyOut: staged ? (batch.stagedOut as string) : batch.keysOut,
      copyIn: `${begun ? '' : 'BEGIN; '}${
        staged
          ? `COPY ${temp} (${cols}, ${present}${twoWay ? `, ${at}` : ''}) FROM STDIN${fmt(t.format)}`
          : `COPY ${temp} (${keyCols.join(', ')}) FROM STDIN${fmt(t.keyFormat)}`
      }`,
    }).catch((err: unknown) => {
      // 23502 not_null_violation, 23514 check_violation: a domain refused a gone row's null.
      const state = err instanceof CopyPipeError ? sqlstateOf(err.cause) : undefined;
      throw staged && (state === '23502' || state === '23514') ? new StageRefused(err) : err;
    });
    const match =
      keyCols.length === 1
        ? `pgferry_t.${keyCols[0]} = pgferry_k.${keyCols[0]}`
        : `(${keyCols.map((c) => `pgferry_t.${c}`).join(', ')}) = (${keyCols.map((c) => `pgferry_k.${c}`).join(', ')})`;
    // ONLY: an inheritance parent's batch must not delete (or lock) its children's rows with the same key.
    const from = `${t.partitioned ? '' : 'ONLY '}${table}`;
    const names: StagedNames = {
      table,
      from,
      temp,
      present,
      keyCols,
      match,
      cols,
      nonKeyCols: nonKeyColumns(t).map(quoteIdent),
      respelledKeyCols: t.key.filter((k) => !ONE_SPELLING.has(k.type)).map((k) => quoteIdent(k.name)),
      atCol: at,
      log: logColumns(t.key),
    };
    if (twoWay) {
      const conflicts = await resolveConflicts(target, names, twoWay);
      const applied = await upsertStaged(target, names, twoWay, conflicts);
      await target.query('COMMIT');
      return {
        keys: keys.rows,
        rows: applied.rows,
        deleted: applied.deleted,
        bytes: keys.bytes,
        exact: true,
        conflicts,
      };
    }
    // The caller's session plans it as one primary-key probe per key (engine/replay/sessions.ts).
    const deleteKeys = deleteStagedSql(names, false);
    // One round trip for the rest of a staged batch: a failing statement ends the string there (the
    // COMMIT is not run), and the catch below rolls back (so its callers return it awaited).
    const deleteThenInsert = async (del: string, ins: string, exact: boolean): Promise<ApplyResult> => {
      const [d, i] = (await target.query(`${del};\n${ins};\nCOMMIT`)) as unknown as pg.QueryResult[];
      return { keys: keys.rows, rows: i?.rowCount ?? 0, deleted: d?.rowCount ?? 0, bytes: keys.bytes, exact };
    };
    if (method === 'upsert') {
      // One pass over the staged rows: each is inserted, or updates the row with its key (one
      // probe and one new row version, heap-only where the page has room). An UPDATE … FROM then
      // an INSERT … WHERE NOT EXISTS probe the key twice (measured on 49,000 rows of a 2 M-row
      // pgbench_accounts: 225–249 ms against 361–436 ms). Gone rows are deleted first, so a UNIQUE
      // value freed by one row can be taken by another.
      return await deleteThenInsert(deleteStagedSql(names, true), upsertPresentSql(names), false);
    }
    if (method === 'update') {
      // The rows that exist are updated in place: one probe and one new row version per key (a
      // heap-only one where the page has room, with no new index entry), where a delete and an
      // insert cost two probes, two WAL records and a dead index entry (measured on pgbench_accounts:
      // 1.6× faster). Gone rows are deleted first and new ones inserted last, so a UNIQUE value
      // freed by one row can be taken by another; all in one round trip, as above.
      const [gone, updated, inserted] = (await target.query(
        `${deleteStagedSql(names, true)};\n${updatePresentSql(names)};\n${insertMissingSql(names)};\nCOMMIT`,
      )) as unknown as pg.QueryResult[];
      const u = updated?.rowCount ?? 0;
      // Counted as a replace would count them (the ledger's row count change is rows − deleted).
      return {
        keys: keys.rows,
        rows: u + (inserted?.rowCount ?? 0),
        deleted: u + (gone?.rowCount ?? 0),
        bytes: keys.bytes,
        exact: true,
      };
    }
    if (staged) return await deleteThenInsert(deleteKeys, insertPresentSql(names), true);
    const deleted = await target.query(deleteKeys);
    // Every key of the batch is gone from the table now, so the current rows are copied straight
    // into it (no staging table: one write per row). COPY writes identity GENERATED ALWAYS columns
    // as given, and routes rows of a partitioned table to their partitions.
    const rows = await pipeCopy({
      source,
      target,
      copyOut: batch.rowsOut,
      copyIn: `COPY ${table} (${cols}) FROM STDIN${fmt(t.format)}`,
    });
    await target.query('COMMIT');
    return {
      keys: keys.rows,
      rows: rows.rows,
      deleted: deleted.rowCount ?? 0,
      bytes: keys.bytes + rows.bytes,
      exact: true,
    };
  } catch (err) {
    await rollbackQuietly(target);
    throw err;
  }
}
