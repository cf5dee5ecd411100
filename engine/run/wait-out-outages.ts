// Outages are waited out: a connection lost anywhere ends an attempt of the run; the next attempt,
// once the server answers, resumes from the checkpoints exactly as a restarted process would, for
// up to --retry-for. Each side's outage is in the store for status and metrics while it lasts.
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import {
  DEFAULT_RETRY_FOR_MS,
  isConnectionLoss,
  OutageTracker,
  sideOf,
  writeOutages,
} from '../shared/outage.js';

export interface OutageWaitOptions {
  log: Logger;
  signal: AbortSignal;
  /** How long a lost or refused connection is retried before the run fails (--retry-for). */
  retryForMs?: number;
  /** A side's lost connection is about to be retried (metrics). */
  onReconnect?: (side: 'source' | 'target') => void;
}

export async function waitOutOutages<T>(
  store: CheckpointStore,
  opts: OutageWaitOptions,
  attempt: (outages: OutageTracker) => Promise<T>,
): Promise<T> {
  writeOutages(store, null);
  const outages = new OutageTracker({
    retryForMs: opts.retryForMs ?? DEFAULT_RETRY_FOR_MS,
    onChange: (o) => writeOutages(store, o),
    onRetry: opts.onReconnect,
  });
  for (;;) {
    try {
      return await attempt(outages);
    } catch (err) {
      // A first start that cannot connect (a wrong host) is a configuration error, not an outage.
      if (opts.signal.aborted || !store.setup() || !isConnectionLoss(err)) throw err;
      const side = sideOf(err) ?? 'target';
      let wait: number;
      try {
        wait = outages.failed(side, err);
      } catch (giveUp) {
        store.event('error', store.phase(), (giveUp as PgferryError).oneLine());
        store.setPhase('failed');
        throw giveUp;
      }
      const o = outages.outages()[side]!;
      const why = (err as Error)?.message ?? String(err);
      store.event(
        'warn',
        store.phase(),
        `${side} unreachable (attempt ${o.attempts} since ${o.since}): ${why}`,
      );
      opts.log.warn(
        {
          side,
          attempts: o.attempts,
          since: o.since,
          retryInSeconds: Math.round(wait / 100) / 10,
          err: why,
        },
        `${side} unreachable: retrying`,
      );
      await sleep(wait, opts.signal);
      if (opts.signal.aborted)
        throw new PgferryError('PGFERRY_RUN_CANCELLED', `stopped while the ${side} was unreachable`);
    }
  }
}
