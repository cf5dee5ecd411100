// The names of a trigger log's own columns (engine/capture/triggers/), which sit beside the key
// columns under their own names: pgferry_seq, pgferry_op, pgferry_at and pgferry_rel, each with
// underscores added while a key column of the table has that name. Shared by the capture, replay
// and two-way sync's apply, which all read the log.

export interface LogColumns {
  /** The position: the writing transaction's id. */
  seq: string;
  /** 'I', 'U', 'D' or 'T'. */
  op: string;
  /** When the change was captured. */
  at: string;
  /** A TRUNCATE row's relation. */
  rel: string;
}

/** `base`, with underscores added while one of the `taken` column names is it. */
export function freeName(base: string, taken: readonly string[]): string {
  let name = base;
  while (taken.includes(name)) name += '_';
  return name;
}

export function logColumns(key: readonly { name: string }[]): LogColumns {
  const names = key.map((k) => k.name);
  const free = (base: string) => freeName(base, names);
  return {
    seq: free('pgferry_seq'),
    op: free('pgferry_op'),
    at: free('pgferry_at'),
    rel: free('pgferry_rel'),
  };
}
