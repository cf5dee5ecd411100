// Creates the post-data objects recorded at schema time: indexes and key constraints after the
// copy, several at once; the rest in dump order. Each object is marked done in the checkpoint
// store when it commits; one that committed before a crash but was not marked is recognised by
// its "already exists" error and counted as done.
import PQueue from 'p-queue';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore, ObjectStage, SchemaObjectRecord } from '../../checkpoints/store.js';
import type { ErrorCode } from '../../lib/error-codes.js';
import { PgferryError, sqlstateOf } from '../../lib/errors.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';

// 42P07 duplicate_table (an index name), 42710 duplicate_object (a constraint or trigger name).
const ALREADY_EXISTS = new Set(['42P07', '42710']);

export interface DeferredRun {
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  stage: ObjectStage;
  concurrency: number;
  signal: AbortSignal;
  errorCode?: ErrorCode;
  /** Session settings for the builds (e.g. maintenance_work_mem). */
  settings?: string[];
  /** Rewrites a statement before it runs (e.g. a foreign key made NOT VALID at cutover). */
  transform?: (sql: string) => string;
  /** SQLSTATEs on which the rewritten statement is retried as recorded. */
  fallbackOn?: string[];
  /** Builds only the objects this accepts (e.g. those of one table). */
  only?: (obj: SchemaObjectRecord) => boolean;
}

async function session(run: DeferredRun): Promise<pg.Client> {
  const client = await connect(run.target, 'index');
  // pg_dump writes every name schema-qualified and expects an empty search_path.
  await client.query("SELECT pg_catalog.set_config('search_path', '', false)");
  for (const s of run.settings ?? []) await client.query(s);
  return client;
}

export async function createDeferred(run: DeferredRun): Promise<number> {
  const pending = run.store
    .schemaObjects(run.stage)
    .filter((o) => o.status === 'pending' && (run.only?.(o) ?? true));
  if (pending.length === 0) return 0;
  const idle: pg.Client[] = [];
  const queue = new PQueue({ concurrency: Math.max(1, run.concurrency) });
  let failure: unknown;
  const build = async (obj: SchemaObjectRecord) => {
    if (failure || run.signal.aborted) return;
    let client: pg.Client;
    try {
      client = idle.pop() ?? (await session(run));
    } catch (err) {
      failure ??= err;
      return;
    }
    const started = Date.now();
    try {
      const sql = run.transform ? run.transform(obj.sql) : obj.sql;
      try {
        await client.query(sql);
      } catch (err) {
        const state = sqlstateOf(err);
        if (sql === obj.sql || !state || !run.fallbackOn?.includes(state)) throw err;
        await client.query(obj.sql);
      }
      run.log.info(
        { kind: obj.kind, object: obj.name, seconds: (Date.now() - started) / 1000 },
        `${obj.kind.toLowerCase()} created`,
      );
    } catch (err) {
      const state = sqlstateOf(err);
      if (!(state && ALREADY_EXISTS.has(state))) {
        await client.end().catch(() => {});
        failure ??= new PgferryError(
          run.errorCode ?? 'PGFERRY_INDEX_BUILD_FAILED',
          `${obj.kind} ${obj.name}: ${(err as Error).message}${state ? ` (SQLSTATE ${state})` : ''}`,
          { side: 'target', object: obj.name, sqlstate: state, cause: err },
        );
        return;
      }
    }
    run.store.finishSchemaObject(obj.id);
    idle.push(client);
  };
  for (const obj of pending) void queue.add(() => build(obj));
  await queue.onIdle();
  await Promise.all(idle.map((c) => c.end().catch(() => {})));
  if (failure) throw failure;
  if (run.signal.aborted)
    throw new PgferryError('PGFERRY_RUN_CANCELLED', `stopped while creating ${run.stage}`, { side: 'state' });
  return pending.length;
}
