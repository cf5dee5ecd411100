// The reverse direction's state in the run's state file (meta keys): whether the run asked for
// reverse replication at its cutover, the target's tables captured for it (their log tables on
// the target, the columns replay writes them with), the reverse replay's figures, and the
// rollback's record. The forward direction's tables stay in `captures`; the reverse ones are
// fixed at install (no drift handling, no tables joining after the cutover), so meta holds them.
import type { CaptureRecord, CheckpointStore } from '../../checkpoints/store.js';
import type { FreezeRecord } from '../cutover/freeze.js';
import type { ReplayStats } from '../replay/options.js';
import { type TwoWayRecord, twoWayOf } from '../two-way/state.js';

const KEYS = {
  /** '1' once `migrate --reverse-after-cutover` asked for it: every later cutover installs it. */
  requested: 'reverse_after_cutover',
  captures: 'reverse_captures',
  /** When the capture on the target was complete (ISO 8601). */
  installed: 'reverse_installed',
  stats: 'reverse_replay',
  rollback: 'rollback',
} as const;

/** Where the reverse replay's figures are kept (the Replayer reads its last batch time from it). */
export const REVERSE_STATS_KEY = KEYS.stats;

export const ROLLBACK_STEPS = [
  'freezing',
  'frozen',
  'writers stopped',
  'drained',
  'sequences set',
  'materialized views refreshed',
  'constraints and triggers restored',
  'verified',
  'source ready',
  'done',
] as const;
export type RollbackStep = (typeof ROLLBACK_STEPS)[number];

/** The rollback's record: the new side's freeze (kept until the next cutover gives its writes back). */
export interface RollbackRecord {
  freeze: FreezeRecord;
  step: RollbackStep;
  updatedAt: string;
  downtimeSeconds?: number;
}

export const reverseRequested = (store: CheckpointStore): boolean => store.getMeta(KEYS.requested) === '1';
export const requestReverse = (store: CheckpointStore): void => store.setMeta(KEYS.requested, '1');

export function reverseCaptures(store: CheckpointStore): CaptureRecord[] {
  const raw = store.getMeta(KEYS.captures);
  return raw ? (JSON.parse(raw) as CaptureRecord[]) : [];
}

export function saveReverseCaptures(store: CheckpointStore, records: CaptureRecord[]): void {
  store.setMeta(KEYS.captures, JSON.stringify(records));
}

export const reverseInstalledAt = (store: CheckpointStore): string | null => store.getMeta(KEYS.installed);
export const markReverseInstalled = (store: CheckpointStore): void =>
  store.setMeta(KEYS.installed, new Date().toISOString());

/** Forgets the reverse direction (its capture was removed from the target by a rollback). */
export function forgetReverse(store: CheckpointStore): void {
  for (const key of [KEYS.captures, KEYS.installed, KEYS.stats]) store.deleteMeta(key);
}

export function reverseStats(store: CheckpointStore): ReplayStats | null {
  const raw = store.getMeta(KEYS.stats);
  return raw ? (JSON.parse(raw) as ReplayStats) : null;
}

export function readRollbackRecord(store: CheckpointStore): RollbackRecord | null {
  const raw = store.getMeta(KEYS.rollback);
  return raw ? (JSON.parse(raw) as RollbackRecord) : null;
}

export function writeRollbackRecord(store: CheckpointStore, record: Omit<RollbackRecord, 'updatedAt'>): void {
  store.setMeta(KEYS.rollback, JSON.stringify({ ...record, updatedAt: new Date().toISOString() }));
}

export const clearRollbackRecord = (store: CheckpointStore): void => store.deleteMeta(KEYS.rollback);

/** A rollback that froze (or was freezing) the new side and has not given the old one its writes. */
export function interruptedRollback(store: CheckpointStore): RollbackRecord | null {
  const r = readRollbackRecord(store);
  return r && r.step !== 'done' ? r : null;
}

/** What status shows of the reverse direction; null for a run without one. */
export interface ReverseStatus {
  /** Two-way sync: the conflict rule, since when, and the conflicts met. */
  twoWay: TwoWayRecord | null;
  requested: boolean;
  installedAt: string | null;
  tables: number;
  replay: ReplayStats | null;
  rollback: { step: RollbackStep; updatedAt: string; downtimeSeconds: number | null } | null;
}

export function reverseStatus(store: CheckpointStore): ReverseStatus | null {
  const rollback = readRollbackRecord(store);
  const installedAt = reverseInstalledAt(store);
  const twoWay = twoWayOf(store);
  if (!reverseRequested(store) && !installedAt && !rollback && !twoWay) return null;
  return {
    twoWay,
    requested: reverseRequested(store),
    installedAt,
    tables: reverseCaptures(store).length,
    replay: installedAt ? reverseStats(store) : null,
    rollback: rollback
      ? {
          step: rollback.step,
          updatedAt: rollback.updatedAt,
          downtimeSeconds: rollback.downtimeSeconds ?? null,
        }
      : null,
  };
}
