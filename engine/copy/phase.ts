// The copy phase of `migrate`: the tables planned into primary-key ranges (once; a resume keeps
// the plan), then copied by N workers under exported snapshots (one for the whole copy with
// --copy-only, renewed past --max-snapshot-age under capture), each table's indexes built once its
// last chunk is in and a worker has no chunk left to copy.
import PQueue from 'p-queue';
import type pg from 'pg';
import type { TablePlan } from '../../checkpoints/copy-plan.js';
import type { RunContext } from '../run/context.js';
import { buildTableIndexes } from '../schema/index-phase.js';
import { copyUnits, type TableInfo } from '../shared/catalog.js';
import { ensureChunkMarks } from './chunk-marks.js';
import { runCopy } from './copy.js';
import { planChunks } from './planner.js';
import { COPY_RATE_META, copyRate } from './progress.js';
import { SnapshotPool } from './snapshot.js';

export async function copyPhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  run.enter('copy');
  if (!store.hasPlan()) {
    await planCopy(run);
  } else if (run.copyOnly && store.chunks({ status: ['done'] }).length > 0 && !run.snapshots) {
    const msg =
      'resuming the copy under a new snapshot: chunks copied before the restart came from an earlier one; if the source was written to meanwhile, verify the clone or start afresh';
    store.event('warn', 'copy', msg);
    opts.log.warn(msg);
  }
  await ensureChunkMarks(run.dst);
  const copyStarted = Date.now();
  const snapshots =
    run.snapshots ??
    run.useSnapshots(
      new SnapshotPool(opts.source, run.copyOnly ? null : opts.maxSnapshotAgeMs, undefined, (fresh, old) => {
        const what = old ? `snapshot renewed after ${Math.round(old.ageMs() / 1000)}s` : 'snapshot taken';
        store.event('info', 'copy', `${what}: ${fresh.id}`);
        opts.log.info({ snapshot: fresh.id }, what);
      }),
    );
  // A copied table's indexes are built in a slot the copy no longer needs, so that copy workers and
  // builds together stay within --jobs: a build beside a full set of copy workers (with its own
  // parallel workers) competes with them for a CPU-bound target.
  let freeSlots = 0;
  const early = new PQueue({ concurrency: 1, autoStart: false });
  let rateSaved = 0;
  const final = await runCopy({
    source: opts.source,
    target: opts.target,
    store,
    log: opts.log,
    jobs: opts.jobs,
    signal: opts.signal,
    snapshots,
    progressIntervalMs: opts.progressIntervalMs,
    onProgress: (p) => {
      // The rate and ETA for status (the HTTP API's page), at most once a second.
      if (Date.now() - rateSaved >= 1000 || p.chunksDone === p.chunksTotal) {
        store.setMeta(COPY_RATE_META, JSON.stringify(copyRate(p)));
        rateSaved = Date.now();
      }
      opts.onProgress?.(p);
    },
    onRetry: opts.onRetry,
    onLost: run.lost,
    onHealthy: run.healthy,
    onTableCopied: (t) => void early.add(() => buildTableIndexes(run, t)),
    onSlotFree: () => {
      early.concurrency = ++freeSlots;
      early.start();
    },
  }).catch(async (err) => {
    early.clear();
    await early.onIdle();
    throw err;
  });
  // The builds still running or queued are the index phase's: the copy is done when its rows are in.
  run.earlyIndexes = early.onIdle();
  opts.log.info(
    {
      rows: final.rows,
      bytes: final.bytes,
      seconds: (Date.now() - copyStarted) / 1000,
      rowsPerSec: final.rowsPerSec,
      bytesPerSec: final.bytesPerSec,
    },
    'copy finished',
  );
  run.finish('copy');
}

/** Tables that hold rows as the copy plan records them: key ranges, written columns, COPY format. */
export async function planTables(
  src: pg.Client,
  tables: TableInfo[],
  opts: { chunkBytes: number; jobs: number },
): Promise<TablePlan[]> {
  const plan: TablePlan[] = [];
  for (const t of tables) {
    const writable = t.columns.filter((c) => !c.generated);
    plan.push({
      schema: t.schema,
      name: t.name,
      rowsEstimate: t.rowsEstimate,
      bytesEstimate: t.bytes,
      keyColumns: t.primaryKey
        ? JSON.stringify(t.primaryKey.map((k) => ({ name: k.name, type: k.type })))
        : null,
      columns: JSON.stringify(writable.map((c) => c.name)),
      copyFormat: writable.every((c) => c.binaryPortable) ? 'binary' : 'text',
      chunks: await planChunks(src, t, { chunkBytes: opts.chunkBytes, jobs: opts.jobs }),
    });
  }
  return plan;
}

/** Every selected table that holds rows (partitions, not their roots) split into primary-key ranges. */
async function planCopy(run: RunContext): Promise<void> {
  const { store, opts } = run;
  const { selected } = await run.selectedTables();
  const plan = await planTables(run.src, copyUnits(selected), opts);
  store.savePlan(plan);
  opts.log.info(
    { tables: plan.length, chunks: plan.reduce((a, p) => a + p.chunks.length, 0) },
    'copy planned in primary-key ranges',
  );
}
