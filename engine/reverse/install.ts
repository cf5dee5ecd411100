// Reverse replication's capture: the forward direction's triggers (engine/capture/triggers/),
// installed on the target's copies of the run's tables before the target takes writes. Both
// directions skip the rows of the run's own apply sessions (they carry pgferry.origin: see
// engine/replay/sessions.ts): the reverse capture skips what the forward replay writes into the
// target, and the forward capture functions on the source are rewritten to skip what the reverse
// replay writes into the old source. No change echoes back, and no role needs a superuser.
import type { Logger } from 'pino';
import type { CaptureRecord, CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { runIdOf } from '../capture/change-source.js';
import { captureRecord } from '../capture/phase.js';
import { captureKindOf } from '../capture/sources.js';
import { TriggerSource } from '../capture/triggers/trigger-source.js';
import { type CapturedTable, captureUnits, skipOwnWrites } from '../capture/triggers/triggers.js';
import { splitTables } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { withClient } from '../shared/db.js';
import { markReverseInstalled, reverseCaptures, reverseInstalledAt, saveReverseCaptures } from './state.js';

export interface ReverseContext {
  /** The run's source: the old side, which reverse replication writes into. */
  source: ConnInfo;
  /** The run's target: the new side, whose changes reverse replication reads. */
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  signal: AbortSignal;
  /** Not marked installed yet (`pgferry reverse` checks both sides first). */
  deferMark?: boolean;
}

/** The reverse direction's change source: the trigger capture on the target, skipping the run's own writes. */
export function reverseChangeSource(store: CheckpointStore): TriggerSource {
  const runId = runIdOf(store.runId());
  return new TriggerSource(runId, reverseCaptures(store), runId);
}

const capturedOf = (runId: string, c: CaptureRecord): CapturedTable => ({
  runId,
  schema: c.schema,
  name: c.name,
  oid: c.oid,
  logTable: c.logTable,
  key: JSON.parse(c.keyColumns) as CapturedTable['key'],
  partitioned: c.partitioned === 1,
});

/**
 * Installs capture on the target's copy of every table of the run (idempotent: a table already
 * captured is kept), each recorded as it is done, then makes the source's capture skip the
 * reverse replay's writes. Returns the tables newly captured.
 */
export async function installReverse(ctx: ReverseContext): Promise<number> {
  const { store, log } = ctx;
  const runId = runIdOf(store.runId());
  const setup = store.setup()!;
  const changes = reverseChangeSource(store);
  const records = new Map(reverseCaptures(store).map((r) => [r.oid, r]));
  let count = 0;
  await withClient(ctx.target, 'control', async (dst) => {
    await changes.prepare(dst, store.file);
    const installed = await changes.installed(dst);
    const { selected } = await splitTables(dst, { include: setup.include, exclude: setup.exclude });
    const units = captureUnits(selected);
    for (const f of store.captures()) {
      const t = units.find((u) => u.schema === f.schema && u.name === f.name);
      if (!t) {
        throw new PgferryError(
          'PGFERRY_TARGET_MISMATCH',
          `${f.schema}.${f.name} is replicated but not found on ${ctx.target.label()}: reverse replication cannot capture it`,
          { side: 'target', object: `${f.schema}.${f.name}` },
        );
      }
      const partitions = selected.filter(
        (p) => p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name,
      );
      const c = installed.has(t.oid)
        ? changes.installedAs(t)
        : await changes.install(dst, t, partitions, { log, signal: ctx.signal, origin: runId });
      if (!installed.has(t.oid)) count++;
      records.set(t.oid, captureRecord(c, t));
      saveReverseCaptures(store, [...records.values()]);
    }
  });
  // Bucardo's and a slot's capture cannot skip a session's rows: with them, what the reverse
  // replay writes into the old source is replayed forward again after a rollback (current rows,
  // so idempotent: only wasted work).
  if (captureKindOf(store) === 'triggers') {
    await withClient(ctx.source, 'control', (src) =>
      skipOwnWrites(
        src,
        store.captures().map((c) => capturedOf(runId, c)),
      ),
    );
  }
  if (!ctx.deferMark && !reverseInstalledAt(store)) {
    markReverseInstalled(store);
    store.event(
      'info',
      store.phase(),
      `reverse replication: capture installed on ${records.size} table(s) of the target`,
    );
  }
  log.info({ tables: records.size, new: count }, 'reverse replication: capture on the target');
  return count;
}
