// A table leaving a running migration (`pgferry tables remove PAT`): replay stops reading it
// (between rounds), the run forgets it (capture record, copy plan, the constraints and triggers it
// would have got at cutover), then its capture is removed from the source. The target keeps the
// table as the last replayed batch left it. The removed captures are kept in the request first,
// so a restart in between still removes them from the source.
import type { CaptureRecord, TableRequestRecord } from '../../checkpoints/store.js';
import { openChangeSource } from '../capture/sources.js';
import { objectTable } from '../schema/schema.js';
import { connect, q } from '../shared/db.js';
import { makeMatcher } from '../shared/table-filter.js';
import type { TablesContext } from './context.js';
import { refused } from './context.js';

export async function leaveTables(ctx: TablesContext, req: TableRequestRecord): Promise<string> {
  const { store, opts } = ctx.run;
  const matches = makeMatcher({ include: [req.pattern], exclude: [] });
  const kept = (req.detail.captures as CaptureRecord[] | undefined) ?? [];
  const leaving = [
    ...kept,
    ...store.captures().filter((c) => matches(c.schema, c.name) && !kept.some((k) => k.oid === c.oid)),
  ];
  if (leaving.length === 0) {
    throw refused(
      `no table of the migration matches ${req.pattern} (replicated: ${
        store
          .captures()
          .map((c) => `${c.schema}.${c.name}`)
          .join(', ') || 'none'
      })`,
    );
  }
  const names = leaving.map((c) => `${c.schema}.${c.name}`);
  ctx.step(req, 'leaving', { tables: names, detail: { captures: leaving } });
  for (const c of leaving) await ctx.dismiss(c.oid);
  const src = await connect(opts.source, 'control');
  try {
    // A partitioned table's copy plan names its partitions.
    const parts = await q<{ schema: string; name: string }>(
      src,
      'source',
      `SELECT n.nspname AS schema, c.relname AS name FROM unnest($1::oid[]) r(oid)
         CROSS JOIN LATERAL pg_partition_tree(r.oid) t JOIN pg_class c ON c.oid = t.relid
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf`,
      [leaving.map((c) => c.oid)],
    );
    forget(ctx, leaving, parts);
    ctx.step(req, 'forgotten');
    const changes = openChangeSource(store, opts);
    for (const c of leaving) {
      await changes.uninstall(
        src,
        {
          ...c,
          key: JSON.parse(c.keyColumns) as { name: string; type: string }[],
          partitioned: c.partitioned === 1,
        },
        { log: opts.log, signal: ctx.signal, lockWaitMs: opts.captureLockWaitMs },
      );
    }
  } finally {
    await src.end().catch(() => {});
  }
  return `${names.join(', ')} left the migration: capture removed from the source, the target's copy kept as last replayed`;
}

function forget(
  ctx: TablesContext,
  leaving: CaptureRecord[],
  parts: { schema: string; name: string }[],
): void {
  const { store } = ctx.run;
  const gone = new Set(leaving.map((c) => `${c.schema}.${c.name}`));
  store.atomically(() => {
    for (const t of [...leaving, ...parts]) store.removeTablePlan(t.schema, t.name);
    for (const c of leaving) store.removeCapture(c.oid);
    const pending = store.schemaObjects('cutover').filter((o) => {
      const on = objectTable(o.sql);
      return o.status === 'pending' && on !== null && gone.has(`${on.schema}.${on.name}`);
    });
    store.removeSchemaObjects(pending.map((o) => o.id));
  });
}
