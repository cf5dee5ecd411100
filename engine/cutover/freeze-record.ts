// The cutover's record in the state file (meta `cutover`). It is written before writes on the
// source are frozen and updated after each step, so that after a crash every command that opens
// the state knows the source may be frozen, how (to undo it exactly: the revoked grants, whether
// the database was read-only before), and how far the cutover got.
import type { CheckpointStore } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { FreezeRecord } from './freeze.js';

export const CUTOVER_STEPS = [
  'freezing',
  'frozen',
  'writers stopped',
  'drained',
  'sequences set',
  'materialized views refreshed',
  'constraints and triggers created',
  'verified',
  'target ready',
] as const;
export type CutoverStep = (typeof CUTOVER_STEPS)[number];

export interface CutoverRecord {
  freeze: FreezeRecord;
  /** The last step that completed. From `target ready` on, the cutover cannot be undone. */
  step: CutoverStep;
  updatedAt: string;
}

const KEY = 'cutover';

export function readCutoverRecord(store: CheckpointStore): CutoverRecord | null {
  const raw = store.getMeta(KEY);
  return raw ? (JSON.parse(raw) as CutoverRecord) : null;
}

export function writeCutoverRecord(store: CheckpointStore, freeze: FreezeRecord, step: CutoverStep): void {
  const record: CutoverRecord = { freeze, step, updatedAt: new Date().toISOString() };
  store.setMeta(KEY, JSON.stringify(record));
}

export function clearCutoverRecord(store: CheckpointStore): void {
  store.deleteMeta(KEY);
}

/** A cutover that froze (or was freezing) the source and has not finished: null when there is none. */
export function interruptedCutover(store: CheckpointStore): CutoverRecord | null {
  const record = readCutoverRecord(store);
  if (!record || store.phaseDone('done')) return null;
  return record;
}

export const pastNoReturn = (record: CutoverRecord): boolean => record.step === 'target ready';

export function describeInterrupted(record: CutoverRecord): string {
  const how =
    record.freeze.method === 'external'
      ? 'writes were to be stopped by the operator (--freeze external)'
      : `writes on the source have been frozen (--freeze ${record.freeze.method}) since ${record.freeze.startedAt}`;
  return `a cutover of this run was interrupted: ${how}; last step done: ${record.step}`;
}

/** What a command that cannot finish the cutover tells the operator. */
export function refuseInterruptedCutover(store: CheckpointStore): void {
  const record = interruptedCutover(store);
  if (!record) return;
  const hint = pastNoReturn(record)
    ? 'The target was declared ready: finish with `pgferry cutover` (or `pgferry migrate --cutover-when-synced`) with the same --state.'
    : 'Finish it with `pgferry cutover` (or `pgferry migrate --cutover-when-synced`) with the same --state, or give the source its writes back with `pgferry cutover --abort`.';
  throw new PgferryError('PGFERRY_CUTOVER_INTERRUPTED', describeInterrupted(record), {
    side: 'state',
    hint,
  });
}
