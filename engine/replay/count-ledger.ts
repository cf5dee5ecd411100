// Row-count changes per table since a verified point (the cutover's), kept from both sides
// independently: the source's from the changes each consumed batch held (inserts minus deletes),
// the target's from what the batch applier did (rows copied in minus rows deleted). An UPDATE
// counts 0 on the source (a key change is logged as two updates), a row moved between partitions
// a delete and an insert. A table whose change is not known exactly (a TRUNCATE in a batch, a
// source that does not count, a batch that failed after the target may have committed it) is
// marked unknown: the cutover counts it in full. The ledger lives in the process only: after a
// restart there is none, and the cutover counts every table.

export interface BatchCounts {
  /** The row count's change on the source over the batch; null when not known. */
  source: number | null;
  /** The row count's change on the target by the batch's commit; null when not known. */
  target: number | null;
}

const keyOf = (t: { schema: string; name: string }) => JSON.stringify([t.schema, t.name]);

export class CountLedger {
  private readonly deltas = new Map<string, { source: number; target: number }>();
  private readonly unknown = new Set<string>();

  /** A batch committed on the target and consumed on the source. */
  record(t: { schema: string; name: string }, counts: BatchCounts): void {
    const key = keyOf(t);
    if (counts.source === null || counts.target === null) {
      this.unknown.add(key);
      return;
    }
    const d = this.deltas.get(key) ?? { source: 0, target: 0 };
    d.source += counts.source;
    d.target += counts.target;
    this.deltas.set(key, d);
  }

  /** A batch failed: whether the target committed it is not known. */
  lost(t: { schema: string; name: string }): void {
    this.unknown.add(keyOf(t));
  }

  /** The table's changes since the point ({0, 0} when none), or null when not known. */
  delta(t: { schema: string; name: string }): { source: number; target: number } | null {
    const key = keyOf(t);
    if (this.unknown.has(key)) return null;
    return this.deltas.get(key) ?? { source: 0, target: 0 };
  }
}
