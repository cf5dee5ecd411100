// The cutover's part in reverse replication (engine/reverse/): its capture installed on the
// target before the freeze, when the run asked for it; and a target frozen by a rollback given
// its writes back as the target is declared ready again.
import type pg from 'pg';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { installReverse } from '../reverse/install.js';
import { clearRollbackRecord, readRollbackRecord } from '../reverse/state.js';
import type { ConnInfo } from '../shared/conn-info.js';
import type { CutoverOptions } from './cutover.js';
import { unfreezeWrites } from './freeze.js';

export async function prepareReverse(opts: CutoverOptions): Promise<void> {
  if (opts.freeze === 'revoke') {
    throw new PgferryError(
      'PGFERRY_CUTOVER_REFUSED',
      '--freeze revoke is not possible with reverse replication: it revokes pgferry’s own write grants on the source too (on Heroku the application often shares its role), and reverse replication writes there',
      { side: 'config', hint: 'Use --freeze readonly (the default) or --freeze external.' },
    );
  }
  await installReverse(opts);
}

/** After a rollback the target stayed frozen for the application: its writes back, as recorded. */
export async function unfreezeAfterRollback(
  client: pg.Client,
  target: ConnInfo,
  store: CheckpointStore,
): Promise<void> {
  const record = readRollbackRecord(store);
  if (record?.step !== 'done') return;
  await unfreezeWrites(client, target, record.freeze);
  clearRollbackRecord(store);
  store.event('info', 'cutover', 'the target’s freeze since the rollback undone');
}
