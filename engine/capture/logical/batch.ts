// One batch of a logical source: a table's oldest buffered changes (change-buffer.ts), in a
// REPEATABLE READ snapshot of the source that sees every one of their transactions, their keys
// handed to replay as one statement. A whole read (no limit) first waits until the stream has
// told of every commit its snapshot sees, so that the table is then as of that snapshot.
import type pg from 'pg';
import { sleep } from '../../../lib/sleep.js';
import { qualified, quoteIdent, quoteLiteral, rollbackQuietly } from '../../../lib/sql.js';
import { columnsSigSql } from '../../drift/shape.js';
import { q, simple } from '../../shared/db.js';
import type { ChangeBatch, ReadOptions, SourceTable } from '../change-source.js';
import { columnsChanged, keyType, SLICE_TRUNCATED } from '../change-source.js';
import { type Change, lsnOf } from './change-buffer.js';
import type { SlotStream } from './stream.js';
import { visibleIn } from './visibility.js';
import { WAL_POSITIONS_SQL, type WalFlusher, type WalPositions } from './wal-flush.js';

export interface LogicalBatch extends ChangeBatch {
  oid: number;
  entries: Change[];
  stream: SlotStream;
}

export async function readLogicalBatch(
  client: pg.Client,
  stream: SlotStream,
  t: SourceTable,
  { limit, snapshotId, slice }: ReadOptions,
  /** The stream was started again: it may re-send changes already applied (counts unknown). */
  restarted: boolean,
  flusher: WalFlusher,
): Promise<LogicalBatch | null | typeof SLICE_TRUNCATED> {
  const name = `${t.schema}.${t.name}`;
  for (let attempt = 1; ; attempt++) {
    if (stream.buffer.pending(t.oid) === 0 && limit !== null) return null;
    // The table is locked before the snapshot is taken, as trigger-source.ts does and why. The
    // WAL position read after the snapshot is past the commit of every transaction it sees.
    const [head] = await simple<{ snap: string; sig: string } & WalPositions>(
      client,
      'source',
      [
        'BEGIN ISOLATION LEVEL REPEATABLE READ',
        ...(snapshotId ? [`SET TRANSACTION SNAPSHOT '${snapshotId.replace(/'/g, '')}'`] : []),
        `LOCK TABLE ${t.partitioned ? '' : 'ONLY '}${qualified(t.schema, t.name)} IN ACCESS SHARE MODE`,
        `SELECT txid_current_snapshot()::text AS snap, ${WAL_POSITIONS_SQL}, ${columnsSigSql(String(t.oid))} AS sig`,
      ],
      name,
    ).catch(async (err) => {
      await rollbackQuietly(client);
      throw err;
    });
    const upTo = lsnOf(head!.inserted);
    // A whole batch holds every change its snapshot sees: the stream must have got that far.
    const complete = limit === null ? await reach(stream, await flusher.flushedEnd(head!)) : true;
    const held = stream.buffer.peek(t.oid, limit, stream.paused);
    const visible = visibleIn(head!.snap);
    // In an imported snapshot (the cutover's verified point), the batch is what that snapshot
    // sees, wherever it is in the buffer; it consumes nothing, so a later batch applies it again.
    const seen = snapshotId ? held.filter((c) => visible(c.txn.xid)) : null;
    let n = 0;
    while (!seen && n < held.length && visible(held[n]!.txn.xid)) n++;
    const next = held[n]?.txn;
    // A commit the stream sent a moment before it became visible: read again in a new snapshot.
    const racing = !seen && next !== undefined && next.endLsn !== null && next.endLsn <= upTo;
    if (seen?.length === 0 || (!seen && (n === 0 || racing))) {
      await q(client, 'source', 'ROLLBACK');
      if (held.length === 0 || seen || attempt >= 200) return null;
      await sleep(2);
      continue;
    }
    if (slice && held.slice(0, n).some((c) => c.op === 'T')) {
      await q(client, 'source', 'ROLLBACK');
      return SLICE_TRUNCATED;
    }
    if (t.columnsSig !== undefined && head!.sig !== t.columnsSig) {
      await q(client, 'source', 'ROLLBACK');
      throw columnsChanged(name);
    }
    const entries = seen ?? held.slice(0, n);
    const rows = entries.filter((c) => c.op !== 'T');
    // A change the verified point applied is in its counts: the ledger counts those after it.
    const counted = rows.filter((c) => !c.atPoint);
    if (seen) for (const c of seen) c.atPoint = true;
    // Whole when every change its snapshot sees was received and is in it; the ones after the
    // consumed prefix (committed since) are left for the next batch, as the source left them.
    const whole = complete && (seen !== null || !held.slice(n).some((c) => visible(c.txn.xid)));
    return {
      changes: entries.length,
      lagSeconds: Math.max(0, (Date.now() - entries[0]!.txn.committedAt) / 1000),
      truncates: [...new Set(entries.filter((c) => c.op === 'T').map((c) => c.rel!))],
      keys: keysQuery(t, rows),
      // A stream started again re-sends changes a batch may have applied already: counts unknown then.
      ...(restarted
        ? {}
        : {
            inserted: counted.filter((c) => c.op === 'I').length,
            deleted: counted.filter((c) => c.op === 'D').length,
          }),
      ...(whole ? {} : { partial: true }),
      oid: t.oid,
      entries: seen ? [] : entries,
      stream,
    };
  }
}

/**
 * Waits until the stream has told of every commit before `lsn` (as long as it moves on, and
 * `patienceMs` at most when it does not), letting the buffer grow for it; false when it could not
 * (the buffer is at its most, the stream broke, or it stood still).
 */
export async function reach(stream: SlotStream, lsn: bigint, patienceMs = 10_000): Promise<boolean> {
  if (stream.buffer.received >= lsn) return true;
  const wait = stream.want();
  try {
    let pinged = 0;
    let seen = stream.buffer.received;
    let deadline = Date.now() + patienceMs;
    while (stream.buffer.received < lsn) {
      // As long as the stream moves on (a big backlog decoding), the wait goes on.
      if (stream.buffer.received > seen) {
        seen = stream.buffer.received;
        deadline = Date.now() + patienceMs;
      }
      if (stream.paused || stream.failed || Date.now() > deadline) return false;
      if (Date.now() - pinged >= 50) {
        stream.status(true);
        pinged = Date.now();
      }
      await sleep(2);
    }
    return true;
  } finally {
    wait.done();
  }
}

/**
 * The batch's distinct keys, from arrays of their text forms cast to the key's types: one
 * statement however many keys (a COPY cannot take bind parameters, so the arrays are literals).
 */
function keysQuery(t: SourceTable, rows: Change[]): string {
  // Each element double-quoted; backslashes and quotes escaped only in a batch that holds any
  // (most keys, numbers or uuids, hold neither: one join then, no per-key string).
  const array = (values: string[]) => {
    const plain = !values.some((v) => v.includes('\\') || v.includes('"'));
    const elements = plain ? values : values.map((v) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"'));
    return `${quoteLiteral(values.length === 0 ? '{}' : `{"${elements.join('","')}"}`)}::text[]`;
  };
  const arrays = t.key.map((_, i) => array(rows.map((c) => c.key[i]!)));
  const cols = t.key.map((_, i) => `pgferry_c${i}`);
  // The key's collation too: under a case-insensitive one two spellings are one key, one row.
  const select = t.key.map((k, i) => `${cols[i]}::${keyType(k)} AS ${quoteIdent(k.name)}`).join(', ');
  return `SELECT DISTINCT ${select} FROM unnest(${arrays.join(', ')}) AS pgferry_k(${cols.join(', ')}) ORDER BY ${t.key.map((_, i) => i + 1).join(', ')}`;
}
