// The changes a logical slot's stream has delivered and replay has not consumed yet, kept per
// captured table as keys only (replay reads current rows, so a change needs no row), and the
// position that may be confirmed to the slot: the end of the last transaction all of whose
// changes were consumed, with every earlier transaction's consumed too. Tables replay in
// parallel, so transactions finish out of order; the confirmed position only moves over a
// finished prefix of the stream. Pure bookkeeping: no I/O.

/** A transaction of the stream, from its BEGIN to its COMMIT. */
export interface Txn {
  /** The transaction id (32 bits, as pgoutput sends it). */
  xid: number;
  /** When it committed on the source (ms since the epoch). */
  committedAt: number;
  /** The end of its commit record, once the COMMIT arrived; null before. */
  endLsn: bigint | null;
  /** Its changes not yet consumed. */
  pending: number;
}

export type ChangeOp = 'I' | 'U' | 'D' | 'T';

export interface Change {
  /** The key columns' values in their text form (empty for a TRUNCATE). */
  key: string[];
  op: ChangeOp;
  /** The relation truncated (a TRUNCATE), qualified as the source names it. */
  rel?: string;
  /** A change to a relation not known when it arrived: its columns, until its table's key is known. */
  values?: Record<string, string>;
  /** Applied in the cutover's verified point (not consumed): its count is in the point's. */
  atPoint?: boolean;
  txn: Txn;
}

/** A table's pending changes, oldest first (an array with a moving head: shift() is O(n)). */
class Queue {
  items: Change[] = [];
  head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  peek(n: number): Change[] {
    return this.items.slice(this.head, this.head + n);
  }

  drop(n: number): void {
    this.head += n;
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

export const lsnOf = (text: string): bigint => {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};

export const lsnText = (lsn: bigint): string =>
  `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;

export class ChangeBuffer {
  private readonly queues = new Map<number, Queue>();
  private readonly unkeyed = new Set<number>();
  /** Transactions in arrival (commit) order whose changes are not all consumed. */
  private readonly txns: Txn[] = [];
  private txnHead = 0;
  private open: Txn | null = null;
  private total = 0;
  /** The position every change before which was consumed. */
  confirmed: bigint;
  /** How far the stream has told us about: the last commit's end, or a keepalive's position. */
  received: bigint;

  constructor(start: bigint) {
    this.confirmed = start;
    this.received = start;
  }

  /** Changes held, every table together. */
  get size(): number {
    return this.total;
  }

  /** Whether a transaction has begun and not committed yet. */
  get inTransaction(): boolean {
    return this.open !== null;
  }

  begin(xid: number, committedAt: number): void {
    this.open = { xid, committedAt, endLsn: null, pending: 0 };
    this.txns.push(this.open);
  }

  /** A change of the open transaction to the table `oid`. */
  add(oid: number, change: Omit<Change, 'txn'>): void {
    const txn = this.open;
    if (!txn) throw new Error('a change arrived outside a transaction');
    let q = this.queues.get(oid);
    if (!q) {
      q = new Queue();
      this.queues.set(oid, q);
    }
    // One literal with every field, in one order: each change has the same hidden class (a
    // spread of objects with optional fields made several, and was the stream's costliest line).
    q.items.push({
      key: change.key,
      op: change.op,
      rel: change.rel,
      values: change.values,
      atPoint: false,
      txn,
    });
    if (change.values) this.unkeyed.add(oid);
    txn.pending += 1;
    this.total += 1;
  }

  commit(endLsn: bigint): void {
    if (this.open) this.open.endLsn = endLsn;
    this.open = null;
    if (endLsn > this.received) this.received = endLsn;
    this.advance();
  }

  /**
   * A keepalive: the stream has decoded up to `lsn` and sent every transaction that committed
   * before it. Confirmable at once when nothing is pending (no transaction begun either).
   */
  keepalive(lsn: bigint): void {
    if (lsn > this.received && !this.open) this.received = lsn;
    this.advance();
  }

  pending(oid: number): number {
    return this.queues.get(oid)?.length ?? 0;
  }

  /**
   * A table's oldest changes, not removed: about `limit` of them (all with null), whole
   * transactions, so that the target is after each batch as the source was after a commit (a
   * UNIQUE value swapped by two rows moves in one batch). Only committed transactions' unless
   * `open`: a transaction bigger than the buffer is applied in parts as it streams.
   */
  peek(oid: number, limit: number | null, open = false): Change[] {
    const q = this.queues.get(oid);
    if (!q) return [];
    const end = q.items.length;
    let i = q.head;
    const cut = limit === null ? end : Math.min(end, q.head + limit);
    while (i < end && (open || q.items[i]!.txn.endLsn !== null)) {
      if (i >= cut && i > q.head && q.items[i]!.txn !== q.items[i - 1]!.txn) break;
      i++;
    }
    return q.items.slice(q.head, i);
  }

  /** The table's oldest change, for its lag. */
  oldest(oid: number): Change | undefined {
    return this.queues.get(oid)?.peek(1)[0];
  }

  /**
   * Removes the table's first `changes.length` changes, which must be these (a batch read by
   * peek); false when they are not there any more (the buffer was rebuilt meanwhile).
   */
  consume(oid: number, changes: Change[]): boolean {
    const q = this.queues.get(oid);
    if (!q || changes.length === 0 || q.items[q.head] !== changes[0] || q.length < changes.length)
      return false;
    q.drop(changes.length);
    this.total -= changes.length;
    for (const c of changes) c.txn.pending -= 1;
    this.advance();
    return true;
  }

  /** A table no longer replayed (it left the run): its changes are dropped as if consumed. */
  forget(oid: number): void {
    const q = this.queues.get(oid);
    if (!q) return;
    this.consume(oid, q.peek(q.length));
    this.queues.delete(oid);
    this.unkeyed.delete(oid);
  }

  /** Relations holding changes that arrived before their table was known (keys not taken yet). */
  unkeyedRelations(): number[] {
    return [...this.unkeyed];
  }

  /**
   * The changes of a relation not known when they arrived (a table joining the run, a partition
   * attached since) get their keys from their columns, and go to their table's queue.
   */
  rekey(from: number, to: number, key: string[]): void {
    this.unkeyed.delete(from);
    const q = this.queues.get(from);
    if (!q) return;
    for (const c of q.peek(q.length)) {
      if (c.values && c.op !== 'T') c.key = key.map((k) => c.values![k] ?? '');
      c.values = undefined;
    }
    if (from === to) return;
    let dst = this.queues.get(to);
    if (!dst) {
      dst = new Queue();
      this.queues.set(to, dst);
    }
    dst.items.push(...q.peek(q.length));
    this.queues.delete(from);
  }

  private advance(): void {
    while (this.txnHead < this.txns.length) {
      const t = this.txns[this.txnHead]!;
      if (t.endLsn === null || t.pending > 0) return;
      if (t.endLsn > this.confirmed) this.confirmed = t.endLsn;
      this.txnHead += 1;
    }
    if (this.txnHead > 1024) {
      this.txns.splice(0, this.txnHead);
      this.txnHead = 0;
    }
    // Every transaction is done and none is open: the stream's position is confirmed too.
    if (!this.open && this.received > this.confirmed) this.confirmed = this.received;
  }
}
