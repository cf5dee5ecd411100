// The statements that write a staged batch into its table: the batch's rows are in a temporary
// table (`pgferry_k`), each with a presence flag (false: the key is gone on the sending side).
// Replay (batch-applier.ts) and two-way sync (two-way-apply.ts) write with the same ones.
import type { LogColumns } from '../lib/log-columns.js';

/** A staged batch's names, every identifier already quoted. */
export interface StagedNames {
  table: string;
  /** The table as replay writes it: ONLY for a plain table (inheritance children are their own). */
  from: string;
  temp: string;
  present: string;
  keyCols: string[];
  /** The key of `pgferry_t` (the table) equal to that of `pgferry_k` (the staged row). */
  match: string;
  /** Every written column, in a list. */
  cols: string;
  nonKeyCols: string[];
  /**
   * Key columns whose equal values may be spelled otherwise (a text key under a case-insensitive
   * collation, citext, numeric's scale): an update rewrites them too, so that the row keeps the
   * source's spelling. Integer columns are left out: one spelling each, and an identity GENERATED
   * ALWAYS column cannot be set.
   */
  respelledKeyCols: string[];
  /** Two-way sync: the staged rows' time column, and the names of the log's own columns. */
  atCol: string;
  log: LogColumns;
}

const setFrom = (n: StagedNames, row: string) =>
  [...n.respelledKeyCols, ...n.nonKeyCols].map((c) => `${c} = ${row}.${c}`).join(', ');

/** Deletes the batch's keys (only the gone ones with `goneOnly`). */
export const deleteStagedSql = (n: StagedNames, goneOnly: boolean): string =>
  `DELETE FROM ${n.from} AS pgferry_t USING ${n.temp} AS pgferry_k WHERE ${n.match}${goneOnly ? ` AND NOT pgferry_k.${n.present}` : ''}`;

// OVERRIDING SYSTEM VALUE: identity GENERATED ALWAYS columns take the source's values, as COPY
// writes them. The alias: an upsert into a table named "excluded" would find EXCLUDED ambiguous.
export const insertPresentSql = (n: StagedNames): string =>
  `INSERT INTO ${n.table} AS pgferry_t (${n.cols}) OVERRIDING SYSTEM VALUE SELECT ${n.cols} FROM ${n.temp} AS pgferry_k WHERE pgferry_k.${n.present}`;

/** Inserts the present rows, each updating the row with its key where there is one. */
export const upsertPresentSql = (n: StagedNames): string =>
  `${insertPresentSql(n)} ON CONFLICT (${n.keyCols.join(', ')}) ${n.nonKeyCols.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${setFrom(n, 'EXCLUDED')}`}`;

/** Updates in place the rows of present keys that exist. */
export const updatePresentSql = (n: StagedNames): string =>
  `UPDATE ${n.from} AS pgferry_t SET ${setFrom(n, 'pgferry_k')} FROM ${n.temp} AS pgferry_k WHERE ${n.match} AND pgferry_k.${n.present}`;

/** Inserts the present rows whose key is not there. */
export const insertMissingSql = (n: StagedNames): string =>
  `${insertPresentSql(n)} AND NOT EXISTS (SELECT FROM ${n.from} AS pgferry_t WHERE ${n.match})`;
