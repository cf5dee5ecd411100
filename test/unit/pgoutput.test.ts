// The pgoutput decoder on messages built byte by byte as the walsender writes them (protocol 1):
// positions and times read as numbers, only the columns asked for decoded, unchanged TOASTed
// values taken from the old row, relations replaced when described again.
import { describe, expect, it } from 'vitest';
import { PgoutputDecoder, type Relation } from '../../engine/capture/logical/pgoutput.js';

const int8 = (v: number) => Buffer.from([v]);
const int16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const int32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const int64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
const str = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), int8(0)]);
const tag = (c: string) => Buffer.from(c, 'ascii');

type Col = string | null | 'unchanged';
const tuple = (cols: Col[]) =>
  Buffer.concat([
    int16(cols.length),
    ...cols.map((c) =>
      c === null
        ? tag('n')
        : c === 'unchanged'
          ? tag('u')
          : Buffer.concat([tag('t'), int32(Buffer.byteLength(c)), Buffer.from(c, 'utf8')]),
    ),
  ]);

const relation = (oid: number, schema: string, name: string, columns: string[]) =>
  Buffer.concat([
    tag('R'),
    int32(oid),
    str(schema),
    str(name),
    tag('d'),
    int16(columns.length),
    ...columns.map((c, i) => Buffer.concat([int8(i === 0 ? 1 : 0), str(c), int32(23), int32(0xffffffff)])),
  ]);

describe('pgoutput decoder', () => {
  it('reads begin and commit as numbers', () => {
    const d = new PgoutputDecoder(() => null);
    // 2026-11-30T00:00:00.123456Z in µs since 2000-01-01.
    const us = BigInt(Date.UTC(2026, 10, 30) - Date.UTC(2000, 0, 1)) * 1000n + 123_456n;
    const begin = d.decode(Buffer.concat([tag('B'), int64(0x1_0000_0040n), int64(us), int32(0xfffffffe)]));
    expect(begin).toEqual({ tag: 'begin', xid: 0xfffffffe, committedAt: Date.UTC(2026, 10, 30) + 123 });
    const commit = d.decode(
      Buffer.concat([tag('C'), int8(0), int64(0x1_0000_0040n), int64(0xab_0000_0068n), int64(us)]),
    );
    expect(commit).toEqual({ tag: 'commit', endLsn: 0xab_0000_0068n });
  });

  it('reads a message in place after its XLogData header', () => {
    const d = new PgoutputDecoder(() => null);
    const us = 123_456_789n;
    const header = Buffer.alloc(25, 0xee);
    const begin = d.decode(Buffer.concat([header, tag('B'), int64(1n), int64(us), int32(77)]), 25);
    expect(begin).toEqual({ tag: 'begin', xid: 77, committedAt: 946_684_800_000 + 123_456 });
    const commit = d.decode(
      Buffer.concat([header, tag('C'), int8(0), int64(1n), int64(0x2_0000_0010n), int64(us)]),
      25,
    );
    expect(commit).toEqual({ tag: 'commit', endLsn: 0x2_0000_0010n });
    d.decode(Buffer.concat([header, relation(5, 's', 't', ['k', 'v'])]), 25);
    const ins = d.decode(Buffer.concat([header, tag('I'), int32(5), tag('N'), tuple(['k1', null])]), 25);
    expect(ins).toMatchObject({
      tag: 'insert',
      relation: { oid: 5, columns: ['k', 'v'] },
      new: ['k1', null],
    });
  });

  it('decodes the wanted columns only, with unchanged values from the old row', () => {
    // Only the columns named "id" and "region" are wanted.
    const d = new PgoutputDecoder((r: Relation) => r.columns.map((c) => c === 'id' || c === 'region'));
    const rel = d.decode(relation(16400, 'public', 'Odd "Name" ü', ['id', 'payload', 'region']));
    expect(rel).toEqual({
      tag: 'relation',
      relation: { oid: 16400, schema: 'public', name: 'Odd "Name" ü', columns: ['id', 'payload', 'region'] },
    });
    const ins = d.decode(Buffer.concat([tag('I'), int32(16400), tag('N'), tuple(['7', '{"big": 1}', 'eü'])]));
    expect(ins).toMatchObject({ tag: 'insert', new: ['7', undefined, 'eü'] });
    // REPLICA IDENTITY FULL: the old row, then the new one whose unchanged TOASTed key comes from it.
    const upd = d.decode(
      Buffer.concat([
        tag('U'),
        int32(16400),
        tag('O'),
        tuple(['7', 'x', 'eu']),
        tag('N'),
        tuple(['8', null, 'unchanged']),
      ]),
    );
    expect(upd).toMatchObject({ tag: 'update', old: ['7', undefined, 'eu'], new: ['8', undefined, 'eu'] });
    const plain = d.decode(Buffer.concat([tag('U'), int32(16400), tag('N'), tuple(['9', 'y', 'us'])]));
    expect(plain).toMatchObject({ tag: 'update', old: null, new: ['9', undefined, 'us'] });
    const del = d.decode(Buffer.concat([tag('D'), int32(16400), tag('K'), tuple(['9', null, 'us'])]));
    expect(del).toMatchObject({ tag: 'delete', old: ['9', undefined, 'us'] });
  });

  it('keeps every column of a relation nothing is asked of, and replaces a relation described again', () => {
    const d = new PgoutputDecoder(() => null);
    d.decode(relation(1, 's', 't', ['a', 'b']));
    expect(d.decode(Buffer.concat([tag('I'), int32(1), tag('N'), tuple(['1', null])]))).toMatchObject({
      new: ['1', null],
    });
    d.decode(relation(1, 's', 't', ['a', 'b', 'c']));
    const ins = d.decode(Buffer.concat([tag('I'), int32(1), tag('N'), tuple(['1', '2', '3'])]));
    expect(ins).toMatchObject({ relation: { columns: ['a', 'b', 'c'] }, new: ['1', '2', '3'] });
    const trunc = d.decode(Buffer.concat([tag('T'), int32(1), int8(0), int32(1)]));
    expect(trunc).toMatchObject({ tag: 'truncate', relations: [{ oid: 1, schema: 's', name: 't' }] });
    expect(d.decode(Buffer.concat([tag('Y'), int32(5), str('s'), str('ty')]))).toEqual({ tag: 'other' });
  });

  it('refuses a change to a relation it was never told of', () => {
    const d = new PgoutputDecoder(() => null);
    expect(() => d.decode(Buffer.concat([tag('I'), int32(99), tag('N'), tuple(['1'])]))).toThrow(
      /relation 99 before its Relation message/,
    );
  });
});
