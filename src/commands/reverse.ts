import { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { CutoverFlags, MigrateFlags } from '../config.js';
import { statePath } from '../config.js';
import { migrateCommand } from './migrate.js';

/**
 * `pgferry reverse`: the daemon of a run already cut over, replaying the new side's changes into
 * the old source (then, after a rollback through its API, forward again). The tables and the
 * change source are the run's own, read from its state file.
 */
export async function reverseCommand(flags: MigrateFlags & CutoverFlags & { json?: boolean }): Promise<void> {
  const file = statePath(flags.state);
  let store: CheckpointStore;
  try {
    store = CheckpointStore.open(file, { create: false, readonly: true });
  } catch (err) {
    throw new PgferryError('PGFERRY_STATE_INVALID', `${file}: ${(err as Error).message}`, { side: 'state' });
  }
  try {
    const setup = store.setup();
    if (setup?.mode !== 'replicate') {
      throw new PgferryError('PGFERRY_STATE_INVALID', `${file} holds no run with capture to reverse`, {
        side: 'state',
      });
    }
    if (!store.phaseDone('done')) {
      throw new PgferryError(
        'PGFERRY_ROLLBACK_REFUSED',
        `pgferry reverse starts reverse replication on a run that was cut over; this one is in phase ${store.phase() ?? 'none'}`,
        {
          side: 'state',
          hint: 'Cut over first (`pgferry cutover`, or POST /cutover), or give `migrate` --reverse-after-cutover so that its cutover starts it.',
        },
      );
    }
    flags = { ...flags, include: setup.include, exclude: setup.exclude, capture: setup.capture };
  } finally {
    store.close();
  }
  await migrateCommand({ ...flags, state: file, reverse: true });
}
