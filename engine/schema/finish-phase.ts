// The finish of a --copy-only run, which has no cutover to wait for: sequences set to the source's
// values, foreign keys, triggers, rules and policies created, materialized views refreshed.
import type { RunContext } from '../run/context.js';
import { withClient } from '../shared/db.js';
import { createDeferred } from './deferred-objects.js';
import { refreshMatviews } from './matviews.js';
import { syncSequences } from './sequences.js';

export async function finishPhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  run.enter('cutover');
  const seqs = await syncSequences(run.src, run.dst);
  store.setMeta('sequences_synced', String(seqs.length));
  opts.log.info({ sequences: seqs.length }, 'sequences set to the source values');
  const created = await createDeferred({
    target: opts.target,
    store,
    log: opts.log,
    signal: opts.signal,
    stage: 'cutover',
    concurrency: 1,
  });
  opts.log.info({ objects: created }, 'foreign keys, triggers, rules and policies created');
  // A refresh runs the view's whole query: it gets the long timeout of an index build.
  const views = await withClient(opts.target, 'index', (long) => refreshMatviews(run.src, long));
  opts.log.info({ materializedViews: views.length }, 'materialized views refreshed');
  run.finish('cutover');
}
