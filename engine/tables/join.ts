// A table joining a running migration (`pgferry tables add PAT`), while the other tables replay:
// checked on both sides first (a primary key, privileges, a target table that is missing, or
// empty and of the same shape), then the same steps the run took for its first tables: capture
// installed on the source before any copy snapshot; the table created on the target (pg_dump of
// it alone); its copy in key ranges under renewed snapshots; its keys and indexes; then replay
// takes it with one whole batch, after which its unique constraints are built. Each step is
// recorded in the request, so a restart goes on where it stopped; a failure after capture went
// on undoes the join (capture removed, the target table emptied, its plan forgotten).
import type pg from 'pg';
import type { TableRequestRecord } from '../../checkpoints/store.js';
import { isPgferryError, PgferryError } from '../../lib/errors.js';
import { qualified, quoteIdent } from '../../lib/sql.js';
import type { ChangeSourceKind, InstalledTable } from '../capture/change-source.js';
import { captureRecord } from '../capture/phase.js';
import { captureKindOf, captureProblems, openChangeSource } from '../capture/sources.js';
import { captureUnits, describeCapture } from '../capture/triggers/triggers.js';
import { runCopy } from '../copy/copy.js';
import { planTables } from '../copy/phase.js';
import { SnapshotPool } from '../copy/snapshot.js';
import { compareTable } from '../drift/compare.js';
import { sourceShapes, targetShapes } from '../drift/shape.js';
import { analyzeTables } from '../schema/analyze.js';
import { createDeferred } from '../schema/deferred-objects.js';
import { applyPreData, classifyPostData, dumpSection, parseDump, preparePreData } from '../schema/schema.js';
import { copyUnits, displayName, splitTables, type TableInfo } from '../shared/catalog.js';
import { connect, q } from '../shared/db.js';
import { requireTool } from '../shared/pg-tools.js';
import type { TablesContext } from './context.js';
import { refused } from './context.js';

/** A join's steps in order; a resumed request skips what its recorded step says is done. */
const STEPS = ['matched', 'captured', 'schema', 'copied', 'indexed', 'replaying', 'constraints'] as const;
type Step = (typeof STEPS)[number];

export async function joinTables(ctx: TablesContext, req: TableRequestRecord): Promise<string> {
  const { run } = ctx;
  const src = await connect(run.opts.source, 'control');
  let dst: pg.Client | undefined;
  try {
    dst = await connect(run.opts.target, 'control');
    return await join(ctx, req, src, dst);
  } finally {
    await Promise.all([src.end().catch(() => {}), dst?.end().catch(() => {})]);
  }
}

async function join(
  ctx: TablesContext,
  req: TableRequestRecord,
  src: pg.Client,
  dst: pg.Client,
): Promise<string> {
  const { store } = ctx.run;
  const done = (s: Step) => req.step !== null && STEPS.indexOf(req.step as Step) >= STEPS.indexOf(s);
  const { selected } = await splitTables(src, { include: [req.pattern], exclude: [] });
  const captured = new Set(store.captures().map((c) => c.oid));
  // A resumed join keeps the tables it matched first (a table created since is not taken in),
  // including those it already handed to replay.
  const units = captureUnits(selected).filter((t) =>
    done('matched') ? req.tables.includes(displayName(t)) : !captured.has(t.oid),
  );
  if (units.length === 0) {
    if (captureUnits(selected).length > 0 && !done('matched')) {
      return `${captureUnits(selected).map(displayName).join(', ')} already in the migration`;
    }
    if (!done('matched')) throw refused(`no table on the source matches ${req.pattern}`);
  }
  const partitionsOf = (t: TableInfo) =>
    selected.filter((p) => p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name);
  const names = units.map(displayName);
  if (!done('matched')) {
    const kind = captureKindOf(store);
    checkSource(units, selected, kind);
    // What the run's change source needs of these tables (Bucardo's triggers, a publishable table).
    const [problem] = await captureProblems(kind, src, [...units, ...units.flatMap(partitionsOf)]);
    if (problem) throw refused(`${problem.message}: ${problem.fix}`, problem.object ?? names[0]);
    await checkTarget(src, dst, units);
    ctx.step(req, 'matched', { tables: names });
  }
  try {
    return await joinChecked(ctx, req, { src, dst, units, selected, partitionsOf, done });
  } catch (err) {
    if (isPgferryError(err) && err.code === 'PGFERRY_RUN_CANCELLED') throw err;
    if (!ctx.transient(err) && !ctx.signal.aborted) await undo(ctx, req, src, dst, units, selected);
    throw err;
  }
}

interface Joining {
  src: pg.Client;
  dst: pg.Client;
  units: TableInfo[];
  selected: TableInfo[];
  partitionsOf: (t: TableInfo) => TableInfo[];
  done: (s: Step) => boolean;
}

async function joinChecked(ctx: TablesContext, req: TableRequestRecord, j: Joining): Promise<string> {
  const { run } = ctx;
  const { store, opts } = run;
  const { src, dst, units, partitionsOf, done } = j;
  const names = units.map(displayName).join(', ');
  const changes = openChangeSource(store, opts);
  const installOpts = { log: opts.log, signal: ctx.signal, lockWaitMs: opts.captureLockWaitMs };
  const installed = await changes.installed(src);
  const captures = new Map<number, InstalledTable>();
  for (const t of units) {
    captures.set(
      t.oid,
      installed.has(t.oid)
        ? changes.installedAs(t)
        : await changes.install(src, t, partitionsOf(t), installOpts),
    );
  }
  if (!done('captured')) ctx.step(req, 'captured');

  const all = units.flatMap((t) => [t, ...partitionsOf(t)]);
  if (!done('schema')) {
    const ids = await createOnTarget(ctx, src, dst, all);
    ctx.step(req, 'schema', { detail: { objects: ids } });
  }
  const mine = new Set((req.detail.objects as number[] | undefined) ?? []);
  const ofJoin = (o: { id: number }) => mine.has(o.id);

  if (!done('copied')) {
    const planned = new Set(store.tables().map((t) => `${t.schema}.${t.name}`));
    const plan = await planTables(
      src,
      copyUnits(all).filter((u) => !planned.has(displayName(u))),
      opts,
    );
    store.savePlan(plan);
    ctx.note('info', `${names}: copying (capture is on)`);
    // Under capture the copy needs no single snapshot: each is renewed past --max-snapshot-age.
    const snapshots = new SnapshotPool(opts.source, opts.maxSnapshotAgeMs);
    try {
      await runCopy({
        source: opts.source,
        target: opts.target,
        store,
        log: opts.log,
        jobs: opts.jobs,
        signal: ctx.signal,
        snapshots,
        onRetry: opts.onRetry,
        onLost: run.lost,
        onHealthy: run.healthy,
      });
    } finally {
      await snapshots.close();
    }
    ctx.step(req, 'copied');
  }
  const deferred = { target: opts.target, store, log: opts.log, signal: ctx.signal, only: ofJoin };
  if (!done('indexed')) {
    await createDeferred({ ...deferred, stage: 'indexes', concurrency: opts.jobs });
    ctx.step(req, 'indexed');
  }
  if (!done('replaying')) {
    for (const t of units) store.saveCapture(captureRecord(captures.get(t.oid)!, t));
    ctx.step(req, 'replaying');
  }
  // The first whole batch makes each table equal to the source at its snapshot: chunks copied
  // under different snapshots may hold a unique value twice until then.
  const applied = await ctx.admit(store.captures().filter((c) => units.some((t) => t.oid === c.oid)));
  await createDeferred({ ...deferred, stage: 'unique', concurrency: opts.jobs });
  await createDeferred({ ...deferred, stage: 'post-indexes', concurrency: 1 });
  ctx.step(req, 'constraints');
  await analyzeTables(opts.target, all, opts.jobs, opts.log);
  return `${names} joined the migration (first batch: ${applied} changes)`;
}

/** What the run requires of every table it replicates (preflight's checks, for these tables). */
function checkSource(units: TableInfo[], selected: TableInfo[], kind: ChangeSourceKind): void {
  for (const t of units) {
    const name = displayName(t);
    describeCapture('check', t); // PGFERRY_TABLE_NO_PRIMARY_KEY
    const unreadable = selected.find(
      (p) =>
        (p === t || (p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name)) &&
        !p.canSelect,
    );
    if (unreadable)
      throw refused(`${displayName(unreadable)}: pgferry's source role may not SELECT it`, name);
    if (kind === 'triggers' && !t.canTrigger)
      throw refused(`${name}: pgferry's source role may not create triggers on it`, name);
    if (t.rowSecurity) throw refused(`${name}: row-level security would hide rows from the copy`, name);
  }
}

/** A table already on the target must be empty and of the source's shape; a missing one is created. */
async function checkTarget(src: pg.Client, dst: pg.Client, units: TableInfo[]): Promise<void> {
  const source = await sourceShapes(
    src,
    units.map((t) => t.oid),
  );
  const target = await targetShapes(dst, units);
  for (const t of units) {
    const there = target.get(displayName(t));
    if (!there) continue;
    const [row] = await q<{ rows: boolean }>(
      dst,
      'target',
      `SELECT EXISTS (SELECT 1 FROM ${qualified(t.schema, t.name)}) AS rows`,
    );
    if (row?.rows) {
      throw new PgferryError(
        'PGFERRY_TARGET_NOT_EMPTY',
        `${displayName(t)} already holds rows on the target`,
        {
          side: 'target',
          object: displayName(t),
          hint: `Empty it (TRUNCATE) or drop it on the target, then run \`pgferry tables add ${displayName(t)}\` again.`,
        },
      );
    }
    const diffs = compareTable({
      oid: t.oid,
      recorded: t,
      source: source.get(t.oid),
      target: there,
      targetAsRecorded: there,
    });
    if (diffs.length > 0) {
      throw refused(
        `the target's ${displayName(t)} differs: ${diffs.map((d) => d.message).join('; ')}`,
        displayName(t),
      );
    }
  }
}

/**
 * The tables created on the target from a dump of them alone (with their owned sequences), unless
 * they are there already; their post-data objects are added to the run's. Returns those objects' ids.
 */
async function createOnTarget(
  ctx: TablesContext,
  src: pg.Client,
  dst: pg.Client,
  all: TableInfo[],
): Promise<number[]> {
  const { opts, store } = ctx.run;
  const [ver] = await q<{ n: string }>(src, 'source', "SELECT current_setting('server_version_num') AS n");
  const pgDump = await requireTool('pg_dump', Math.floor(Number(ver!.n) / 10000));
  const dumpOpts = { pgDump, source: opts.source, excludedTables: [], tables: all };
  const existing = await targetShapes(dst, all);
  if (all.some((t) => !existing.has(displayName(t)))) {
    const psql = await requireTool('psql', 0);
    const { script } = preparePreData(await dumpSection('pre-data', dumpOpts));
    // pg_dump --table dumps no schema: one made on the source since the run started is created here.
    const schemas = [...new Set(all.map((t) => t.schema))].map(
      (s) => `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(s)};`,
    );
    await applyPreData(psql, opts.target, `${schemas.join('\n')}\n${script}`);
  }
  const { objects } = classifyPostData(parseDump(await dumpSection('post-data', dumpOpts)).entries);
  const before = new Set(store.schemaObjects().map((o) => o.id));
  store.addSchemaObjects(objects);
  return store
    .schemaObjects()
    .filter((o) => !before.has(o.id))
    .map((o) => o.id);
}

/** A join that failed for good: capture removed, the target's tables emptied, plan and objects forgotten. */
async function undo(
  ctx: TablesContext,
  req: TableRequestRecord,
  src: pg.Client,
  dst: pg.Client,
  units: TableInfo[],
  selected: TableInfo[],
): Promise<void> {
  const { store, opts } = ctx.run;
  const current = store.tableRequest(req.id) ?? req;
  const changes = openChangeSource(store, opts);
  for (const t of units) {
    store.removeCapture(t.oid);
    await changes
      .uninstall(src, changes.installedAs(t), {
        log: opts.log,
        signal: new AbortController().signal,
      })
      .catch((err) =>
        opts.log.warn({ table: displayName(t), err: (err as Error).message }, 'capture not removed'),
      );
  }
  if (current.step !== null && current.step !== 'matched' && current.step !== 'captured') {
    const tables = selected.filter((s) =>
      units.some(
        (t) => t === s || (s.partitionRoot?.schema === t.schema && s.partitionRoot?.name === t.name),
      ),
    );
    for (const t of copyUnits(tables)) store.removeTablePlan(t.schema, t.name);
    for (const t of units) {
      await dst.query(`TRUNCATE ${qualified(t.schema, t.name)}`).catch(() => {});
    }
    store.removeSchemaObjects((current.detail.objects as number[] | undefined) ?? []);
  }
}
