// The change sources behind one interface (change-source.ts): which one a run reads (`--capture`,
// recorded in the run's setup), built from the checkpoint store, and what each needs of the
// source before a run may start with it.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../checkpoints/store.js';
import type { Finding } from '../preflight/findings.js';
import type { TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { BucardoSource } from './bucardo/bucardo-source.js';
import { bucardoProblems } from './bucardo/preflight.js';
import type { ChangeSource, ChangeSourceKind } from './change-source.js';
import { LogicalSource } from './logical/logical-source.js';
import { logicalProblems } from './logical/preflight.js';
import { TriggerSource } from './triggers/trigger-source.js';

export interface SourceContext {
  source: ConnInfo;
  log: Logger;
}

/** The change source a run reads: its setup's, triggers for a run of an older pgferry. */
export const captureKindOf = (store: CheckpointStore): ChangeSourceKind =>
  store.setup()?.capture ?? 'triggers';

/**
 * The run's change source, following the tables the checkpoint store records as captured. A
 * logical source keeps its confirmed position in the store too.
 */
export function openChangeSource(store: CheckpointStore, ctx: SourceContext): ChangeSource {
  const runId = store.runId();
  const captured = store.captures();
  switch (captureKindOf(store)) {
    case 'bucardo':
      return new BucardoSource(runId, captured);
    case 'logical':
      return new LogicalSource({ runId, captured, store, ...ctx });
    default:
      return new TriggerSource(runId, captured);
  }
}

/** What the source lacks for a change source (reads only): each problem with its fix. */
export function captureProblems(
  kind: ChangeSourceKind,
  client: pg.Client,
  tables: TableInfo[],
): Promise<Finding[]> {
  switch (kind) {
    case 'bucardo':
      return bucardoProblems(client, tables);
    case 'logical':
      return logicalProblems(client, tables);
    default:
      return Promise.resolve([]);
  }
}
