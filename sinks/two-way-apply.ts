// The apply of a batch in two-way sync, where both sides take writes and keep their foreign keys
// and triggers: the batch's rows are staged (with the time of each key's last change on the
// sending side), the keys changed on this side too and not sent yet (its own change log holds
// them) are conflicts, each resolved by the run's rule (the losers' staged rows are dropped: this
// side's version stays and goes the other way later); then the keys gone on the sending side are
// deleted and the others upserted (INSERT … ON CONFLICT DO UPDATE), never deleted and inserted
// again: a delete would cascade to this side's child rows, or be refused by their foreign keys.
import type pg from 'pg';
import {
  deleteStagedSql,
  insertMissingSql,
  type StagedNames,
  updatePresentSql,
  upsertPresentSql,
} from './staged-sql.js';

/** Who wins a key changed on both sides: the sending side, this side, or the later change. */
export type ConflictWinner = 'incoming' | 'own';

export interface TwoWayApply {
  /** This side's own change log (qualified): keys changed here and not yet sent the other way. */
  ownLog: string;
  rule: ConflictWinner | 'latest';
  /** With `latest`, who wins two changes made at the same time (the source, by convention). */
  tie: ConflictWinner;
}

/** One batch's way of applying: the fallbacks its table needed so far. */
export interface TwoWayBatch extends TwoWayApply {
  /** Every staged key deleted first (an upsert broke a unique constraint: two rows swapped a value). */
  deleteAll?: boolean;
  /** UPDATE, then INSERT the keys not there: ON CONFLICT refuses the key as arbiter (DEFERRABLE). */
  updateInsert?: boolean;
}

export interface Conflict {
  /** The key's columns in their text form. */
  key: string[];
  winner: ConflictWinner;
}

/**
 * An application transaction on this side changed a key of the batch while it was applied: the
 * batch is rolled back and applied again, which then sees the change as a conflict.
 */
export class ConflictRace extends Error {}

const pending = (n: StagedNames, log: string) =>
  `SELECT ${n.keyCols.map((c) => `l.${c}`).join(', ')}, max(l.${n.log.at}) AS own_at FROM ${log} l
    WHERE l.${n.log.op} <> 'T' AND (${n.keyCols.map((c) => `l.${c}`).join(', ')}) IN (SELECT ${n.keyCols.join(', ')} FROM ${n.temp})
    GROUP BY ${n.keyCols.map((c) => `l.${c}`).join(', ')}`;

/**
 * Locks this side's rows of the batch's keys (an application transaction writing one ends
 * first), finds the keys this side changed too, and drops from the staged rows those this side
 * wins. Returns every conflict with its winner.
 */
export async function resolveConflicts(
  target: pg.Client,
  n: StagedNames,
  twoWay: TwoWayApply,
): Promise<Conflict[]> {
  await target.query(
    `SELECT 1 FROM ${n.from} AS pgferry_t JOIN ${n.temp} AS pgferry_k ON ${n.match} FOR UPDATE OF pgferry_t`,
  );
  const ownWins =
    twoWay.rule === 'latest'
      ? `(p.own_at > pgferry_k.${n.atCol} OR (p.own_at = pgferry_k.${n.atCol} AND ${twoWay.tie === 'own'}))`
      : String(twoWay.rule === 'own');
  const keyText = `ARRAY[${n.keyCols.map((c) => `p.${c}::text`).join(', ')}]`;
  const { rows } = await target.query<{ key: string[]; own: boolean }>(
    `WITH p AS (${pending(n, twoWay.ownLog)}),
          dropped AS (DELETE FROM ${n.temp} AS pgferry_k USING p
                       WHERE ${n.keyCols.map((c) => `pgferry_k.${c} = p.${c}`).join(' AND ')} AND ${ownWins}
                       RETURNING ${n.keyCols.map((c) => `p.${c}`).join(', ')})
     SELECT ${keyText} AS key,
            EXISTS (SELECT 1 FROM dropped d WHERE ${n.keyCols.map((c) => `d.${c} = p.${c}`).join(' AND ')}) AS own
       FROM p`,
  );
  return rows.map((r) => ({ key: r.key, winner: r.own ? 'own' : 'incoming' }));
}

/**
 * Deletes the keys gone on the sending side and upserts the others (see TwoWayBatch for the
 * fallbacks). Then checks that no key of the batch became pending here meanwhile (ConflictRace).
 */
export async function upsertStaged(
  target: pg.Client,
  n: StagedNames,
  twoWay: TwoWayBatch,
  conflicts: Conflict[],
): Promise<{ rows: number; deleted: number }> {
  const deleteAll = twoWay.deleteAll === true;
  // The staged keys still pending here are the conflicts the sending side won: any more is a race.
  const before = conflicts.filter((c) => c.winner === 'incoming').length;
  const deleted = await target.query(deleteStagedSql(n, !deleteAll));
  let rows = 0;
  if (twoWay.updateInsert) {
    // An application's insert of a batch key after resolveConflicts fails the INSERT (23505): the
    // batch is applied again, and that key is then a conflict.
    if (n.nonKeyCols.length > 0 && !deleteAll)
      rows += (await target.query(updatePresentSql(n))).rowCount ?? 0;
    rows += (await target.query(insertMissingSql(n))).rowCount ?? 0;
  } else {
    rows = (await target.query(upsertPresentSql(n))).rowCount ?? 0;
  }
  const still = await target.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (${pending(n, twoWay.ownLog)}) p`,
  );
  if ((still.rows[0]?.n ?? 0) > before) {
    throw new ConflictRace(`${n.table}: a key of the batch changed on this side while it was applied`);
  }
  return { rows, deleted: deleted.rowCount ?? 0 };
}
