// pgoutput's messages (protocol version 1), decoded for what replay needs of a change: its
// relation, and the text of the columns asked for (the key's). A general decoder turns every
// column of every row into a JavaScript string; a change here needs only its key, so the other
// columns are stepped over (a wide row costs no more than a narrow one), and positions and times
// are read as numbers, never through text. Message formats:
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html

/** A relation as its last Relation message described it. */
export interface Relation {
  oid: number;
  schema: string;
  name: string;
  /** Column names in the order the relation's tuples carry them. */
  columns: string[];
}

/**
 * The columns decoded from a tuple, by position: the text, null for SQL NULL, undefined for an
 * unchanged TOASTed value (or a column not asked for).
 */
export type Tuple = (string | null | undefined)[];

export type Message =
  | { tag: 'begin'; xid: number; committedAt: number }
  | { tag: 'commit'; endLsn: bigint }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'insert'; relation: Relation; new: Tuple }
  | { tag: 'update'; relation: Relation; new: Tuple; old: Tuple | null }
  | { tag: 'delete'; relation: Relation; old: Tuple }
  | { tag: 'truncate'; relations: Relation[] }
  | { tag: 'other' };

/** Which columns of a relation's tuples to decode (true at their positions); null: all of them. */
export type Wanted = (relation: Relation) => readonly boolean[] | null;

/** Milliseconds between the Unix and PostgreSQL epochs. */
const PG_EPOCH_MS = 946_684_800_000;

export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private b: Buffer = Buffer.alloc(0);
  private p = 0;

  constructor(private readonly wanted: Wanted) {}

  /**
   * One message: the payload of an XLogData ('w') message, which starts at `at` in `buf` (after
   * its 25-byte header: read in place, no Buffer made per message).
   */
  decode(buf: Buffer, at = 0): Message {
    this.b = buf;
    this.p = at + 1;
    switch (buf[at]) {
      case 0x42: {
        // Begin: final LSN, commit time (µs since 2000-01-01), xid.
        const us = buf.readUInt32BE(at + 9) * 2 ** 32 + buf.readUInt32BE(at + 13);
        return {
          tag: 'begin',
          xid: buf.readUInt32BE(at + 17),
          committedAt: Math.floor(us / 1000) + PG_EPOCH_MS,
        };
      }
      case 0x43:
        // Commit: flags, commit LSN, end LSN, commit time.
        return { tag: 'commit', endLsn: buf.readBigUInt64BE(at + 10) };
      case 0x52:
        return { tag: 'relation', relation: this.relation() };
      case 0x49: {
        const relation = this.known(this.int32());
        this.p++; // 'N'
        return { tag: 'insert', relation, new: this.tuple(relation, null) };
      }
      case 0x55: {
        const relation = this.known(this.int32());
        // 'K' (the old key: the key changed) or 'O' (the old row: REPLICA IDENTITY FULL), then 'N'.
        const sub = buf[this.p++];
        const old = sub === 0x4b || sub === 0x4f ? this.tuple(relation, null) : null;
        if (old) this.p++;
        return { tag: 'update', relation, old, new: this.tuple(relation, old) };
      }
      case 0x44: {
        const relation = this.known(this.int32());
        this.p++; // 'K' or 'O'
        return { tag: 'delete', relation, old: this.tuple(relation, null) };
      }
      case 0x54: {
        const n = this.int32();
        this.p++; // options
        return { tag: 'truncate', relations: Array.from({ length: n }, () => this.known(this.int32())) };
      }
      default:
        // Origin, Type, Message: nothing replay needs.
        return { tag: 'other' };
    }
  }

  private int32(): number {
    const v = this.b.readUInt32BE(this.p);
    this.p += 4;
    return v;
  }

  private string(): string {
    const end = this.b.indexOf(0, this.p);
    if (end < 0) throw new Error('pgoutput: a string without its terminator');
    const s = this.b.toString('utf8', this.p, end);
    this.p = end + 1;
    return s;
  }

  private relation(): Relation {
    const oid = this.int32();
    const schema = this.string();
    const name = this.string();
    this.p++; // replica identity
    const n = this.b.readUInt16BE(this.p);
    this.p += 2;
    const columns: string[] = [];
    for (let i = 0; i < n; i++) {
      this.p++; // flags
      columns.push(this.string());
      this.p += 8; // type oid, type modifier
    }
    const relation = { oid, schema, name, columns };
    this.relations.set(oid, relation);
    return relation;
  }

  private known(oid: number): Relation {
    const r = this.relations.get(oid);
    // The walsender sends a relation's Relation message before its first change in the session.
    if (!r) throw new Error(`pgoutput: a change to relation ${oid} before its Relation message`);
    return r;
  }

  /** TupleData; an unchanged TOASTed value is taken from `old` (the old row) where there is one. */
  private tuple(relation: Relation, old: Tuple | null): Tuple {
    const { b } = this;
    const n = b.readUInt16BE(this.p);
    this.p += 2;
    const wanted = this.wanted(relation);
    const out: Tuple = new Array(n);
    for (let i = 0; i < n; i++) {
      const kind = b[this.p++];
      const want = wanted === null || wanted[i] === true;
      if (kind === 0x6e) {
        if (want) out[i] = null;
      } else if (kind === 0x75) {
        if (want) out[i] = old?.[i];
      } else if (kind === 0x74 || kind === 0x62) {
        const len = b.readUInt32BE(this.p);
        this.p += 4;
        if (want) {
          if (kind === 0x62) throw new Error('pgoutput: a binary column value (only text is asked for)');
          out[i] = b.toString('utf8', this.p, this.p + len);
        }
        this.p += len;
      } else {
        throw new Error(`pgoutput: unknown column kind ${String.fromCharCode(kind ?? 0)}`);
      }
    }
    return out;
  }
}
