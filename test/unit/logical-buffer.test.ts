// The logical source's bookkeeping, without a server: which streamed transactions a snapshot sees,
// which changes a batch takes, which slot position may be confirmed, and how often it is recorded.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ChangeBuffer } from '../../engine/capture/logical/change-buffer.js';
import { SlotStream } from '../../engine/capture/logical/stream.js';
import { visibleIn } from '../../engine/capture/logical/visibility.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';

describe('visibleIn', () => {
  it('sees what committed before the snapshot, not what was running or began after it', () => {
    const sees = visibleIn('21698:21707:21698,21700');
    expect(sees(21697)).toBe(true);
    expect(sees(21699)).toBe(true);
    expect(sees(21698)).toBe(false);
    expect(sees(21700)).toBe(false);
    // Began after the snapshot: past xmax (read as long ago, this lost changes in a batch).
    expect(sees(21707)).toBe(false);
    expect(sees(21709)).toBe(false);
    expect(sees(100)).toBe(true);
  });

  it('places 32-bit ids in the right epoch around a wraparound', () => {
    const epoch = 2n ** 32n;
    const sees = visibleIn(`${epoch + 5n}:${epoch + 10n}:${epoch + 7n}`);
    expect(sees(4294967290)).toBe(true);
    expect(sees(3)).toBe(true);
    expect(sees(6)).toBe(true);
    expect(sees(7)).toBe(false);
    expect(sees(12)).toBe(false);
  });
});

describe('ChangeBuffer', () => {
  const txn = (b: ChangeBuffer, xid: number, changes: [number, string][], end?: bigint) => {
    b.begin(xid, Date.now());
    for (const [oid, key] of changes) b.add(oid, { key: [key], op: 'U' });
    if (end !== undefined) b.commit(end);
  };

  it('confirms a position only once every earlier transaction is consumed, whatever the table order', () => {
    const b = new ChangeBuffer(100n);
    txn(
      b,
      1,
      [
        [10, 'a'],
        [20, 'x'],
      ],
      200n,
    );
    txn(b, 2, [[20, 'y']], 300n);
    expect(b.confirmed).toBe(100n);
    expect(b.consume(20, b.peek(20, null))).toBe(true);
    // Transaction 1 still has a change of table 10 pending.
    expect(b.confirmed).toBe(100n);
    expect(b.consume(10, b.peek(10, null))).toBe(true);
    expect(b.confirmed).toBe(300n);
    // Nothing pending: a keepalive's position is confirmed too.
    b.keepalive(450n);
    expect(b.confirmed).toBe(450n);
  });

  it('takes whole committed transactions: a limit never splits one, an open one waits', () => {
    const b = new ChangeBuffer(0n);
    txn(
      b,
      1,
      [
        [10, 'a'],
        [10, 'b'],
      ],
      10n,
    );
    txn(
      b,
      2,
      [
        [10, 'c'],
        [10, 'd'],
        [10, 'e'],
      ],
      20n,
    );
    txn(b, 3, [[10, 'f']]);
    expect(b.peek(10, 3).map((c) => c.key[0])).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(b.peek(10, null).map((c) => c.key[0])).toEqual(['a', 'b', 'c', 'd', 'e']);
    // A transaction bigger than the buffer is taken in parts when asked to.
    expect(b.peek(10, null, true).map((c) => c.key[0])).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(b.inTransaction).toBe(true);
    b.consume(10, b.peek(10, null, true));
    // Consumed, but its commit has not arrived: its position is not confirmed.
    expect(b.confirmed).toBe(20n);
    b.keepalive(25n);
    expect(b.confirmed).toBe(20n);
  });

  it('refuses to consume a batch that is no longer at the head', () => {
    const b = new ChangeBuffer(0n);
    txn(b, 1, [[10, 'a']], 10n);
    const batch = b.peek(10, null);
    b.forget(10);
    expect(b.consume(10, batch)).toBe(false);
    expect(b.confirmed).toBe(10n);
  });

  it('keys changes of a relation not known when they arrived once its table is', () => {
    const b = new ChangeBuffer(0n);
    b.begin(1, Date.now());
    b.add(555, { key: [], op: 'I', values: { id: '7', region: 'eu', payload: '{}' } });
    b.add(555, { key: [], op: 'T', rel: 'public.events_eu', values: {} });
    b.commit(10n);
    expect(b.unkeyedRelations()).toEqual([555]);
    b.rekey(555, 42, ['id', 'region']);
    expect(b.unkeyedRelations()).toEqual([]);
    expect(b.peek(42, null).map((c) => [c.op, c.key])).toEqual([
      ['I', ['7', 'eu']],
      ['T', []],
    ]);
  });
});

describe('SlotStream confirmations', () => {
  // Never started: no server, so no status is sent; the record is what is checked.
  const unstarted = (recorded: string[]) =>
    new SlotStream({
      source: new ConnInfo('source', 'postgresql://u:p@127.0.0.1:1/db'),
      slot: 's',
      publication: 'p',
      start: 0n,
      routing: { tableOf: () => null, keyOf: () => null },
      log: pino({ level: 'silent' }),
      onConfirm: (lsn) => recorded.push(lsn),
    });

  it('records a position consumed right after another one once a moment has passed, not at the next status', async () => {
    const recorded: string[] = [];
    const stream = unstarted(recorded);
    stream.buffer.keepalive(0x100n);
    stream.consumed();
    expect(recorded).toEqual(['0/100']);
    stream.buffer.keepalive(0x200n);
    stream.consumed();
    stream.buffer.keepalive(0x300n);
    stream.consumed();
    // Both within CONFIRM_MS of the first record: held back, then the latest recorded once.
    expect(recorded).toEqual(['0/100']);
    await new Promise((r) => setTimeout(r, 400));
    expect(recorded).toEqual(['0/100', '0/300']);
    await stream.close();
  });

  it('records a held-back position when it closes (a stream started again would get those changes again, as lag)', async () => {
    const recorded: string[] = [];
    const stream = unstarted(recorded);
    stream.buffer.keepalive(0x100n);
    stream.consumed();
    stream.buffer.keepalive(0x200n);
    stream.consumed();
    expect(recorded).toEqual(['0/100']);
    await stream.close();
    expect(recorded).toEqual(['0/100', '0/200']);
  });
});
