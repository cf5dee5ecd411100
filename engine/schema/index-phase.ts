// The index phase of `migrate`: primary keys and indexes built on the target after the copy (a
// table's own once its last chunk is in and a copy worker is free, while others copy), then unique and
// exclusion constraints, partition index attachment and planner statistics: at once without
// capture, after the first catch-up of replay with it.
import type { TableRecord } from '../../checkpoints/store.js';
import type { RunContext } from '../run/context.js';
import { analyzeTables } from './analyze.js';
import { createDeferred } from './deferred-objects.js';
import { objectTable } from './schema.js';

const SETTINGS = ["SET maintenance_work_mem = '256MB'"];

export async function indexPhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  run.enter('indexes');
  const t0 = Date.now();
  await run.earlyIndexes;
  run.earlyIndexes = undefined;
  const built = await createDeferred({
    target: opts.target,
    store,
    log: opts.log,
    signal: opts.signal,
    stage: 'indexes',
    concurrency: opts.jobs,
    settings: SETTINGS,
  });
  // Without capture the copy is one snapshot, so unique constraints hold already; with capture
  // they wait until replay has caught up once (see replicatePhase).
  if (run.copyOnly) await buildUniqueConstraints(run);
  opts.log.info({ built, seconds: (Date.now() - t0) / 1000 }, 'primary keys and indexes built');
  run.finish('indexes');
}

/**
 * One copied table's primary key and indexes, one statement at a time, while other tables may still
 * copy. A failure here is only logged: the index phase builds whatever is left and reports it.
 */
export async function buildTableIndexes(run: RunContext, t: TableRecord): Promise<void> {
  const { store, opts } = run;
  await createDeferred({
    target: opts.target,
    store,
    log: opts.log,
    signal: opts.signal,
    stage: 'indexes',
    concurrency: 1,
    settings: SETTINGS,
    only: (o) => {
      const on = objectTable(o.sql);
      return on !== null && on.schema === t.schema && on.name === t.name;
    },
  }).catch((err) =>
    opts.log.warn(
      { table: `${t.schema}.${t.name}`, err: (err as Error).message },
      'early index build failed; retried after the copy',
    ),
  );
}

/** Unique and exclusion constraints, then what follows indexes (partition index attach, statistics). */
export async function buildUniqueConstraints(run: RunContext): Promise<void> {
  const { store, opts } = run;
  const common = { target: opts.target, store, log: opts.log, signal: opts.signal };
  await createDeferred({ ...common, stage: 'unique', concurrency: opts.jobs, settings: SETTINGS });
  await createDeferred({ ...common, stage: 'post-indexes', concurrency: 1 });
  store.setMeta('unique_built', new Date().toISOString());
  // Every copied table (partitions included) and, under capture, the partitioned roots.
  const roots = new Map<string, { schema: string; name: string }>();
  for (const t of store.tables()) {
    roots.set(`${t.schema}.${t.name}`, { schema: t.schema, name: t.name });
  }
  for (const c of store.captures()) roots.set(`${c.schema}.${c.name}`, { schema: c.schema, name: c.name });
  await analyzeTables(opts.target, [...roots.values()], opts.jobs, opts.log);
}
