// The schema phase of `migrate`: pre-data dumped from the source and applied to the target with
// the run's mark; post-data recorded by stage (keys and indexes after the copy, unique constraints
// after the first catch-up, foreign keys and triggers at cutover), built by the later phases.
import { isPgferryError } from '../../lib/errors.js';
import { ExportedSnapshot, SnapshotPool } from '../copy/snapshot.js';
import { refuseNonEmptyTarget } from '../run/binding.js';
import type { RunContext } from '../run/context.js';
import { runMarkSql } from '../run/identity.js';
import { copyUnits } from '../shared/catalog.js';
import { q } from '../shared/db.js';
import { requireTool } from '../shared/pg-tools.js';
import { pauseAutovacuumSql } from './autovacuum.js';
import { applyPreData, classifyPostData, dumpSection, parseDump, preparePreData } from './schema.js';

export async function schemaPhase(run: RunContext): Promise<void> {
  const { store, opts } = run;
  run.enter('schema');
  const [ver] = await q<{ n: string }>(
    run.src,
    'source',
    "SELECT current_setting('server_version_num') AS n",
  );
  const major = Math.floor(Number(ver!.n) / 10000);
  const pgDump = await requireTool('pg_dump', major);
  const psql = await requireTool('psql', 0);

  const { selected, excluded } = await run.selectedTables();
  // The schema is dumped under the snapshot the copy starts from; with capture, the copy needs
  // a snapshot taken after capture was installed, so this one only serves the dump.
  const snapshot = await ExportedSnapshot.take(opts.source);
  if (run.copyOnly) run.useSnapshots(new SnapshotPool(opts.source, null, snapshot));
  const dumpOpts = { pgDump, source: opts.source, snapshot: snapshot.id, excludedTables: excluded };
  if (!store.getMeta('predata_applied')) {
    const { script, skipped } = preparePreData(await dumpSection('pre-data', dumpOpts));
    for (const s of skipped) store.event('info', 'schema', `left out: ${s.type} ${s.name}`);
    // The run's mark commits with the schema: the target is this run's exactly when it has tables.
    const setup = store.setup()!;
    const pause = await pauseAutovacuumSql(run.src, store, copyUnits(selected));
    try {
      await applyPreData(
        psql,
        opts.target,
        `${script}\n${pause}\n${runMarkSql(setup.runId, setup.source)}\n`,
      );
    } catch (err) {
      // Two new runs started into one empty target at once: the other one's schema came first.
      if (isPgferryError(err) && err.code === 'PGFERRY_SCHEMA_APPLY_FAILED')
        await refuseNonEmptyTarget(run.dst, opts.target, true);
      throw err;
    }
    store.setMeta('predata_applied', new Date().toISOString());
    opts.log.info({ tables: selected.length }, 'schema created on the target (pre-data)');
  }
  const { objects, skipped } = classifyPostData(parseDump(await dumpSection('post-data', dumpOpts)).entries);
  for (const s of skipped) {
    store.event('warn', 'schema', `left out (needs a superuser): ${s.type} ${s.name}`);
    opts.log.warn({ object: s.name, kind: s.type }, 'left out: needs a superuser on the target');
  }
  if (!run.copyOnly) await snapshot.release();
  store.saveSchemaObjects(objects);
  const count = (stage: string) => objects.filter((o) => o.stage === stage).length;
  opts.log.info(
    { indexes: count('indexes'), afterIndexes: count('post-indexes'), atCutover: count('cutover') },
    'post-data recorded: keys and indexes are built after the copy, constraints and triggers at cutover',
  );
  run.finish('schema');
}
