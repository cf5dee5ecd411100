// Bucardo 5's delta and track tables as a change source (`--capture bucardo`), for a source
// where Bucardo already replicates: pgferry installs no trigger of its own and reads, as one more
// Bucardo target named pgferry_<run> (registration.ts), the delta rows (a key and its writer's
// start time, txntime) it has not tracked yet. A batch is what one REPEATABLE READ snapshot sees
// of them, in whole txntimes, oldest first; replay joins its keys with the table in that snapshot;
// consume writes pgferry's track rows for the batch's txntimes in the same transaction, which
// commits after the target's, as Bucardo's own syncs do. A delta row is read once its writer
// committed, whatever its txntime: a transaction that started early and commits late is simply in
// a later batch. Only settled txntimes are tracked (settled.ts); the others are read again.
//
// TRUNCATE: Bucardo's truncate trigger records it in bucardo_truncate_trigger and empties the
// delta and track tables in the truncating transaction. A batch holds every truncate of the table
// that pgferry has not marked applied (bucardo-objects.ts: bucardo_truncate_trigger_log), since
// the delta rows that follow one must never be applied before it; consume marks them applied.
//
// Never sliced: the track rows are per txntime, and one txntime's rows span key ranges, so a
// slice that tracked its txntimes would hide their rows in the other slices.
import type pg from 'pg';
import { PgferryError, stateOf } from '../../../lib/errors.js';
import { qualified, rollbackQuietly } from '../../../lib/sql.js';
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
  SLICE_TRUNCATED,
  Slice,
  SourceDescription,
  SourceTable,
  TableBacklog,
} from '../change-source.js';
import { columnsChanged, runIdOf } from '../change-source.js';
import { cleanup, type Removed } from '../cleanup.js';
import {
  CAPTURED_TABLE,
  captureRemoved,
  installedCapture,
  missingCapture,
  registerRun,
} from '../registry.js';
import { describeCapture } from '../triggers/triggers.js';
import {
  BUCARDO_SCHEMA,
  bucardoRel,
  DELTA_TARGETS,
  deltaTableName,
  targetName,
  trackTableOf,
} from './bucardo-objects.js';
import { backlogSql, headSql, keysSql, marksSql, truncateRows } from './delta-reads.js';
import { deltaOf, registerConsumer, unregisterConsumer } from './registration.js';
import { horizon } from './settled.js';

/** A batch of one delta table: what consume writes before it commits. */
interface BucardoBatch extends ChangeBatch {
  marks: string[];
  table: string;
}

export class BucardoSource implements ChangeSource {
  readonly kind = 'bucardo' as const;
  /** The followed tables' delta tables (in the bucardo schema), by the table's oid. */
  private readonly deltas: Map<number, string>;

  /** `captured`: the run's tables and their delta tables, as the checkpoint store records them. */
  constructor(
    private readonly runId: string | null,
    captured: readonly { oid: number; logTable: string }[],
  ) {
    this.deltas = new Map(captured.map((c) => [c.oid, c.logTable]));
  }

  private run(): string {
    return runIdOf(this.runId);
  }

  private delta(t: SourceTable): string {
    const name = this.deltas.get(t.oid);
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

  /** The delta table as followed, or as Bucardo names it (bucardo-objects.ts). */
  installedAs(table: TableInfo): InstalledTable {
    const c = describeCapture(this.run(), table);
    const logTable = this.deltas.get(table.oid) ?? deltaTableName(table.schema, table.name);
    return { schema: c.schema, name: c.name, oid: c.oid, key: c.key, logTable, partitioned: false };
  }

  /** Registers the run as the table's Bucardo target: the table must be in a Bucardo sync already. */
  async install(
    client: pg.Client,
    table: TableInfo,
    partitions: TableInfo[],
    opts: InstallOptions,
  ): Promise<InstalledTable> {
    const c = describeCapture(this.run(), table);
    const delta = await deltaOf(
      client,
      table,
      partitions,
      c.key.map((k) => k.name),
    );
    await registerConsumer(client, this.run(), table, delta, opts);
    this.deltas.set(table.oid, delta);
    return { schema: c.schema, name: c.name, oid: c.oid, key: c.key, logTable: delta, partitioned: false };
  }

  async uninstall(client: pg.Client, table: InstalledTable, opts: InstallOptions): Promise<void> {
    this.deltas.delete(table.oid);
    await unregisterConsumer(client, this.run(), table, opts);
  }

  follow(table: InstalledTable): void {
    this.deltas.set(table.oid, table.logTable);
  }

  unfollow(oid: number): void {
    this.deltas.delete(oid);
  }

  /** Untracked delta rows plus unapplied truncates, and the age of the oldest, per table, in one query. */
  async backlog(client: pg.Client, tables: readonly SourceTable[]): Promise<TableBacklog[]> {
    if (tables.length === 0) return [];
    const sql = backlogSql(
      tables.map((t) => ({ t, delta: this.delta(t) })),
      targetName(this.run()),
    );
    // Prepared once per session (replay asks every round), as trigger-source.ts does.
    const rows = await prepared<{ i: number; n: number; lag: number | null }>(client, 'source', sql);
    const out: TableBacklog[] = tables.map(() => ({ changes: 0, lagSeconds: null }));
    for (const r of rows) out[r.i] = { changes: r.n, lagSeconds: r.lag };
    return out;
  }

  /**
   * The untracked delta rows a REPEATABLE READ snapshot sees, in whole txntimes, oldest first up
   * to the limit, and every unapplied truncate of the table (delta-reads.ts). Bucardo records keys
   * only: inserts and deletes cannot be told apart (inserted and deleted stay unknown).
   */
  async readBatch(
    client: pg.Client,
    t: SourceTable,
    { limit, snapshotId, slice }: ReadOptions,
  ): Promise<BucardoBatch | null | typeof SLICE_TRUNCATED> {
    if (slice && (slice.from || slice.to))
      throw new PgferryError('PGFERRY_INTERNAL_ERROR', 'a Bucardo source reads no slices (see sliceRanges)');
    const name = `${t.schema}.${t.name}`;
    const me = targetName(this.run());
    const f = { t, delta: this.delta(t) };
    // Before the snapshot: see settled.ts. An exported snapshot is older than any horizon read
    // now, so a batch read in one tracks nothing (a later batch reads its rows again).
    const h = snapshotId ? null : await horizon(client);
    // The table is locked before the snapshot is taken, as trigger-source.ts does and why; it also
    // keeps a TRUNCATE (which empties the delta table: not MVCC-safe) from committing mid-batch.
    // The track table's SHARE UPDATE EXCLUSIVE (only VACUUM and pgferry take it; Bucardo's inserts
    // and purge do not) makes reads of the table one at a time, each snapshot seeing the last one's
    // track rows: a txntime tracked twice would count as two targets in Bucardo's purge.
    const begin = [
      'BEGIN ISOLATION LEVEL REPEATABLE READ',
      ...(snapshotId ? [`SET TRANSACTION SNAPSHOT '${snapshotId.replace(/'/g, '')}'`] : []),
      `LOCK TABLE ONLY ${qualified(t.schema, t.name)} IN ACCESS SHARE MODE`,
      `LOCK TABLE ${bucardoRel(trackTableOf(f.delta))} IN SHARE UPDATE EXCLUSIVE MODE`,
    ];
    try {
      // One round trip for the transaction, its snapshot and the head, as trigger-source.ts.
      const [head] = await simple<{
        n: number;
        cutoff: string | null;
        truncs: number;
        lag: number | null;
        sig: string;
      }>(client, 'source', [...begin, headSql(f, me, limit)], name);
      if (!head || head.n + head.truncs === 0) {
        await q(client, 'source', 'COMMIT');
        return null;
      }
      if (t.columnsSig !== undefined && head.sig !== t.columnsSig) {
        await q(client, 'source', 'ROLLBACK');
        throw columnsChanged(name);
      }
      const truncates =
        head.truncs === 0
          ? []
          : await q<{ rel: string }>(
              client,
              'source',
              `SELECT DISTINCT format('%I.%I', r.sname, r.tname) AS rel FROM ${truncateRows(f, me)}`,
            );
      const cutoff = head.n > 0 ? head.cutoff : null;
      return {
        changes: head.n + head.truncs,
        lagSeconds: head.lag ?? 0,
        truncates: truncates.map((r) => r.rel),
        keys: keysSql(f, me, cutoff),
        marks: marksSql(f, me, cutoff, head.truncs, h),
        table: name,
      };
    } catch (err) {
      await rollbackQuietly(client);
      throw err;
    }
  }

  /** REPEATABLE READ: the marks cover exactly the txntimes and truncates the batch saw. */
  async consume(client: pg.Client, batch: ChangeBatch): Promise<void> {
    const b = batch as BucardoBatch;
    await simple(client, 'source', [...b.marks, 'COMMIT'], b.table);
  }

  async abandon(client: pg.Client): Promise<void> {
    await rollbackQuietly(client);
  }

  /** One slice: see the header. */
  async sliceRanges(): Promise<Slice[]> {
    return [{ index: 0, of: 1 }];
  }

  /** 42P01 (undefined table), 3F000 (no schema): Bucardo's tables, or pgferry's registry, may be gone. */
  mayBeRemoved(err: unknown): boolean {
    return (stateOf(err) === '42P01' || stateOf(err) === '3F000') && this.runId !== null;
  }

  /**
   * The registry row gone, or, of a table that still exists, the delta or track table or the
   * run's registration as its target; a check that itself fails proves nothing (null).
   */
  async removed(client: pg.Client): Promise<PgferryError | null> {
    const runId = this.run();
    try {
      const missing = await missingCapture(client, runId, []);
      if (missing) return captureRemoved(runId, missing);
      const [targets] = await q<{ ok: boolean }>(
        client,
        'source',
        'SELECT to_regclass($1) IS NOT NULL AS ok',
        [`${BUCARDO_SCHEMA}.${DELTA_TARGETS}`],
      );
      if (!targets?.ok) return captureRemoved(runId, `${BUCARDO_SCHEMA}.${DELTA_TARGETS} is gone`);
      const gone = await q<{ what: string }>(
        client,
        'source',
        `SELECT CASE WHEN to_regclass(format('%I.%I', $3::text, l)) IS NULL THEN 'delta table ' || l
                     WHEN to_regclass(format('%I.%I', $3::text, 'track_' || substr(l, 7))) IS NULL THEN 'track table of ' || l
                     ELSE 'the registration of ' || $4 || ' as the target of ' || l END AS what
           FROM unnest($1::oid[], $2::text[]) AS f(relid, l)
          WHERE EXISTS (SELECT 1 FROM pg_class WHERE oid = f.relid)
            AND (to_regclass(format('%I.%I', $3::text, l)) IS NULL
                 OR to_regclass(format('%I.%I', $3::text, 'track_' || substr(l, 7))) IS NULL
                 OR NOT EXISTS (SELECT 1 FROM ${bucardoRel(DELTA_TARGETS)} x WHERE x.tablename = f.relid AND x.target = $4))
          ORDER BY 1 LIMIT 3`,
        [[...this.deltas.keys()], [...this.deltas.values()], BUCARDO_SCHEMA, targetName(runId)],
      );
      return gone.length > 0 ? captureRemoved(runId, `${gone.map((g) => g.what).join(', ')} missing`) : null;
    } catch {
      return null;
    }
  }

  /** The run's registrations, track rows and applied truncates, and its registry rows. */
  remove(source: ConnInfo, opts: { force?: boolean } = {}): Promise<Removed[]> {
    return cleanup(source, { runId: this.run(), force: opts.force });
  }

  describe(): SourceDescription {
    const tables = [...this.deltas.values()].flatMap((d) => [bucardoRel(d), bucardoRel(trackTableOf(d))]);
    return { kind: this.kind, runId: this.runId, objects: tables, relations: tables };
  }

  /** Bytes on disk (with indexes and TOAST) and the statistics' live rows of the run's delta tables. */
  async logSize(client: pg.Client): Promise<CaptureLogSize> {
    const [row] = await q<{ bytes: number; rows: number }>(
      client,
      'source',
      `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8 AS bytes,
              coalesce(sum(pg_stat_get_live_tuples(c.oid)), 0)::float8 AS rows
         FROM ${qualified(PGFERRY_SCHEMA, CAPTURED_TABLE)} k
         JOIN pg_class c ON c.relname = k.log_table AND c.relnamespace = to_regnamespace($2)
        WHERE k.run_id = $1`,
      [this.run(), BUCARDO_SCHEMA],
    );
    return { bytes: row?.bytes ?? 0, rows: row?.rows ?? 0 };
  }

  async close(): Promise<void> {}
}
