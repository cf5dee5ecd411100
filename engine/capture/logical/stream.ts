// A logical slot's stream: START_REPLICATION with pgoutput on a replication session, its messages
// decoded (pgoutput.ts: the key columns only) into the change buffer, standby
// status updates that confirm only what the buffer says was consumed, and backpressure: the
// socket is paused while the buffer holds more than MAX_BUFFERED changes (the walsender then
// waits, and the daemon's memory stays bounded however big the backlog).
import type pg from 'pg';
import type { Logger } from 'pino';
import { PgferryError } from '../../../lib/errors.js';
import { quoteIdent, quoteLiteral } from '../../../lib/sql.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { connect } from '../../shared/db.js';
import { ChangeBuffer, lsnText } from './change-buffer.js';
import { PgoutputDecoder, type Relation, type Tuple } from './pgoutput.js';

/** Changes held before the stream is paused (about 150 bytes each). */
export const MAX_BUFFERED = 200_000;
/**
 * Changes held at most while a whole batch waits for the stream to reach its snapshot (a first
 * catch-up, a unique conflict's whole retry): beyond it the batch is applied in parts.
 */
export const MAX_BUFFERED_WHOLE = 1_000_000;
/** A status update at least this often: the walsender ends a silent session (wal_sender_timeout). */
const STATUS_MS = 5_000;
/**
 * Least time between two confirmations after consumes. Each records the position in the
 * checkpoint store first, a synchronous write with an fsync on the event loop: once per batch it
 * was 0.4 s of every 30 under pgbench -c 4 (3 tables, a round every 50 ms). A position confirmed
 * later is only kept longer by the slot; a restart starts from the slot's own position.
 */
const CONFIRM_MS = 200;
/** Microseconds between the Unix and PostgreSQL epochs. */
const PG_EPOCH_US = 946_684_800_000_000n;

/** What the stream needs to know of the captured tables: each relation's key columns. */
export interface Routing {
  /** The captured table a relation's changes belong to (itself, or the root of a partition), or null if unknown yet. */
  tableOf(relid: number): number | null;
  /** The table's key columns: the same array until the table is described again (its positions are cached by it). */
  keyOf(table: number): string[] | null;
}

interface Wire {
  stream: { pause(): void; resume(): void };
  on(event: 'copyData', f: (m: { chunk: Buffer }) => void): void;
  sendCopyFromChunk(b: Buffer): void;
}

/** A relation's captured table, its key, the key columns' positions in the relation's tuples, and those positions as a mask. */
interface KeyPositions {
  table: number;
  key: string[];
  at: number[];
  mask: boolean[];
}

export class SlotStream {
  readonly buffer: ChangeBuffer;
  private client: pg.Client | null = null;
  private wire: Wire | null = null;
  private readonly decoder: PgoutputDecoder;
  /** Each relation's key positions for its captured table, as last computed (relations are replaced when described again). */
  private readonly keyAt = new WeakMap<Relation, KeyPositions>();
  private timer: NodeJS.Timeout | undefined;
  /** The socket is paused: the buffer is full. */
  paused = false;
  /** Whole batches waiting for the stream to reach their snapshot: the buffer may grow for them. */
  private wanted = 0;
  /** The last position the checkpoint store recorded (onConfirm): the most the slot is told. */
  private recorded: bigint;
  private confirmedAt = 0;
  /** A confirmation held back by CONFIRM_MS, due then. */
  private confirmLater: NodeJS.Timeout | undefined;
  /** Why the stream ended, when it did. */
  failed: Error | null = null;
  private closing = false;

  constructor(
    private readonly opts: {
      source: ConnInfo;
      slot: string;
      publication: string;
      start: bigint;
      routing: Routing;
      log: Logger;
      /** Called before a position is confirmed to the slot: the checkpoint store records it first. */
      onConfirm: (lsn: string) => void;
    },
  ) {
    this.buffer = new ChangeBuffer(opts.start);
    this.recorded = opts.start;
    // A relation routed to a captured table needs its key columns only; one not routed yet keeps
    // every column until it is (change()).
    this.decoder = new PgoutputDecoder((r) => this.keyPositions(r)?.mask ?? null);
  }

  /** Connects and starts streaming from the start position (the slot's own when it is further). */
  async start(): Promise<void> {
    const client = await connect(this.opts.source, 'replication');
    this.client = client;
    this.wire = (client as unknown as { connection: Wire }).connection;
    this.wire.on('copyData', ({ chunk }) => {
      try {
        this.onData(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    client.on('error', (err) => this.fail(err));
    client.on('end', () => this.fail(new Error('the replication session ended')));
    const sql = `START_REPLICATION SLOT ${quoteIdent(this.opts.slot)} LOGICAL ${lsnText(this.opts.start)} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(this.opts.publication))})`;
    // The query's promise settles only when the stream ends; its errors (a missing slot, a slot
    // in use) come first, before any data: wait a moment for them.
    const ended = client.query(sql).then(
      () => this.fail(new Error('the replication stream ended')),
      (err: Error) => this.fail(err),
    );
    await Promise.race([ended, new Promise((r) => setTimeout(r, 200))]);
    if (this.failed) throw this.failed;
    this.timer = setInterval(() => {
      this.confirm(true);
      this.status(false);
    }, STATUS_MS);
    this.timer.unref();
  }

  private fail(err: Error): void {
    if (this.failed || this.closing) return;
    this.failed = err;
    this.opts.log.warn({ err: err.message }, 'logical replication stream ended');
    clearInterval(this.timer);
    clearTimeout(this.confirmLater);
    this.client?.end().catch(() => {});
  }

  private onData(chunk: Buffer): void {
    const kind = chunk[0];
    if (kind === 0x6b) {
      // Primary keepalive: the position the walsender has decoded up to, and whether it wants an answer.
      this.buffer.keepalive(chunk.readBigUInt64BE(1));
      this.confirm(false);
      if (chunk[17] === 1) this.status(false);
      return;
    }
    if (kind !== 0x77) return;
    const msg = this.decoder.decode(chunk, 25);
    switch (msg.tag) {
      case 'begin':
        this.buffer.begin(msg.xid, msg.committedAt);
        break;
      case 'insert':
        this.change(msg.relation, 'I', msg.new, null);
        break;
      case 'update':
        this.change(msg.relation, 'U', msg.new, msg.old);
        break;
      case 'delete':
        this.change(msg.relation, 'D', null, msg.old);
        break;
      case 'truncate':
        for (const r of msg.relations) {
          const table = this.opts.routing.tableOf(r.oid);
          const rel = `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;
          if (table === null) this.buffer.add(r.oid, { key: [], op: 'T', rel, values: {} });
          else this.buffer.add(table, { key: [], op: 'T', rel });
        }
        break;
      case 'commit':
        this.buffer.commit(msg.endLsn);
        this.confirm(false);
        break;
    }
    if (!this.paused && this.buffer.size > (this.wanted > 0 ? MAX_BUFFERED_WHOLE : MAX_BUFFERED)) {
      this.paused = true;
      this.wire?.stream.pause();
    }
  }

  /** Where a relation's tuples carry its captured table's key columns; null while it is not routed. */
  private keyPositions(r: Relation): KeyPositions | null {
    const table = this.opts.routing.tableOf(r.oid);
    const key = table === null ? null : this.opts.routing.keyOf(table);
    if (table === null || key === null) return null;
    const known = this.keyAt.get(r);
    if (known && known.table === table && known.key === key) return known;
    const at = key.map((k) => r.columns.indexOf(k));
    const mask = r.columns.map((_, i) => at.includes(i));
    const positions = { table, key, at, mask };
    this.keyAt.set(r, positions);
    return positions;
  }

  /**
   * A row change: its new key, and its old key when the key changed (or the row went). A change
   * to a relation not known yet (a partition attached since) keeps its columns until routed.
   */
  private change(relation: Relation, op: 'I' | 'U' | 'D', row: Tuple | null, old: Tuple | null): void {
    const positions = this.keyPositions(relation);
    if (positions === null) {
      const columns = (tuple: Tuple) => {
        const out: Record<string, string> = {};
        relation.columns.forEach((c, i) => {
          const v = tuple[i];
          if (typeof v === 'string') out[c] = v;
        });
        return out;
      };
      if (row) this.buffer.add(relation.oid, { key: [], op, values: columns(row) });
      if (old) this.buffer.add(relation.oid, { key: [], op: op === 'D' ? 'D' : 'U', values: columns(old) });
      return;
    }
    const values = (tuple: Tuple): string[] =>
      positions.at.map((i, n) => {
        const v = i < 0 ? undefined : tuple[i];
        if (typeof v !== 'string') {
          // An unchanged TOASTed key value comes without its value and without the old key.
          throw new PgferryError(
            'PGFERRY_SOURCE_QUERY',
            `${relation.schema}.${relation.name}: the logical stream sent no value for key column ${positions.key[n]}`,
            {
              side: 'source',
              object: `${relation.schema}.${relation.name}`,
              hint: `Set ALTER TABLE ${quoteIdent(relation.schema)}.${quoteIdent(relation.name)} REPLICA IDENTITY FULL on the source, then run pgferry again.`,
            },
          );
        }
        return v;
      });
    const newKey = row ? values(row) : null;
    const oldKey = old ? values(old) : null;
    if (newKey) this.buffer.add(positions.table, { key: newKey, op });
    if (oldKey && (!newKey || oldKey.some((v, i) => v !== newKey[i]))) {
      this.buffer.add(positions.table, { key: oldKey, op: op === 'D' ? 'D' : 'U' });
    }
  }

  /** After a consume: records and confirms the new position, and lets the stream flow again. */
  consumed(): void {
    this.confirm(true);
    this.flow();
  }

  private flow(): void {
    const room =
      this.wanted > 0 ? this.buffer.size < MAX_BUFFERED_WHOLE : this.buffer.size < MAX_BUFFERED / 2;
    if (this.paused && room) {
      this.paused = false;
      this.wire?.stream.resume();
    }
  }

  /** A whole batch waits for the stream: it flows past MAX_BUFFERED until done() (up to MAX_BUFFERED_WHOLE). */
  want(): { done(): void } {
    this.wanted += 1;
    this.flow();
    let over = false;
    return {
      done: () => {
        if (over) return;
        over = true;
        this.wanted -= 1;
      },
    };
  }

  /**
   * Records the confirmed position, then tells the slot: after a batch's consume at most every
   * CONFIRM_MS (a later one is held back until then), otherwise (a commit or a keepalive that moved
   * it: many per second on a busy source) at most once a second.
   */
  private confirm(now: boolean): void {
    if (this.buffer.confirmed === this.recorded) return;
    const since = Date.now() - this.confirmedAt;
    if (!now && since < 1000) return;
    if (since < CONFIRM_MS) {
      this.confirmLater ??= setTimeout(() => {
        this.confirmLater = undefined;
        if (!this.closing && !this.failed) this.confirm(true);
      }, CONFIRM_MS - since).unref();
      return;
    }
    this.record();
    this.status(false);
  }

  /** Records the confirmed position in the checkpoint store: the most the slot may be told. */
  private record(): void {
    const lsn = this.buffer.confirmed;
    if (lsn === this.recorded) return;
    this.confirmedAt = Date.now();
    this.opts.onConfirm(lsnText(lsn));
    this.recorded = lsn;
  }

  /**
   * A standby status update: written, flushed and applied are all the confirmed position as the
   * checkpoint store recorded it (the slot keeps everything after it). With `ping` the walsender
   * answers with a keepalive at once.
   */
  status(ping: boolean): void {
    if (!this.wire || this.failed) return;
    const lsn = this.recorded;
    const msg = Buffer.alloc(34);
    msg[0] = 0x72;
    msg.writeBigUInt64BE(lsn, 1);
    msg.writeBigUInt64BE(lsn, 9);
    msg.writeBigUInt64BE(lsn, 17);
    msg.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    msg[33] = ping ? 1 : 0;
    this.wire.sendCopyFromChunk(msg);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    clearTimeout(this.confirmLater);
    if (!this.failed) {
      // Everything consumed is recorded and told, a held-back position too: a stream started
      // again (the standalone cutover's) would otherwise receive those changes again, old enough
      // to count as lag.
      try {
        this.record();
      } catch {
        // The checkpoint store is closed already: the slot keeps the last recorded position.
      }
      this.status(false);
    }
    await this.client?.end().catch(() => {});
    this.client = null;
    this.wire = null;
  }
}
