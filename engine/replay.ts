// Replay: the captured changes applied to the target in bulk, table by table, tables in parallel.
//
// A batch is the set of log rows visible in one REPEATABLE READ snapshot of the source (bounded
// by --batch-size, oldest first), never "ids greater than the last one seen": a transaction that
// took early ids and commits late is simply visible to a later batch. The current rows of the
// batch's keys are read in that same snapshot, applied on the target, and only after the target
// committed are the consumed log rows deleted (in the same source transaction, which in
// REPEATABLE READ deletes exactly the rows that snapshot saw) and the source committed.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CaptureRecord, CheckpointStore } from '../checkpoints/store.js';
import { type ApplyTable, applyBatch } from '../sinks/batch-applier.js';
import { CopyPipeError } from '../sinks/copy-pipe.js';
import { LOG_AT, LOG_OP, LOG_REL, LOG_SEQ } from './capture/triggers.js';
import { PGFERRY_SCHEMA } from './catalog.js';
import type { ConnInfo } from './conn-info.js';
import { connect, q, qualified, quoteIdent } from './db.js';
import { classify, dbError, isPgferryError, PgferryError, sqlstateOf } from './errors.js';
import { sleep } from './sleep.js';

export interface ReplayStats {
  lagSeconds: number;
  backlog: number;
  changesPerSec: number;
  appliedTotal: number;
  batches: number;
  at: string;
}

export interface ReplayOptions {
  source: ConnInfo;
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  jobs: number;
  signal: AbortSignal;
  /** Most log rows per batch; a batch that breaks a UNIQUE constraint is redone whole. */
  batchSize?: number;
  pollMs?: number;
  /** Return once a round finds every log empty. */
  untilSynced?: boolean;
  /** With untilSynced: return as soon as the lag is at most this, after at least one round. */
  syncedLagSeconds?: number;
  onStats?: (s: ReplayStats) => void;
  /** After each applied batch: the table (schema.name), its changes, and how long it took. */
  onBatch?: (table: string, changes: number, seconds: number) => void;
  /** A batch failed with a transient error and is retried. */
  onRetry?: (code: string) => void;
}

interface ReplayTable extends ApplyTable {
  logTable: string;
  partitioned: boolean;
}

interface Session {
  src: pg.Client;
  dst: pg.Client;
  temps: Set<number>;
}

const toReplayTable = (c: CaptureRecord): ReplayTable => ({
  schema: c.schema,
  name: c.name,
  oid: c.oid,
  key: JSON.parse(c.keyColumns) as { name: string; type: string }[],
  columns: JSON.parse(c.columns) as string[],
  format: c.copyFormat,
  keyFormat: c.keyFormat,
  logTable: c.logTable,
  partitioned: c.partitioned === 1,
});

const fmt = (f: 'binary' | 'text') => (f === 'binary' ? ' WITH (FORMAT binary)' : '');

interface BatchOutcome {
  changes: number;
  rows: number;
  lagSeconds: number;
}

/** One batch of one table. Returns null when the table's log had nothing visible. */
export async function replayTableBatch(
  s: Session,
  t: ReplayTable,
  limit: number | null,
  /** An exported snapshot to run the batch in, instead of a fresh one. */
  snapshotId?: string,
): Promise<BatchOutcome | null> {
  const log = qualified(PGFERRY_SCHEMA, t.logTable);
  const name = `${t.schema}.${t.name}`;
  await q(s.src, 'source', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
  if (snapshotId) await q(s.src, 'source', `SET TRANSACTION SNAPSHOT '${snapshotId.replace(/'/g, '')}'`);
  try {
    const [head] = await q<{
      n: number;
      first: string | null;
      cutoff: string | null;
      trunc: boolean;
      lag: number | null;
    }>(
      s.src,
      'source',
      `SELECT count(*)::int AS n, min(${LOG_SEQ})::text AS first, max(${LOG_SEQ})::text AS cutoff,
              coalesce(bool_or(${LOG_OP} = 'T'), false) AS trunc,
              extract(epoch FROM clock_timestamp() - min(${LOG_AT}))::float8 AS lag
         FROM (SELECT ${LOG_SEQ}, ${LOG_OP}, ${LOG_AT} FROM ${log} ORDER BY ${LOG_SEQ} ${limit ? `LIMIT ${limit}` : ''}) s`,
      [],
      name,
    );
    if (!head || head.n === 0 || head.cutoff === null) {
      await q(s.src, 'source', 'COMMIT');
      return null;
    }
    if (!/^\d+$/.test(head.cutoff) || !/^\d+$/.test(head.first ?? ''))
      throw new PgferryError('PGFERRY_SOURCE_QUERY', `bad log position ${head.first}..${head.cutoff}`);
    // Exactly the visible rows up to cutoff (none below first is visible): a two-sided range lets
    // the planner use the log's index even before the log has statistics.
    const inBatch = `${LOG_SEQ} BETWEEN ${head.first} AND ${head.cutoff}`;
    const truncates = head.trunc
      ? (
          await q<{ rel: string }>(
            s.src,
            'source',
            `SELECT DISTINCT ${LOG_REL} AS rel FROM ${log} WHERE ${inBatch} AND ${LOG_OP} = 'T'`,
          )
        ).map((r) => r.rel)
      : [];
    const keyCols = t.key.map((k) => quoteIdent(k.name)).join(', ');
    const keyList = t.key.length === 1 ? keyCols : `(${keyCols})`;
    const batchKeys = `SELECT ${keyCols} FROM ${log} WHERE ${inBatch} AND ${LOG_OP} <> 'T'`;
    const cols = t.columns.map(quoteIdent).join(', ');
    // ONLY for a plain table: rows of inheritance children are captured as their own tables.
    const from = `${t.partitioned ? '' : 'ONLY '}${qualified(t.schema, t.name)}`;
    const applied = await applyBatch(
      s.src,
      s.dst,
      t,
      {
        keysOut: `COPY (SELECT DISTINCT ${keyCols} FROM (${batchKeys}) k) TO STDOUT${fmt(t.keyFormat)}`,
        rowsOut: `COPY (SELECT ${cols} FROM ${from} WHERE ${keyList} IN (${batchKeys})) TO STDOUT${fmt(t.format)}`,
        truncates,
      },
      s.temps,
    );
    // REPEATABLE READ: this deletes exactly the log rows this batch saw, none committed since.
    await q(s.src, 'source', `DELETE FROM ${log} WHERE ${inBatch}`, [], name);
    await q(s.src, 'source', 'COMMIT');
    return { changes: head.n, rows: applied.rows, lagSeconds: head.lag ?? 0 };
  } catch (err) {
    await s.src.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

export class Replayer {
  private readonly tables: ReplayTable[];
  private readonly idle: Session[] = [];
  private applied = 0;
  private batches = 0;
  private readonly recent: { at: number; n: number }[] = [];
  private stopping = false;

  constructor(private readonly opts: ReplayOptions) {
    this.tables = opts.store.captures().map(toReplayTable);
  }

  private async session(): Promise<Session> {
    const pooled = this.idle.pop();
    if (pooled) return pooled;
    const src = await connect(this.opts.source, 'copy');
    try {
      const dst = await connect(this.opts.target, 'copy');
      return { src, dst, temps: new Set() };
    } catch (err) {
      await src.end().catch(() => {});
      throw err;
    }
  }

  private async discard(s: Session): Promise<void> {
    await Promise.all([s.src.end().catch(() => {}), s.dst.end().catch(() => {})]);
  }

  /** Makes run() return after the batches in flight (the cutover through the API takes over). */
  stop(): void {
    this.stopping = true;
  }

  /** A pause (checkpoint store meta `paused`) holds the replay loop between batches. */
  private paused(): boolean {
    return this.opts.store.pauseReason() !== null;
  }

  async close(): Promise<void> {
    await Promise.all(this.idle.splice(0).map((s) => this.discard(s)));
  }

  /** Backlog (log rows) and lag (age of the oldest one) per table, in one query. */
  async backlog(client: pg.Client): Promise<{ total: number; lagSeconds: number; pending: ReplayTable[] }> {
    if (this.tables.length === 0) return { total: 0, lagSeconds: 0, pending: [] };
    const parts = this.tables.map(
      (t, i) =>
        `SELECT ${i} AS i, count(*)::int AS n, extract(epoch FROM clock_timestamp() - min(${LOG_AT}))::float8 AS lag FROM ${qualified(PGFERRY_SCHEMA, t.logTable)}`,
    );
    const rows = await q<{ i: number; n: number; lag: number | null }>(
      client,
      'source',
      parts.join(' UNION ALL '),
    );
    const pending = rows.filter((r) => r.n > 0).map((r) => this.tables[r.i]!);
    return {
      total: rows.reduce((a, r) => a + r.n, 0),
      lagSeconds: Math.max(0, ...rows.map((r) => r.lag ?? 0)),
      pending,
    };
  }

  private rate(): number {
    const now = Date.now();
    while (this.recent.length > 0 && now - this.recent[0]!.at > 10_000) this.recent.shift();
    const n = this.recent.reduce((a, r) => a + r.n, 0);
    const span = this.recent.length > 0 ? Math.max(1, (now - this.recent[0]!.at) / 1000) : 1;
    return Math.round(n / span);
  }

  /** One batch of one table, with retries for transient errors and the UNIQUE fallback. */
  private async tableBatch(t: ReplayTable, whole = false, snapshotId?: string): Promise<BatchOutcome | null> {
    const name = `${t.schema}.${t.name}`;
    let limit: number | null = whole ? null : (this.opts.batchSize ?? 50_000);
    for (let attempt = 1; ; attempt++) {
      const s = await this.session();
      try {
        const out = await replayTableBatch(s, t, limit, snapshotId);
        this.idle.push(s);
        return out;
      } catch (err) {
        await this.discard(s);
        const cause = err instanceof CopyPipeError ? err.cause : err;
        const side = err instanceof CopyPipeError ? err.side : 'target';
        if (sqlstateOf(cause) === '23505' && limit !== null) {
          // A cut-short batch can separate two rows that swapped a unique value: redo it whole.
          this.opts.log.info(
            { table: name },
            'unique violation in a partial batch: applying the whole backlog at once',
          );
          limit = null;
          continue;
        }
        const e = isPgferryError(cause) ? cause : dbError(side, cause, name);
        if (sqlstateOf(cause) === '23505') {
          throw new PgferryError('PGFERRY_REPLAY_CONFLICT', `${name}: ${e.message}`, {
            side: 'target',
            object: name,
            sqlstate: '23505',
            cause,
          });
        }
        if (classify(e) === 'retry' && attempt < 5 && !this.opts.signal.aborted) {
          this.opts.onRetry?.(e.code);
          this.opts.log.warn({ table: name, attempt, err: e.message }, 'batch failed, retrying');
          await sleep(500 * 2 ** attempt, this.opts.signal);
          continue;
        }
        throw e;
      }
    }
  }

  /**
   * Applies every change visible in an exported snapshot, one whole batch per table, each run in
   * that snapshot: afterwards the target equals the source as of the snapshot, which a
   * verification can then read. The replay loop must be stopped meanwhile.
   */
  async drainAt(snapshotId: string): Promise<number> {
    const control = await connect(this.opts.source, 'control');
    let applied = 0;
    try {
      const { pending } = await this.backlog(control);
      for (const t of pending) {
        const out = await this.tableBatch(t, true, snapshotId);
        if (out) {
          applied += out.changes;
          this.applied += out.changes;
          this.batches += 1;
        }
      }
      return applied;
    } finally {
      await control.end().catch(() => {});
    }
  }

  /** One whole batch per table with a backlog: afterwards each table equals the source as of its batch. */
  async catchUp(): Promise<number> {
    const control = await connect(this.opts.source, 'control');
    try {
      const { pending } = await this.backlog(control);
      return await this.round(pending, true);
    } finally {
      await control.end().catch(() => {});
    }
  }

  /** Runs one batch for each of these tables, `jobs` tables at a time; returns the changes applied. */
  private async round(pending: ReplayTable[], whole = false): Promise<number> {
    const queue = [...pending];
    let failure: unknown;
    let applied = 0;
    // The loop's rounds stop between batches on a pause or a stop; catch-ups (whole) never do.
    const held = () => !whole && (this.stopping || this.paused());
    const worker = async () => {
      for (let t = queue.shift(); t && !failure && !this.opts.signal.aborted && !held(); t = queue.shift()) {
        try {
          const started = performance.now();
          const out = await this.tableBatch(t, whole);
          if (out) {
            applied += out.changes;
            this.applied += out.changes;
            this.batches += 1;
            this.recent.push({ at: Date.now(), n: out.changes });
            this.opts.onBatch?.(`${t.schema}.${t.name}`, out.changes, (performance.now() - started) / 1000);
          }
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.jobs, pending.length) }, worker));
    if (failure) throw failure;
    return applied;
  }

  /**
   * Replays until the signal aborts or stop() is called (or, with untilSynced, until a round finds
   * nothing to do). While paused it keeps measuring lag and backlog but applies nothing.
   */
  async run(): Promise<ReplayStats> {
    const { opts } = this;
    const control = await connect(opts.source, 'control');
    let stats: ReplayStats = {
      lagSeconds: 0,
      backlog: 0,
      changesPerSec: 0,
      appliedTotal: 0,
      batches: 0,
      at: '',
    };
    let rounds = 0;
    let wasPaused = false;
    try {
      while (!opts.signal.aborted && !this.stopping) {
        const { total, lagSeconds, pending } = await this.backlog(control);
        stats = {
          lagSeconds: Math.round(lagSeconds * 1000) / 1000,
          backlog: total,
          changesPerSec: this.rate(),
          appliedTotal: this.applied,
          batches: this.batches,
          at: new Date().toISOString(),
        };
        opts.onStats?.(stats);
        const reason = opts.store.pauseReason();
        if (reason !== null) {
          if (!wasPaused)
            opts.log.warn(
              { reason },
              'replay paused: capture keeps recording; POST /resume on the --http API goes on',
            );
          wasPaused = true;
          await sleep(opts.pollMs ?? 200, opts.signal);
          continue;
        }
        if (wasPaused) opts.log.info('replay resumed');
        wasPaused = false;
        const closeEnough =
          opts.syncedLagSeconds !== undefined && rounds > 0 && lagSeconds <= opts.syncedLagSeconds;
        if (opts.untilSynced && (pending.length === 0 || closeEnough)) return stats;
        if (pending.length === 0) {
          await sleep(opts.pollMs ?? 200, opts.signal);
          continue;
        }
        await this.round(pending);
        rounds++;
      }
      return stats;
    } finally {
      this.stopping = false;
      await control.end().catch(() => {});
      await this.close();
    }
  }
}
