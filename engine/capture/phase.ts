// The capture phase of `migrate`: this run's change capture installed on the source by its change
// source (registered; triggers and a log per table, Bucardo's delta tables checked and followed, or
// tables published and a slot created), checked to be still there on resume, and the run's
// heartbeat on the source from then on.
import type { CaptureRecord, CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { RunContext } from '../run/context.js';
import type { TableInfo } from '../shared/catalog.js';
import type { ChangeSource, InstalledTable } from './change-source.js';
import { CaptureHeartbeat } from './heartbeat.js';
import { LogicalSource } from './logical/logical-source.js';
import { openChangeSource } from './sources.js';
import { captureUnits } from './triggers/triggers.js';

/**
 * A resumed run's capture: before anything is written, a capture removed meanwhile cannot be
 * resumed, nor one found broken before (a trigger disabled, then enabled again, left a gap).
 */
export async function resumeCapture(run: RunContext): Promise<void> {
  const lost = run.store.getMeta(CAPTURE_LOST);
  if (lost) throw new PgferryError('PGFERRY_CAPTURE_REMOVED', lost, { side: 'source' });
  const source = openChangeSource(run.store, run.opts);
  const removed = await source.removed(run.src);
  if (removed) {
    recordCaptureLost(run.store, removed);
    throw removed;
  }
  await startHeartbeat(run, source);
}

/** Meta key: why this run's capture was found broken; the run cannot go on from then on. */
const CAPTURE_LOST = 'capture_lost';

/** Records that the capture was found broken (resumeCapture refuses from then on). */
export function recordCaptureLost(store: CheckpointStore, err: Error): void {
  store.setMeta(CAPTURE_LOST, err.message);
}

/**
 * Capture goes on before any copy snapshot is taken: CREATE TRIGGER waits for every transaction
 * that has written to the table to end, so a snapshot taken afterwards sees every write made
 * without the trigger, and every later write is in the log.
 */
export async function capturePhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  const { selected } = await run.selectedTables();
  const source = openChangeSource(store, opts);
  await source.prepare(run.src, opts.statePath);
  await startHeartbeat(run, source);
  const installed = await source.installed(run.src);
  let count = 0;
  for (const t of captureUnits(selected)) {
    const c = installed.has(t.oid)
      ? source.installedAs(t)
      : await source.install(
          run.src,
          t,
          selected.filter((p) => p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name),
          { log: opts.log, signal: opts.signal, lockWaitMs: opts.captureLockWaitMs },
        );
    if (!installed.has(t.oid)) count++;
    store.saveCapture(captureRecord(c, t));
  }
  // A slot streams what commits after it is created: once every table is published. It is checked
  // to decode before the copy takes its first snapshot, which then sees all that the slot does not.
  if (source instanceof LogicalSource) {
    const copied = store.hasPlan() && store.chunks({ status: ['done'] }).length > 0;
    if (await source.start(run.src, copied, opts.signal)) {
      store.event(
        'info',
        'copy',
        `${source.describe().objects[0]} created and checked: the copy starts after it`,
      );
    }
  }
  store.setMeta('capture_installed', new Date().toISOString());
  store.event('info', 'copy', `capture installed on ${count} table(s)`);
  opts.log.info({ tables: count }, 'change capture installed on the source');
}

/** What the checkpoint store records of a captured table: its log, key and the columns replay writes. */
export function captureRecord(c: InstalledTable, t: TableInfo): CaptureRecord {
  const writable = t.columns.filter((col) => !col.generated);
  const keyNames = new Set(t.primaryKey?.map((k) => k.name));
  return {
    oid: c.oid,
    schema: c.schema,
    name: c.name,
    logTable: c.logTable,
    keyColumns: JSON.stringify(c.key),
    columns: JSON.stringify(writable.map((col) => col.name)),
    copyFormat: writable.every((col) => col.binaryPortable) ? 'binary' : 'text',
    keyFormat: t.columns.filter((col) => keyNames.has(col.name)).every((col) => col.binaryPortable)
      ? 'binary'
      : 'text',
    partitioned: c.partitioned ? 1 : 0,
  };
}

async function startHeartbeat(run: RunContext, source: ChangeSource): Promise<void> {
  if (run.heartbeat) return;
  run.heartbeat = new CaptureHeartbeat({
    source: run.opts.source,
    runId: run.store.runId()!,
    statePath: run.opts.statePath,
    log: run.opts.log,
    onRemoved: (err) => {
      recordCaptureLost(run.store, err);
      run.captureLost.abort(err);
    },
    onLogSize: run.opts.onCaptureLog,
    measure: (client) => source.logSize(client),
  });
  await run.heartbeat.start();
}
