// Recording a request for tables to join or leave a run, by whoever asks (the CLI on the state
// file, the API in the daemon): refused when the run cannot take it, so that no request waits
// for a run that will never work on it.
import type { CheckpointStore, TableAction, TableRequestRecord } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { twoWayOf } from '../two-way/state.js';

export function checkTablesRequest(
  store: CheckpointStore,
  action: TableAction,
  pattern: string,
): TableRequestRecord {
  const setup = store.setup();
  const phase = store.phase();
  const refuse = (why: string, hint?: string) =>
    new PgferryError('PGFERRY_TABLES_REFUSED', `tables ${action} ${pattern}: ${why}`, {
      side: 'state',
      hint,
    });
  if (twoWayOf(store)) {
    throw refuse(
      'a two-way run replicates the tables it started with (tables joining or leaving it are not built yet)',
    );
  }
  if (!pattern.trim())
    throw refuse('the pattern is empty', 'Name the table as schema.table (* as a wildcard).');
  if (!setup)
    throw refuse(
      'the run has not started yet',
      'Start `pgferry migrate` first, or choose the tables with --include/--exclude.',
    );
  if (setup.mode === 'copy-only') throw refuse('a --copy-only run replicates nothing');
  if (phase === 'done' || phase === 'cutover' || store.phaseDone('cutover')) {
    throw refuse(`the run is in phase ${phase}: the migration is over`);
  }
  return store.addTableRequest(action, pattern.trim());
}
