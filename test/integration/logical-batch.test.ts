// One batch of the logical source (engine/capture/logical/batch.ts), read in a real snapshot of
// the source from a change buffer the test fills: a whole batch is whole although the buffer
// already holds a transaction its snapshot does not see (writers go on during every catch-up: a
// batch called partial for that is read again and again while they write), and a batch read in
// the cutover's verified point consumes nothing, while the changes it applied count no more in
// the ledger when a later batch consumes them (the point's counts hold them already).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceTable } from '../../engine/capture/change-source.js';
import { readLogicalBatch } from '../../engine/capture/logical/batch.js';
import { ChangeBuffer } from '../../engine/capture/logical/change-buffer.js';
import type { SlotStream } from '../../engine/capture/logical/stream.js';
import { WalFlusher } from '../../engine/capture/logical/wal-flush.js';
import { registerRun } from '../../engine/capture/registry.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { type Cluster, startCluster } from '../support/cluster.js';

const RUN = 'batchtest01';
let source: Cluster;
let table: SourceTable;
const sessions: pg.Client[] = [];

async function session(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: source.url() });
  await c.connect();
  sessions.push(c);
  return c;
}

beforeAll(async () => {
  source = await startCluster(15);
  await source.query('CREATE TABLE items (id int PRIMARY KEY)');
  const [row] = await source.query<{ oid: number }>("SELECT 'items'::regclass::oid::int AS oid");
  table = { schema: 'public', name: 'items', oid: row!.oid, key: [{ name: 'id', type: 'integer' }] };
  await registerRun(await session(), { runId: RUN, statePath: 'state.sqlite', capture: 'logical' });
});

afterAll(async () => {
  await Promise.all(sessions.map((c) => c.end().catch(() => {})));
  await source?.stop();
});

/** A transaction inserting `id`, committed or left open; its xid. */
async function insert(id: number, commit: boolean): Promise<number> {
  const c = await session();
  await c.query('BEGIN');
  await c.query('INSERT INTO items VALUES ($1)', [id]);
  const { rows } = await c.query<{ x: string }>('SELECT txid_current()::text AS x');
  if (commit) await c.query('COMMIT');
  return Number(BigInt(rows[0]!.x) & 0xffffffffn);
}

/** A stream that has told of every position: its changes are those the buffer is given. */
function streamOf(buffer: ChangeBuffer): SlotStream {
  return {
    buffer,
    paused: false,
    failed: null,
    want: () => ({ done() {} }),
    status() {},
  } as unknown as SlotStream;
}

function bufferOf(...txns: { xid: number; id: number; end: bigint }[]): ChangeBuffer {
  const buffer = new ChangeBuffer(0n);
  for (const t of txns) {
    buffer.begin(t.xid, Date.now());
    buffer.add(table.oid, { key: [String(t.id)], op: 'I' });
    buffer.commit(t.end);
  }
  buffer.keepalive(LATER);
  return buffer;
}

// Committed after any snapshot the test takes: past every WAL position the source will reach.
const LATER = 1n << 60n;

describe('a logical batch', () => {
  const flusher = () => new WalFlusher(new ConnInfo('source', source.url()), () => RUN);

  it('is whole with a transaction its snapshot does not see after the ones it does', async () => {
    const seen = await insert(1, true);
    const unseen = await insert(2, false);
    const buffer = bufferOf({ xid: seen, id: 1, end: 1n }, { xid: unseen, id: 2, end: LATER });
    const client = await session();
    const f = flusher();
    const batch = await readLogicalBatch(client, streamOf(buffer), table, { limit: null }, false, f);
    await client.query('COMMIT');
    await f.close();
    expect(batch).toMatchObject({ changes: 1, inserted: 1, deleted: 0 });
    expect(batch).not.toHaveProperty('partial');
  });

  it("applied in the verified point, counts no more in the ledger's changes after it", async () => {
    const xid = await insert(3, true);
    const buffer = bufferOf({ xid, id: 3, end: 1n });
    const exporter = await session();
    await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const { rows } = await exporter.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
    const client = await session();
    const f = flusher();
    const atPoint = await readLogicalBatch(
      client,
      streamOf(buffer),
      table,
      { limit: null, snapshotId: rows[0]!.id },
      false,
      f,
    );
    await client.query('COMMIT');
    await exporter.query('COMMIT');
    expect(atPoint).toMatchObject({ changes: 1, entries: [] });
    expect(buffer.pending(table.oid)).toBe(1);
    const after = await readLogicalBatch(client, streamOf(buffer), table, { limit: null }, false, f);
    await client.query('COMMIT');
    await f.close();
    expect(after).toMatchObject({ changes: 1, inserted: 0, deleted: 0 });
    expect(after).not.toHaveProperty('partial');
  });
});
