// Two-way sync in the run's state file (meta `two_way`): the conflict rule (the latest --conflict
// given), when both sides began to be replayed into each other, and the conflicts met so far (in
// total, by table, by winner, and the most recent with their keys).
import type { CheckpointStore } from '../../checkpoints/store.js';

export const CONFLICT_RULES = ['source-wins', 'target-wins', 'latest'] as const;
export type ConflictRule = (typeof CONFLICT_RULES)[number];

export interface TwoWayRecord {
  conflict: ConflictRule;
  /** When both sides began to be replayed into each other; null while the copy and first catch-up run. */
  startedAt: string | null;
  conflicts: { total: number; sourceWon: number; targetWon: number; byTable: Record<string, number> };
  /** The most recent conflicts, newest last. */
  recent: { table: string; key: string[]; winner: 'source' | 'target'; at: string }[];
}

const KEY = 'two_way';
const RECENT = 20;

export function twoWayOf(store: CheckpointStore): TwoWayRecord | null {
  const raw = store.getMeta(KEY);
  return raw ? (JSON.parse(raw) as TwoWayRecord) : null;
}

const save = (store: CheckpointStore, r: TwoWayRecord) => store.setMeta(KEY, JSON.stringify(r));

/** A run asked for two-way sync (it stays two-way once asked); a resume may change the rule. */
export function requestTwoWay(store: CheckpointStore, conflict: ConflictRule): void {
  const r = twoWayOf(store);
  if (r?.conflict === conflict) return;
  save(
    store,
    r
      ? { ...r, conflict }
      : {
          conflict,
          startedAt: null,
          conflicts: { total: 0, sourceWon: 0, targetWon: 0, byTable: {} },
          recent: [],
        },
  );
  if (r)
    store.event('warn', store.phase(), `two-way conflict rule changed from ${r.conflict} to ${conflict}`);
}

export function markTwoWayStarted(store: CheckpointStore): void {
  const r = twoWayOf(store);
  if (r && !r.startedAt) save(store, { ...r, startedAt: new Date().toISOString() });
}

/** Counts a batch's conflicts (one state-file write per batch). */
export function countConflicts(
  store: CheckpointStore,
  table: string,
  conflicts: { key: string[]; winner: 'source' | 'target' }[],
): void {
  const r = twoWayOf(store);
  if (!r || conflicts.length === 0) return;
  const at = new Date().toISOString();
  const won = (w: 'source' | 'target') => conflicts.filter((c) => c.winner === w).length;
  save(store, {
    ...r,
    conflicts: {
      total: r.conflicts.total + conflicts.length,
      sourceWon: r.conflicts.sourceWon + won('source'),
      targetWon: r.conflicts.targetWon + won('target'),
      byTable: { ...r.conflicts.byTable, [table]: (r.conflicts.byTable[table] ?? 0) + conflicts.length },
    },
    recent: [...r.recent, ...conflicts.map((c) => ({ table, key: c.key, winner: c.winner, at }))].slice(
      -RECENT,
    ),
  });
}
