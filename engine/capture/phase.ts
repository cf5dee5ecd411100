// The capture phase of `migrate`: this run's change capture installed on the source (registered,
// one log table and trigger per table), checked to be still there on resume, and the run's
// heartbeat on the source from then on.
import type { CaptureRecord } from '../../checkpoints/store.js';
import type { RunContext } from '../run/context.js';
import type { TableInfo } from '../shared/catalog.js';
import type { InstalledTable } from './change-source.js';
import { CaptureHeartbeat } from './heartbeat.js';
import { requireCapture } from './registry.js';
import { TriggerSource } from './triggers/trigger-source.js';
import { captureUnits, describeCapture } from './triggers/triggers.js';

/** A resumed run's capture: before anything is written, a capture removed meanwhile cannot be resumed. */
export async function resumeCapture(run: RunContext): Promise<void> {
  const { store } = run;
  await requireCapture(
    run.src,
    store.runId()!,
    store.captures().map((c) => c.logTable),
  );
  await startHeartbeat(run);
}

/**
 * Capture goes on before any copy snapshot is taken: CREATE TRIGGER waits for every transaction
 * that has written to the table to end, so a snapshot taken afterwards sees every write made
 * without the trigger, and every later write is in the log.
 */
export async function capturePhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  const { selected } = await run.selectedTables();
  const runId = store.runId()!;
  // The change source of the run (--capture triggers: the only one built so far).
  const source = new TriggerSource(runId, store.captures());
  await source.prepare(run.src, opts.statePath);
  await startHeartbeat(run);
  const installed = await source.installed(run.src);
  let count = 0;
  for (const t of captureUnits(selected)) {
    const c = installed.has(t.oid)
      ? describeCapture(runId, t)
      : await source.install(
          run.src,
          t,
          selected.filter((p) => p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name),
          { log: opts.log, signal: opts.signal, lockWaitMs: opts.captureLockWaitMs },
        );
    if (!installed.has(t.oid)) count++;
    store.saveCapture(captureRecord(c, t));
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

async function startHeartbeat(run: RunContext): Promise<void> {
  if (run.heartbeat) return;
  run.heartbeat = new CaptureHeartbeat({
    source: run.opts.source,
    runId: run.store.runId()!,
    statePath: run.opts.statePath,
    log: run.opts.log,
    onRemoved: (err) => run.captureLost.abort(err),
    onLogSize: run.opts.onCaptureLog,
  });
  await run.heartbeat.start();
}
