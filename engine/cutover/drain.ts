// The cutover's drain: once no write can commit on the source, the log is applied to empty,
// every table's backlog at once.
import type pg from 'pg';
import { PgferryError } from '../../lib/errors.js';
import type { Replayer } from '../replay/replay.js';

/** Tables drained in parallel after the freeze at most (each a source and a target session). */
export const DRAIN_WIDTH = 8;

/**
 * Drains the log to empty: whole batches until nothing is left. No write commits on the source
 * any more, so one round of whole batches usually leaves nothing, which the backlog then says.
 */
export async function drain(
  replayer: Replayer,
  control: pg.Client,
  signal: AbortSignal,
  width: number,
): Promise<number> {
  let total = 0;
  for (;;) {
    if (signal.aborted) throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped during the cutover drain');
    total += await replayer.catchUp(control, width);
    const { total: left } = await replayer.backlog(control, { exact: true });
    if (left === 0) return total;
  }
}
