// The snapshot copy: N workers, each with one source session inside the shared exported snapshot
// and one target session, take chunks from the plan until none is left. Each chunk's state is in
// the checkpoint store before and after it runs, and each chunk's target transaction leaves a
// mark (chunk-marks): a chunk that may have committed unseen is looked up there on the next
// attempt, and copied again only if it is not (its transaction then left nothing behind).
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore, ChunkRecord, TableRecord } from '../../checkpoints/store.js';
import { crashPoint, delayPoint } from '../../lib/crash-point.js';
import { classify, dataHint, dbError, isPgferryError, PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { loadChunk } from '../../sinks/chunk-loader.js';
import { CopyPipeError } from '../../sinks/copy-pipe.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import { markChunkSql, readChunkMark } from './chunk-marks.js';
import { type ChunkTable, copyInSql, copyOutSql } from './chunk-sql.js';
import { CopyProgress, type ProgressSnapshot } from './progress.js';
import { type ExportedSnapshot, joinSnapshot, type SnapshotPool } from './snapshot.js';

export interface CopyContext {
  source: ConnInfo;
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  jobs: number;
  signal: AbortSignal;
  snapshots: SnapshotPool;
  progressIntervalMs?: number;
  onProgress?: (p: ProgressSnapshot) => void;
  /** A table's last chunk committed in this run (its indexes can be built while others copy). */
  onTableCopied?: (table: TableRecord) => void;
  /** One of the `jobs` slots has no chunk left to copy (or never had one): other work may take it. */
  onSlotFree?: () => void;
  /** A chunk failed with a transient error and is copied again (metrics). */
  onRetry?: (code: string) => void;
  /** A chunk failed: the error, so that a lost connection shows as an outage while it is retried. */
  onLost?: (err: unknown) => void;
  /** A chunk went through: any outage is over. */
  onHealthy?: () => void;
}

const MAX_ATTEMPTS = 3;

export function chunkTable(t: TableRecord): ChunkTable {
  const key = t.keyColumns ? (JSON.parse(t.keyColumns) as { name: string; type: string }[]) : null;
  return {
    schema: t.schema,
    name: t.name,
    columns: JSON.parse(t.columns) as string[],
    key,
    format: t.copyFormat,
  };
}

export function progressFrom(store: CheckpointStore): CopyProgress {
  const progress = new CopyProgress();
  for (const t of store.tables()) {
    progress.add({
      table: `${t.schema}.${t.name}`,
      rowsEstimate: t.rowsEstimate,
      bytesEstimate: t.bytesEstimate,
      rows: t.rowsCopied,
      bytes: t.bytesCopied,
      chunksDone: t.chunksDone,
      chunksTotal: t.chunksTotal,
    });
  }
  return progress;
}

export async function runCopy(ctx: CopyContext): Promise<ProgressSnapshot> {
  const { store, log } = ctx;
  const tables = new Map(store.tables().map((t) => [t.id, t]));
  const bySize = (c: ChunkRecord) => tables.get(c.tableId)?.bytesEstimate ?? 0;
  const work = store
    .chunks({ status: ['pending', 'copying'] })
    .sort((a, b) => bySize(b) - bySize(a) || a.tableId - b.tableId || a.seq - b.seq);
  const left = new Map<number, number>();
  for (const c of work) left.set(c.tableId, (left.get(c.tableId) ?? 0) + 1);
  const progress = progressFrom(store);
  progress.markBaseline();
  if (work.length === 0) return progress.snapshot();

  const resumed = work.filter((c) => c.status === 'copying' || c.attempts > 0).length;
  if (resumed > 0)
    log.info(
      { chunks: resumed },
      'unfinished chunks from an earlier run are looked up on the target and copied again if they did not commit',
    );

  const stop = new AbortController();
  const onAbort = () => stop.abort(ctx.signal.reason);
  ctx.signal.addEventListener('abort', onAbort);
  let failure: unknown;
  // Workers prefer a table no other worker is writing: two COPYs into one table queue on its
  // relation extension lock (seen as Lock:extend waits), while two tables grow independently.
  // Biggest tables first; a table is shared only when there are fewer tables than workers.
  const writing = new Map<number, number>();
  const takeChunk = (): ChunkRecord | undefined => {
    let i = work.findIndex((c) => !writing.get(c.tableId));
    if (i < 0) i = work.length > 0 ? 0 : -1;
    if (i < 0) return undefined;
    const [chunk] = work.splice(i, 1);
    writing.set(chunk!.tableId, (writing.get(chunk!.tableId) ?? 0) + 1);
    return chunk;
  };
  const doneWriting = (tableId: number) => writing.set(tableId, (writing.get(tableId) ?? 1) - 1);
  const timer = setInterval(() => ctx.onProgress?.(progress.snapshot()), ctx.progressIntervalMs ?? 5_000);

  const worker = async (id: number) => {
    let sessions: { src: pg.Client; dst: pg.Client } | null = null;
    let snapshot: ExportedSnapshot | undefined;
    const leave = async () => {
      if (!snapshot) return;
      const s = snapshot;
      snapshot = undefined;
      await ctx.snapshots.leave(s);
    };
    const close = async () => {
      await leave();
      if (!sessions) return;
      const s = sessions;
      sessions = null;
      await Promise.all([s.src.end().catch(() => {}), s.dst.end().catch(() => {})]);
    };
    try {
      while (!stop.signal.aborted) {
        const chunk = takeChunk();
        if (!chunk) {
          ctx.onSlotFree?.();
          break;
        }
        const table = tables.get(chunk.tableId)!;
        const name = `${table.schema}.${table.name}`;
        const ct = chunkTable(table);
        const lo = chunk.lo ? (JSON.parse(chunk.lo) as string[]) : null;
        const hi = chunk.hi ? (JSON.parse(chunk.hi) as string[]) : null;
        // An earlier attempt may have committed without pgferry seeing it: its mark says.
        let maybeCommitted = chunk.status === 'copying' || chunk.attempts > 0;
        for (let attempt = 1; ; attempt++) {
          let streamed = 0;
          try {
            if (sessions && snapshot && ctx.snapshots.stale(snapshot)) {
              // The snapshot was renewed (--max-snapshot-age): end this one, join the new one.
              await sessions.src.query('COMMIT');
              await leave();
            }
            if (!sessions) {
              const src = await connect(ctx.source, 'copy');
              const dst = await connect(ctx.target, 'copy').catch(async (e) => {
                await src.end().catch(() => {});
                throw e;
              });
              sessions = { src, dst };
            }
            if (!snapshot) {
              const want = await ctx.snapshots.acquire();
              snapshot = want;
              await delayPoint('copy:join-snapshot');
              await joinSnapshot(sessions.src, want);
            }
            const committed = maybeCommitted ? await readChunkMark(sessions.dst, chunk.id) : null;
            store.startChunk(chunk.id);
            const res =
              committed ??
              (await loadChunk({
                source: sessions.src,
                target: sessions.dst,
                copyOut: copyOutSql(ct, lo, hi),
                copyIn: copyInSql(ct),
                after: (done) => markChunkSql(chunk.id, done),
                onBytes: (n) => {
                  streamed += n;
                  progress.bytes(name, n);
                },
                signal: stop.signal,
              }));
            if (committed) progress.bytes(name, committed.bytes);
            crashPoint('copy:chunk-committed');
            store.finishChunk(chunk.id, res.rows, res.bytes);
            ctx.onHealthy?.();
            progress.chunkDone(name, res.rows);
            const remaining = (left.get(chunk.tableId) ?? 1) - 1;
            left.set(chunk.tableId, remaining);
            if (remaining === 0) ctx.onTableCopied?.(table);
            log.debug(
              { worker: id, table: name, chunk: chunk.seq, rows: res.rows, bytes: res.bytes },
              'chunk copied',
            );
            break;
          } catch (err) {
            progress.chunkFailed(name, streamed);
            await close();
            if (stop.signal.aborted) return;
            const e = chunkError(err, name, chunk.seq);
            ctx.onLost?.(e);
            if (classify(e) === 'retry' && attempt < MAX_ATTEMPTS) {
              ctx.onRetry?.(e.code);
              log.warn(
                { table: name, chunk: chunk.seq, attempt, side: e.side, err: e.message },
                'chunk failed, retrying',
              );
              maybeCommitted = true;
              await sleep(1000 * 2 ** (attempt - 1), stop.signal);
              continue;
            }
            throw e;
          }
        }
        doneWriting(chunk.tableId);
      }
    } catch (err) {
      failure ??= err;
      stop.abort(err);
    } finally {
      await close();
    }
  };

  const workers = Math.max(1, Math.min(ctx.jobs, work.length));
  for (let i = workers; i < ctx.jobs; i++) ctx.onSlotFree?.();
  try {
    await Promise.all(Array.from({ length: workers }, (_, i) => worker(i)));
  } finally {
    clearInterval(timer);
    ctx.signal.removeEventListener('abort', onAbort);
  }
  if (failure) throw failure;
  if (ctx.signal.aborted) {
    throw new PgferryError('PGFERRY_RUN_CANCELLED', 'the copy was stopped before it finished', {
      side: 'state',
    });
  }
  const final = progress.snapshot();
  ctx.onProgress?.(final);
  return final;
}

function chunkError(err: unknown, table: string, seq: number): PgferryError {
  if (isPgferryError(err)) return err;
  const side = err instanceof CopyPipeError ? err.side : 'target';
  const cause = err instanceof CopyPipeError ? err.cause : err;
  const inner = dbError(side, cause, table);
  return new PgferryError('PGFERRY_COPY_CHUNK_FAILED', `chunk ${seq} of ${table}: ${inner.message}`, {
    side,
    object: table,
    sqlstate: inner.sqlstate,
    hint: dataHint(inner.sqlstate),
    cause,
  });
}
