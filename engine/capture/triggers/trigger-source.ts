// The trigger capture as a change source: one log table per captured table (triggers.ts), read
// by snapshot visibility and consumed by deleting, in the read's own REPEATABLE READ transaction,
// exactly the log rows that snapshot saw, after the target committed. A log row is visible to a
// batch once its writer committed, whatever its position: a transaction that took early positions
// and commits late is simply in a later batch.
import type pg from 'pg';
import { PgferryError, stateOf } from '../../../lib/errors.js';
import { logColumns } from '../../../lib/log-columns.js';
import { qualified, rollbackQuietly } from '../../../lib/sql.js';
import { columnsSigSql } from '../../drift/shape.js';
import { PGFERRY_SCHEMA, type TableInfo } from '../../shared/catalog.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { prepared, q, simple } from '../../shared/db.js';
import type {
  CaptureLogSize,
  ChangeBatch,
  ChangeSource,
  InstalledTable,
  InstallOptions,
  ReadOptions,
  Slice,
  SourceDescription,
  SourceTable,
  TableBacklog,
} from '../change-source.js';
import { columnsChanged, runIdOf, SLICE_TRUNCATED } from '../change-source.js';
import { cleanup, type Removed } from '../cleanup.js';
import {
  CAPTURED_TABLE,
  captureRemoved,
  installedCapture,
  missingCapture,
  registerRun,
} from '../registry.js';
import { keyIdents, lastPosition, sliceFilter } from './log-windows.js';
import { triggersOff } from './trigger-state.js';
import { type CapturedTable, describeCapture, installCapture, uninstallCapture } from './triggers.js';

/** A batch of one log table: the log rows of positions first..cutoff visible to its snapshot. */
interface TriggerBatch extends ChangeBatch {
  log: string;
  /** The batch's log rows (the slice's, with a slice), as a condition on the log. */
  inBatch: string;
  table: string;
}

/** Backlogs up to this many changes are read with a head query planned once per session. */
const PLANNED_ONCE_MAX = 5_000;

export class TriggerSource implements ChangeSource {
  readonly kind = 'triggers' as const;
  private readonly logs: Map<number, string>;

  /**
   * `captured`: the run's tables and their log tables, as the checkpoint store records them.
   * `origin`: a run whose apply sessions' rows its capture skips (reverse replication's, on the target).
   */
  constructor(
    private readonly runId: string | null,
    captured: readonly { oid: number; logTable: string }[],
    private readonly origin?: string,
  ) {
    this.logs = new Map(captured.map((c) => [c.oid, c.logTable]));
  }

  private run(): string {
    return runIdOf(this.runId);
  }

  private log(t: SourceTable): string {
    const name = this.logs.get(t.oid);
    if (name === undefined)
      throw new PgferryError('PGFERRY_INTERNAL_ERROR', `${t.schema}.${t.name} is not captured`);
    return name;
  }

  async prepare(client: pg.Client, statePath: string): Promise<void> {
    await registerRun(client, { runId: this.run(), statePath, capture: this.kind });
  }

  installed(client: pg.Client): Promise<Set<number>> {
    return installedCapture(client, this.run());
  }

  installedAs(table: TableInfo): CapturedTable {
    return describeCapture(this.run(), table);
  }

  async install(
    client: pg.Client,
    table: TableInfo,
    partitions: TableInfo[],
    opts: InstallOptions,
  ): Promise<CapturedTable> {
    const c = await installCapture(client, this.run(), table, partitions, {
      ...opts,
      origin: opts.origin ?? this.origin,
    });
    this.logs.set(c.oid, c.logTable);
    return c;
  }

  async uninstall(client: pg.Client, table: InstalledTable, opts: InstallOptions): Promise<void> {
    this.logs.delete(table.oid);
    await uninstallCapture(client, { ...table, runId: this.run() }, opts);
  }

  follow(table: InstalledTable): void {
    this.logs.set(table.oid, table.logTable);
  }

  unfollow(oid: number): void {
    this.logs.delete(oid);
  }

  /** Log rows and the age of the oldest per table, in one query. */
  async backlog(client: pg.Client, tables: readonly SourceTable[]): Promise<TableBacklog[]> {
    if (tables.length === 0) return [];
    const parts = tables.map(
      (t, i) =>
        `SELECT ${i} AS i, count(*)::int AS n, extract(epoch FROM clock_timestamp() - min(${logColumns(t.key).at}))::float8 AS lag FROM ${qualified(PGFERRY_SCHEMA, this.log(t))}`,
    );
    // Prepared once per session (replay asks every round): planning a union of every log costs
    // more than running it on small logs.
    const rows = await prepared<{ i: number; n: number; lag: number | null }>(
      client,
      'source',
      parts.join(' UNION ALL '),
    );
    const out: TableBacklog[] = tables.map(() => ({ changes: 0, lagSeconds: null }));
    for (const r of rows) out[r.i] = { changes: r.n, lagSeconds: r.lag };
    return out;
  }

  /**
   * The log rows visible in a REPEATABLE READ snapshot, oldest first up to the limit: their count,
   * positions and age first, then, for a batch with TRUNCATE rows, the relations truncated.
   */
  async readBatch(
    client: pg.Client,
    t: SourceTable,
    { limit, snapshotId, slice, pending }: ReadOptions,
  ): Promise<TriggerBatch | null | typeof SLICE_TRUNCATED> {
    const log = qualified(PGFERRY_SCHEMA, this.log(t));
    const name = `${t.schema}.${t.name}`;
    const { seq, op, at, rel } = logColumns(t.key);
    // The table is locked before the snapshot is taken (LOCK takes none): a schema change cannot
    // commit between the snapshot and the read of the rows, so the columns seen in the snapshot
    // are the ones the rows are read with. Without it, a table rewritten meanwhile (ALTER COLUMN
    // TYPE is not MVCC-safe) would look empty to the snapshot, and replay delete the batch's rows.
    const begin = [
      'BEGIN ISOLATION LEVEL REPEATABLE READ',
      ...(snapshotId ? [`SET TRANSACTION SNAPSHOT '${snapshotId.replace(/'/g, '')}'`] : []),
      `LOCK TABLE ${t.partitioned ? '' : 'ONLY '}${qualified(t.schema, t.name)} IN ACCESS SHARE MODE`,
    ];
    const keyCols = keyIdents(t).join(', ');
    // The batch is every visible row whose position is between the first and the last of a window
    // (the oldest `limit` rows; a slice's: its rows among the oldest limit × slices). A position is
    // the writing transaction's id, shared by its rows, so rows past the window's cut may hold the
    // last position: the head counts exactly the rows between the two, which the keys query and
    // the consume then cover, TRUNCATEs and inserts and deletes included.
    const aggregates = `coalesce(bool_or(${op} = 'T'), false) AS trunc,
              count(*) FILTER (WHERE ${op} = 'I')::int AS ins,
              count(*) FILTER (WHERE ${op} = 'D')::int AS del,
              extract(epoch FROM clock_timestamp() - min(${at}))::float8 AS lag,
              ${columnsSigSql(String(t.oid))} AS sig`;
    // A slice's batch is its rows of every position up to the last of the oldest limit × slices
    // rows, that position's rows past the cut included, as sliceRanges sampled them: a transaction
    // bigger than the window is then split between the slices by its keys, not left to the slice
    // its first rows' keys missed. Those rows are the window itself, read once.
    const upTo =
      slice && limit !== null ? `${seq} BETWEEN 0 AND ${lastPosition(log, seq, limit * slice.of)} AND ` : '';
    const headSql =
      limit === null || slice
        ? `SELECT count(*)::int AS n, min(${seq})::text AS first, max(${seq})::text AS cutoff, ${aggregates}
             FROM ${log} WHERE ${upTo}${sliceFilter(t, slice)}`
        : `WITH pgferry_w AS (SELECT min(${seq}) AS pgferry_first, max(${seq}) AS pgferry_cutoff
                                FROM (SELECT ${seq} FROM ${log} ORDER BY ${seq} LIMIT ${limit}) s)
           SELECT count(*)::int AS n, min(pgferry_first)::text AS first, min(pgferry_cutoff)::text AS cutoff, ${aggregates}
             FROM pgferry_w JOIN ${log} ON ${seq} BETWEEN pgferry_first AND pgferry_cutoff`;
    try {
      type Head = {
        n: number;
        first: string | null;
        cutoff: string | null;
        trunc: boolean;
        lag: number | null;
        ins: number;
        del: number;
        sig: string;
      };
      // The transaction, its snapshot and the head query go as one simple query (a batch is a few
      // milliseconds under a steady load: round trips are most of its time). But then the head is
      // most of a batch's CPU on the source, mostly planning (measured: 0.7 ms planned, 0.3 ms run):
      // an unsliced window of a small backlog, the same text every time, is planned once per
      // session instead. Not a backlog's: a plan made on a small log (a sort of the whole log
      // rather than its index) would be kept for the big one until the next ANALYZE of the log.
      const reuse = !slice && limit !== null && pending !== undefined && pending <= PLANNED_ONCE_MAX;
      const [head] = reuse
        ? await simple(client, 'source', begin, name).then(() =>
            prepared<Head>(client, 'source', headSql, [], name),
          )
        : await simple<Head>(client, 'source', [...begin, headSql], name);
      if (!head || head.n === 0 || head.cutoff === null) {
        await q(client, 'source', 'COMMIT');
        return null;
      }
      if (t.columnsSig !== undefined && head.sig !== t.columnsSig) {
        await q(client, 'source', 'ROLLBACK');
        throw columnsChanged(name);
      }
      if (slice && head.trunc) {
        await q(client, 'source', 'COMMIT');
        return SLICE_TRUNCATED;
      }
      if (!/^\d+$/.test(head.cutoff) || !/^\d+$/.test(head.first ?? ''))
        throw new PgferryError('PGFERRY_SOURCE_QUERY', `bad log position ${head.first}..${head.cutoff}`);
      // Exactly the visible rows up to cutoff (none below first is visible): a two-sided range lets
      // the planner use the log's index even before the log has statistics.
      const inBatch = `${seq} BETWEEN ${head.first} AND ${head.cutoff} AND ${sliceFilter(t, slice)}`;
      const truncates = head.trunc
        ? (
            await q<{ rel: string }>(
              client,
              'source',
              `SELECT DISTINCT ${rel} AS rel FROM ${log} WHERE ${inBatch} AND ${op} = 'T'`,
            )
          ).map((r) => r.rel)
        : [];
      return {
        changes: head.n,
        lagSeconds: head.lag ?? 0,
        truncates,
        keys: `SELECT DISTINCT ${keyCols} FROM ${log} WHERE ${inBatch} AND ${op} <> 'T' ORDER BY ${keyCols}`,
        keysAt: `SELECT ${keyCols}, max(${at}) AS ${at} FROM ${log} WHERE ${inBatch} AND ${op} <> 'T' GROUP BY ${keyCols} ORDER BY ${keyCols}`,
        inserted: head.ins,
        deleted: head.del,
        log,
        inBatch,
        table: name,
      };
    } catch (err) {
      await rollbackQuietly(client);
      throw err;
    }
  }

  /** REPEATABLE READ: this deletes exactly the log rows the batch saw, none committed since. */
  async consume(client: pg.Client, batch: ChangeBatch): Promise<void> {
    const b = batch as TriggerBatch;
    await simple(client, 'source', [`DELETE FROM ${b.log} WHERE ${b.inBatch}`, 'COMMIT'], b.table);
  }

  async abandon(client: pg.Client): Promise<void> {
    await rollbackQuietly(client);
  }

  /**
   * The first key of each ntile of a sample of the next log rows (those of every position up to
   * the last of the next limit × count, as a slice's window reads them): every 8th row (not every
   * 8th position, which is a whole transaction's rows), TRUNCATEs left out.
   */
  async sliceRanges(client: pg.Client, t: SourceTable, count: number, limit: number): Promise<Slice[]> {
    const cols = keyIdents(t);
    const log = qualified(PGFERRY_SCHEMA, this.log(t));
    const { seq, op } = logColumns(t.key);
    const rows = await q<{ tile: number; key: string[] }>(
      client,
      'source',
      `SELECT DISTINCT ON (pgferry_tile) pgferry_tile AS tile, ARRAY[${cols.map((c) => `${c}::text`).join(', ')}] AS key
       FROM (SELECT ${cols.join(', ')}, ntile(${count}) OVER (ORDER BY ${cols.join(', ')}) AS pgferry_tile
               FROM (SELECT ${cols.join(', ')}, row_number() OVER () AS pgferry_n
                       FROM (SELECT ${cols.join(', ')} FROM ${log}
                              WHERE ${op} <> 'T' AND ${seq} BETWEEN 0 AND ${lastPosition(log, seq, limit * count)}) w0) w
              WHERE pgferry_n % 8 = 0) x
      ORDER BY pgferry_tile, ${cols.join(', ')}`,
      [],
      `${t.schema}.${t.name}`,
    );
    const starts: string[][] = [];
    for (const r of rows.slice(1)) {
      if (JSON.stringify(r.key) !== JSON.stringify(starts.at(-1))) starts.push(r.key);
    }
    return Array.from({ length: starts.length + 1 }, (_, index) => ({
      index,
      of: starts.length + 1,
      from: starts[index - 1],
      to: starts[index],
    }));
  }

  /** 42P01 (undefined table): a log table may have been dropped by `pgferry cleanup` under the run. */
  mayBeRemoved(err: unknown): boolean {
    return stateOf(err) === '42P01' && this.runId !== null;
  }

  /** The registry row, a log table or a trigger missing, or a trigger disabled; a check that itself fails proves nothing (null). */
  async removed(client: pg.Client): Promise<PgferryError | null> {
    const runId = this.run();
    const missing = await missingCapture(client, runId, [...this.logs.values()])
      .then((m) => m ?? triggersOff(client, runId))
      .catch(() => null);
    return missing ? captureRemoved(runId, missing) : null;
  }

  /** The run's triggers, functions, log tables and registry rows (`pgferry cleanup --run`). */
  remove(source: ConnInfo, opts: { force?: boolean } = {}): Promise<Removed[]> {
    return cleanup(source, { runId: this.run(), force: opts.force });
  }

  describe(): SourceDescription {
    const logs = [...this.logs.values()].map((l) => qualified(PGFERRY_SCHEMA, l));
    return { kind: this.kind, runId: this.runId, objects: logs, relations: logs };
  }

  /** Bytes on disk (with indexes and TOAST) and the statistics' live rows of the run's log tables. */
  async logSize(client: pg.Client): Promise<CaptureLogSize> {
    const [row] = await q<{ bytes: number; rows: number }>(
      client,
      'source',
      `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 AS bytes,
              coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::float8 AS rows
         FROM ${qualified(PGFERRY_SCHEMA, CAPTURED_TABLE)} k
         JOIN pg_class c ON c.relname = k.log_table AND c.relnamespace = $2::regnamespace
        WHERE k.run_id = $1`,
      [this.run(), PGFERRY_SCHEMA],
    );
    return { bytes: row?.bytes ?? 0, rows: row?.rows ?? 0 };
  }

  async close(): Promise<void> {}
}
