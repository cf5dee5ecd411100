// The change source: where replay gets the changes made on the source since capture went on:
// the trigger capture (triggers/), Bucardo's delta and track tables (bucardo/), or logical
// decoding with pgoutput (logical/). sources.ts builds the run's one.
//
// A source hands replay, per table, a batch: how many changes, how old the oldest, the relations
// truncated, and a query of the changed keys that replay joins with the table in the same
// snapshot (one join streamed by COPY, never a lookup per key). Replay writes current state: it
// deletes the batch's keys on the target and copies the rows those keys have now, so a change
// need not carry its row, and applying a batch twice leaves the target as applying it once.
//
// Every source guarantees:
// - No change is lost: a change committed on the source after install() returned for its table
//   is in some later readBatch() of that table (or of the slice holding its key), until consumed.
// - Re-reading is idempotent: until consume(), reading again returns the same changes or a
//   superset of them; consume() removes exactly what the batch read, never a change committed
//   after the read's snapshot (a transaction that took an early position and commits late is
//   simply in a later batch: never "everything after the last position seen").
// - Consumption follows the target: consume() is called only after the target transaction that
//   applied the batch committed; a crash in between leaves the batch to be read and applied again.
// - Visibility: a batch is what one REPEATABLE READ snapshot of the source sees (trigger and
//   Bucardo sources), or a range of a slot's stream read with the rows at a snapshot no older
//   than its end (logical): the keys' current rows read in the same transaction are at least as
//   new as every change in the batch.
// - Concurrency: reads of one table run at once only for disjoint slices, each in a transaction of
//   its own, and each consume removes only its own slice's changes. A TRUNCATE is in every
//   slice's range, so a slice never applies across one (it reads nothing: SLICE_TRUNCATED).
// - Restarts: nothing of a source lives in pgferry's process (the trigger logs are tables, a slot
//   keeps its confirmed position); after a restart (any crash) the same source, built again from
//   the checkpoint store, returns every change not yet consumed.
import type pg from 'pg';
import type { Logger } from 'pino';
import { PgferryError } from '../../lib/errors.js';
import type { TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import type { Removed } from './cleanup.js';

export const CHANGE_SOURCE_KINDS = ['triggers', 'bucardo', 'logical'] as const;
export type ChangeSourceKind = (typeof CHANGE_SOURCE_KINDS)[number];

/** A captured table as a change source knows it: name, oid, and primary key (columns and types). */
/**
 * A key column's type with its collation, for a log's column or a cast: DISTINCT keys and their
 * order are then the table's (under a case-insensitive collation 'A' and 'a' are one key).
 */
export const keyType = (k: { type: string; collation?: string }): string =>
  k.collation ? `${k.type} COLLATE ${k.collation}` : k.type;

export interface SourceTable {
  schema: string;
  name: string;
  oid: number;
  /** `collation`: the column's, where it is not its type's own (KeyColumn.collation). */
  key: { name: string; type: string; collation?: string }[];
  /** A table partitioned on the source: its batches read (and lock) its partitions too. */
  partitioned?: boolean;
  /**
   * The signature of the columns replay writes the table with (engine/drift/shape.ts): a batch
   * that finds another in its snapshot stops with PGFERRY_SCHEMA_DRIFT before applying anything.
   */
  columnsSig?: string;
}

/**
 * One of `of` disjoint ranges of a table's key: from `from` (inclusive) to `to` (exclusive), each
 * the key columns' values in their text form; the first slice has no `from`, the last no `to`.
 */
export interface Slice {
  index: number;
  of: number;
  from?: string[];
  to?: string[];
}

export interface InstallOptions {
  log: Logger;
  signal: AbortSignal;
  /** lock_timeout of each attempt: short, so the application never queues behind pgferry. */
  lockTimeoutMs?: number;
  /** How long to keep retrying a locked table before reporting it. */
  lockWaitMs?: number;
  /** Rows written by this run's own apply sessions are not captured (reverse and two-way: no echo). */
  origin?: string;
}

/** A table whose capture is installed: what the checkpoint store records of it. */
export interface InstalledTable extends SourceTable {
  /** The relation in the pgferry schema its changes are kept in. */
  logTable: string;
  partitioned: boolean;
}

/** One table's pending changes. */
export interface TableBacklog {
  /** Changes not yet consumed. */
  changes: number;
  /** Seconds since the oldest of them was made; null when there is none. */
  lagSeconds: number | null;
  /** The source could not yet tell every table's changes (a stream behind): `changes` is a lower bound. */
  unsure?: boolean;
}

/** What one read of one table holds; the read's transaction stays open until consume or abandon. */
export interface ChangeBatch {
  /** Changes in the batch (a key changed twice counts twice). */
  changes: number;
  /** Seconds since the oldest change of the batch was made. */
  lagSeconds: number;
  /** Relations truncated on the source within the batch (qualified names as the source wrote them). */
  truncates: string[];
  /**
   * A SELECT of the batch's distinct changed keys in key order, the columns named as the table's
   * key: replay joins it with the table in the read's transaction. Valid until consume or abandon.
   */
  keys: string;
  /**
   * The same keys with each one's last change time (the log's `at` column, lib/log-columns.ts),
   * in key order: two-way sync resolves a key changed on both sides by it. The trigger source only.
   */
  keysAt?: string;
  /**
   * Row inserts and deletes among the changes (an UPDATE is neither, a row moved between
   * partitions one of each), when the source can tell: the table's row count changed by
   * inserted − deleted over the batch, TRUNCATEs aside. The cutover's count ledger goes by them.
   */
  inserted?: number;
  deleted?: number;
  /**
   * An unbounded read (limit null) that could not hold every change its snapshot sees (a logical
   * stream's buffer is bounded): the table is not yet as of its snapshot, and needs another batch.
   */
  partial?: boolean;
}

export interface ReadOptions {
  /** Most changes in the batch (oldest first); null for every visible change. */
  limit: number | null;
  /** An exported snapshot (pg_export_snapshot) to read in, instead of a fresh one. */
  snapshotId?: string;
  /** Only the changes of keys in this range (and every TRUNCATE). */
  slice?: Slice;
  /**
   * The table's changes pending when the round began (its backlog query), if known: a source may
   * read a small backlog with statements planned once per session.
   */
  pending?: number;
}

/** A slice read that found a TRUNCATE: nothing read, the table needs an unsliced batch. */
export const SLICE_TRUNCATED = 'slice-truncated';

/** What a source says about itself for status: its kind and what it installed on the source. */
export interface SourceDescription {
  kind: ChangeSourceKind;
  runId: string | null;
  /** The objects it installed and reads (qualified names, or a slot's and publication's). */
  objects: string[];
  /** The relations it writes on the source besides the user tables (the cutover ends their writers). */
  relations: string[];
}

/** The size of what a source keeps on the source server for the run (its logs, or a slot's WAL). */
export interface CaptureLogSize {
  bytes: number;
  /** Changes kept, from the statistics (an estimate, never a scan); 0 when unknown. */
  rows: number;
}

export interface ChangeSource {
  readonly kind: ChangeSourceKind;

  /** Readies the source server for the run (schema, registry row) before any install. Idempotent. */
  prepare(client: pg.Client, statePath: string): Promise<void>;

  /** The oids of the tables whose capture this run already installed (a resumed install skips them). */
  installed(client: pg.Client): Promise<Set<number>>;

  /** What install() returned for a table whose capture is installed (a resumed install). */
  installedAs(table: TableInfo): InstalledTable;

  /**
   * Starts capturing one table (and its partitions) in one transaction: once it returns, every
   * change committed to the table is returned by some read, and a snapshot taken afterwards sees
   * every change committed before (so a copy under it misses nothing). Waits out locks briefly
   * and names a table that stays locked; never leaves a half-installed table behind.
   */
  install(
    client: pg.Client,
    table: TableInfo,
    partitions: TableInfo[],
    opts: InstallOptions,
  ): Promise<InstalledTable>;

  /**
   * Stops capturing one table (it leaves the run: `pgferry tables remove`) and removes what
   * install() created for it, under the same short lock waits. Idempotent. Replay must have
   * stopped reading it (unfollow) first.
   */
  uninstall(client: pg.Client, table: InstalledTable, opts: InstallOptions): Promise<void>;

  /**
   * A table that joined the run after this source was built from the checkpoint store (another
   * instance installed its capture): its changes are read from now on. unfollow: no longer read.
   */
  follow(table: InstalledTable): void;
  unfollow(oid: number): void;

  /**
   * Every change pending per table, in the order of `tables`, read at once (one statement):
   * the numbers status, lag and the replay's scheduling go by. A change applied but not yet
   * consumed still counts. Never blocks a writer. With `exact` (a drain's last look), every
   * change committed before the call counts, whatever it costs a source that learns of commits
   * late (a logical stream: one small commit of its own).
   */
  backlog(
    client: pg.Client,
    tables: readonly SourceTable[],
    opts?: { exact?: boolean },
  ): Promise<TableBacklog[]>;

  /**
   * Opens a read's transaction on `client` and reads one batch of `table`, oldest changes first.
   * Returns null when nothing is pending (the transaction is closed), SLICE_TRUNCATED when a
   * slice read saw a TRUNCATE (closed too, nothing read), or the batch, whose transaction stays
   * open: the caller fetches the keys' rows in it, applies them, then calls consume (or abandon).
   * On an error the transaction is rolled back and nothing is consumed.
   */
  readBatch(
    client: pg.Client,
    table: SourceTable,
    opts: ReadOptions,
  ): Promise<ChangeBatch | null | typeof SLICE_TRUNCATED>;

  /**
   * Removes exactly the changes `batch` read (none committed since) and closes its transaction.
   * Only after the target committed the batch: if it throws, the batch is read again later.
   */
  consume(client: pg.Client, batch: ChangeBatch): Promise<void>;

  /** The batch was not applied: closes its transaction, consuming nothing. Never throws. */
  abandon(client: pg.Client, batch?: ChangeBatch): Promise<void>;

  /**
   * Up to `count` disjoint key ranges holding about as many of the next `limit` × `count` pending
   * changes each (fewer when keys repeat). Only a hint for parallelism: any ranges are correct.
   */
  sliceRanges(client: pg.Client, table: SourceTable, count: number, limit: number): Promise<Slice[]>;

  /** Whether this error from a read or consume may mean the capture was removed under the run. */
  mayBeRemoved(err: unknown): boolean;

  /** PGFERRY_CAPTURE_REMOVED when this run's capture is gone from the source; null while in place. */
  removed(client: pg.Client): Promise<Error | null>;

  /**
   * Removes everything this source installed on the source server for the run (idempotent),
   * refusing while the run is alive unless forced: its changes made since would be lost to it.
   */
  remove(source: ConnInfo, opts?: { force?: boolean }): Promise<Removed[]>;

  /** Its kind and what it installed, for status and for the operator; reads nothing. */
  describe(): SourceDescription;

  /** What it keeps on the source for the run, from the catalog and statistics only (heartbeat metrics). */
  logSize(client: pg.Client): Promise<CaptureLogSize>;

  /** Ends what the source holds in pgferry's process (a replication stream); idempotent. */
  close(): Promise<void>;
}

/** A source's run id, which every source's objects are named after (none before the run is bound). */
export function runIdOf(runId: string | null): string {
  if (runId === null) throw new PgferryError('PGFERRY_INTERNAL_ERROR', 'the run has no id');
  return runId;
}

/** A batch whose snapshot finds the table's columns changed (SourceTable.columnsSig): nothing applied. */
export const columnsChanged = (table: string): PgferryError =>
  new PgferryError(
    'PGFERRY_SCHEMA_DRIFT',
    `${table} changed columns on the source: its batch was not applied`,
    {
      side: 'source',
      object: table,
    },
  );

/**
 * A statement on the source failed: if it is this run's capture that is gone (`pgferry cleanup`
 * under the run), the error saying so, since no rerun can bring back the changes made meanwhile.
 * Otherwise (a user table dropped, or the check itself failed) the error stands. Checks on
 * `client`, or on a session of its own when none is given.
 */
export async function explainRemoval(
  changes: ChangeSource,
  source: ConnInfo,
  err: unknown,
  client?: pg.Client,
): Promise<unknown> {
  if (!changes.mayBeRemoved(err)) return err;
  const check = client ?? (await connect(source, 'control').catch(() => null));
  if (!check) return err;
  try {
    return (await changes.removed(check)) ?? err;
  } finally {
    if (!client) await check.end().catch(() => {});
  }
}
