// Logical decoding as a change source (`--capture logical`): the run's publication lists the
// captured tables, its slot (pgoutput) streams their committed changes, and the stream's keys wait
// in memory (stream.ts, bounded) until replay reads them. A batch is a table's oldest buffered
// changes; its keys are joined with the table in a REPEATABLE READ snapshot of the source in
// which every transaction of the batch is visible (a walsender can send a commit a moment before
// it becomes visible to new snapshots), so the rows read are at least as new as the changes.
// consume() confirms the slot's position only over transactions whose every change the target
// has committed, recording it in the checkpoint store first: after any crash, the slot streams
// again everything not yet confirmed, and applying a change twice is harmless.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../../checkpoints/store.js';
import { type PgferryError, stateOf } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { rollbackQuietly } from '../../../lib/sql.js';
import type { TableInfo } from '../../shared/catalog.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { q } from '../../shared/db.js';
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
import { runIdOf } from '../change-source.js';
import { cleanup, type Removed } from '../cleanup.js';
import { captureRemoved, installedCapture, missingCapture, registerRun } from '../registry.js';
import { describeCapture } from '../triggers/triggers.js';
import { type LogicalBatch, reach, readLogicalBatch } from './batch.js';
import { lsnOf } from './change-buffer.js';
import {
  ensurePublication,
  publicationName,
  publishTable,
  slotInfo,
  slotName,
  unpublishTable,
} from './slot.js';
import { readySlot, slotUnusable } from './slot-probe.js';
import { SlotStream } from './stream.js';
import { WAL_POSITIONS_SQL, WalFlusher, type WalPositions } from './wal-flush.js';

/** The checkpoint store's record of the slot position confirmed last. */
export const CONFIRMED_META = 'logical_confirmed_lsn';

interface Followed {
  schema: string;
  name: string;
  key: { name: string; type: string }[];
  /** The key's column names, made once: the stream looks them up for every change. */
  keyNames: string[];
}

function followed(schema: string, name: string, key: Followed['key']): Followed {
  return { schema, name, key, keyNames: key.map((k) => k.name) };
}

export interface LogicalSourceOptions {
  runId: string | null;
  /** The captured tables as the checkpoint store records them (key columns as JSON). */
  captured: readonly { oid: number; schema: string; name: string; keyColumns: string }[];
  store?: CheckpointStore;
  source: ConnInfo;
  log: Logger;
}

export class LogicalSource implements ChangeSource {
  readonly kind = 'logical' as const;
  private readonly tables = new Map<number, Followed>();
  /** Partitions of captured partitioned tables: relid → the captured table's oid. */
  private readonly partitions = new Map<number, number>();
  private current: SlotStream | null = null;
  private starting: Promise<SlotStream> | null = null;
  /** Whether a stream was ever replaced: batches after that may hold changes applied before. */
  private restarted = false;
  private readonly flusher: WalFlusher;

  constructor(private readonly opts: LogicalSourceOptions) {
    for (const c of opts.captured) {
      this.tables.set(c.oid, followed(c.schema, c.name, JSON.parse(c.keyColumns)));
    }
    this.flusher = new WalFlusher(opts.source, () => this.run());
  }

  private run(): string {
    return runIdOf(this.opts.runId);
  }

  async prepare(client: pg.Client, statePath: string): Promise<void> {
    await registerRun(client, { runId: this.run(), statePath, capture: this.kind });
    await ensurePublication(client, this.run());
  }

  installed(client: pg.Client): Promise<Set<number>> {
    return installedCapture(client, this.run());
  }

  installedAs(table: TableInfo): InstalledTable {
    return { ...describeCapture(this.run(), table), logTable: '' };
  }

  async install(
    client: pg.Client,
    table: TableInfo,
    _p: TableInfo[],
    opts: InstallOptions,
  ): Promise<InstalledTable> {
    await publishTable(client, this.run(), table, opts);
    const c = this.installedAs(table);
    this.follow(c);
    return c;
  }

  /**
   * The slot, created once every table is published and then decoded once (slot-probe.ts) before
   * the copy takes a snapshot: a slot PostgreSQL built unusable is dropped and created again while
   * nothing depends on it. True when a slot was created or checked now.
   */
  start(client: pg.Client, copied: boolean, signal: AbortSignal): Promise<boolean> {
    return readySlot(client, this.opts.source, this.run(), { ...this.opts, copied, signal });
  }

  async uninstall(client: pg.Client, table: InstalledTable, opts: InstallOptions): Promise<void> {
    this.unfollow(table.oid);
    await unpublishTable(client, this.run(), table, opts);
  }

  follow(table: InstalledTable): void {
    this.tables.set(table.oid, followed(table.schema, table.name, table.key));
  }

  unfollow(oid: number): void {
    this.tables.delete(oid);
    for (const [part, root] of this.partitions) if (root === oid) this.partitions.delete(part);
    this.current?.buffer.forget(oid);
  }

  /** The running stream, started (again, after it failed) from the last confirmed position. */
  private async stream(client: pg.Client): Promise<SlotStream> {
    if (this.current && !this.current.failed) return this.current;
    this.starting ??= this.open(client).finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async open(client: pg.Client): Promise<SlotStream> {
    if (this.current) {
      await this.current.close();
      this.current = null;
      this.restarted = true;
    }
    await this.findPartitions(client);
    const stored = this.opts.store?.getMeta(CONFIRMED_META);
    const stream = new SlotStream({
      source: this.opts.source,
      slot: slotName(this.run()),
      publication: publicationName(this.run()),
      start: stored ? lsnOf(stored) : 0n,
      routing: {
        tableOf: (relid) => (this.tables.has(relid) ? relid : (this.partitions.get(relid) ?? null)),
        keyOf: (oid) => this.tables.get(oid)?.keyNames ?? null,
      },
      log: this.opts.log,
      onConfirm: (lsn) => this.opts.store?.setMeta(CONFIRMED_META, lsn),
    });
    // A killed run's walsender may hold the slot for a moment (55006): waited for.
    for (let attempt = 1; ; attempt++) {
      try {
        await stream.start();
        break;
      } catch (err) {
        await stream.close();
        if (stateOf(err) === 'XX000' && /could not map file/.test((err as Error).message)) {
          throw slotUnusable(slotName(this.run()), (err as Error).message);
        }
        if (stateOf(err) !== '55006' || attempt >= 40) throw err;
        await sleep(250);
      }
    }
    this.current = stream;
    return stream;
  }

  /** Every partition of the captured partitioned tables (their changes come under their own oids). */
  private async findPartitions(client: pg.Client, relids?: number[]): Promise<void> {
    const rows = await q<{ relid: number; root: number }>(
      client,
      'source',
      `SELECT c.oid::int8 AS relid, pg_partition_root(c.oid)::oid::int8 AS root FROM pg_class c
        WHERE c.relispartition AND ($1::oid[] IS NULL OR c.oid = ANY ($1::oid[]))`,
      [relids ?? null],
    );
    for (const r of rows) {
      const root = Number(r.root);
      if (this.tables.has(root)) this.partitions.set(Number(r.relid), root);
    }
  }

  /** Changes that arrived before their relation was known (a table joining, a partition attached) go to their table. */
  private async route(client: pg.Client, stream: SlotStream): Promise<void> {
    const unkeyed = stream.buffer.unkeyedRelations();
    if (unkeyed.length === 0) return;
    const unknown = unkeyed.filter((r) => !this.tables.has(r) && !this.partitions.has(r));
    if (unknown.length > 0) await this.findPartitions(client, unknown);
    for (const r of unkeyed) {
      const table = this.tables.has(r) ? r : this.partitions.get(r);
      if (table !== undefined) stream.buffer.rekey(r, table, this.tables.get(table)!.keyNames);
    }
    // Still unknown: a table joining the run (published, not yet replayed: kept), or one that
    // left it (streamed before it was unpublished: dropped, or the slot's position would stop).
    const left = unknown.filter((r) => !this.partitions.has(r));
    if (left.length === 0) return;
    const published = await q<{ oid: string }>(
      client,
      'source',
      `SELECT c.oid::int8::text AS oid FROM pg_publication_tables p
         JOIN pg_namespace n ON n.nspname = p.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
        WHERE p.pubname = $1 AND c.oid = ANY ($2::oid[])`,
      [publicationName(this.run()), left],
    );
    const kept = new Set(published.map((p) => Number(p.oid)));
    for (const r of left) if (!kept.has(r)) stream.buffer.forget(r);
  }

  /**
   * Buffered changes per table. A stream that has not yet told of every commit flushed before the
   * call (`exact`: every commit made before it) counts one change more on the first table:
   * "drained" means every committed change was received.
   */
  async backlog(
    client: pg.Client,
    tables: readonly SourceTable[],
    { exact = false }: { exact?: boolean } = {},
  ): Promise<TableBacklog[]> {
    const stream = await this.stream(client);
    await this.route(client, stream);
    const [at] = await q<WalPositions>(client, 'source', `SELECT ${WAL_POSITIONS_SQL}`);
    // Nothing held: it is nothing pending only once the stream has told of every commit flushed
    // before now. Exact: of every commit made before now (a drain's "empty" must cover the last
    // write before the freeze, which, made with synchronous_commit off, may not be flushed yet:
    // wal-flush.ts). A walsender answers a ping at once, so this waits milliseconds; a
    // transaction half received is pending too.
    const held = tables.some((t) => stream.buffer.pending(t.oid) > 0);
    const end = exact ? await this.flusher.flushedEnd(at!) : lsnOf(at!.flushed);
    // Exact waits as long as the stream moves (a stream just started decodes from its slot's
    // restart position first): a caller may act on the tables it lists, as the verified point does.
    const behind =
      stream.buffer.inTransaction ||
      (held && !exact ? stream.buffer.received < end : !(await reach(stream, end, exact ? undefined : 250)));
    const now = Date.now();
    return tables.map((t, i) => {
      const oldest = stream.buffer.oldest(t.oid);
      return {
        changes: stream.buffer.pending(t.oid) + (behind && i === 0 ? 1 : 0),
        lagSeconds: oldest ? Math.max(0, (now - oldest.txn.committedAt) / 1000) : null,
        unsure: behind,
      };
    });
  }

  async readBatch(
    client: pg.Client,
    t: SourceTable,
    { limit, snapshotId, slice }: ReadOptions,
  ): Promise<LogicalBatch | null | typeof SLICE_TRUNCATED> {
    const stream = await this.stream(client);
    await this.route(client, stream);
    return readLogicalBatch(client, stream, t, { limit, snapshotId, slice }, this.restarted, this.flusher);
  }

  /** Closes the read's transaction, then lets the buffer go of the batch and confirms what it can. */
  async consume(client: pg.Client, batch: ChangeBatch): Promise<void> {
    const b = batch as LogicalBatch;
    await q(client, 'source', 'COMMIT');
    if (b.stream === this.current && b.stream.buffer.consume(b.oid, b.entries)) b.stream.consumed();
  }

  async abandon(client: pg.Client): Promise<void> {
    await rollbackQuietly(client);
  }

  /** Never sliced: the buffer is in memory, and one batch reads it without touching the source. */
  async sliceRanges(): Promise<Slice[]> {
    return [{ index: 0, of: 1 }];
  }

  /** 42704 (undefined object): the slot or the publication was dropped (`pgferry cleanup`). */
  mayBeRemoved(err: unknown): boolean {
    return (stateOf(err) === '42704' || stateOf(err) === '42P01') && this.opts.runId !== null;
  }

  async removed(client: pg.Client): Promise<PgferryError | null> {
    const runId = this.run();
    try {
      const missing = await missingCapture(client, runId, []);
      if (missing) return captureRemoved(runId, missing);
      if (!(await slotInfo(client, runId)).exists)
        return captureRemoved(runId, `slot ${slotName(runId)} is gone`);
      const [pub] = await q<{ ok: boolean }>(
        client,
        'source',
        'SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS ok',
        [publicationName(runId)],
      );
      return pub?.ok ? null : captureRemoved(runId, `publication ${publicationName(runId)} is gone`);
    } catch {
      return null;
    }
  }

  remove(source: ConnInfo, opts: { force?: boolean } = {}): Promise<Removed[]> {
    return cleanup(source, { runId: this.run(), force: opts.force });
  }

  describe(): SourceDescription {
    const runId = this.opts.runId;
    return {
      kind: this.kind,
      runId,
      objects: runId ? [`slot ${slotName(runId)}`, `publication ${publicationName(runId)}`] : [],
      relations: [],
    };
  }

  /** The WAL the slot keeps on the source (what a stopped run costs its disk). */
  async logSize(client: pg.Client): Promise<CaptureLogSize> {
    const [row] = await q<{ bytes: number | null }>(
      client,
      'source',
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS bytes
         FROM pg_replication_slots WHERE slot_name = $1`,
      [slotName(this.run())],
    );
    return { bytes: row?.bytes ?? 0, rows: this.current?.buffer.size ?? 0 };
  }

  async close(): Promise<void> {
    await Promise.all([this.current?.close(), this.flusher.close()]);
    this.current = null;
  }
}
