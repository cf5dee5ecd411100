// Slices of a trigger log (engine/capture/triggers/trigger-source.ts) when one transaction wrote
// more rows than a round's window: every row of a position goes to the batch that reads it, so the
// slices must split that transaction's rows by their keys, all of them, not only by the keys of its
// first rows. Sampled from the window alone, the ranges ended where its first rows' keys did and
// the last slice took nearly the whole transaction: one worker busy for most of the round. The
// slices together read every row, each exactly once, and consume exactly what they read.
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChangeBatch, SourceTable } from '../../engine/capture/change-source.js';
import { TriggerSource } from '../../engine/capture/triggers/trigger-source.js';
import { listTables } from '../../engine/shared/catalog.js';
import { type Cluster, startCluster } from '../support/cluster.js';

const RUN = 'slicetest01';
const ROWS = 1_000;
const LIMIT = 100;
let source: Cluster;
let client: pg.Client;
let changes: TriggerSource;
let table: SourceTable;

beforeAll(async () => {
  source = await startCluster(15);
  await source.query(
    `CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
     INSERT INTO items SELECT g, 0 FROM generate_series(1, ${ROWS}) g;`,
  );
  client = new pg.Client({ connectionString: source.url() });
  await client.connect();
  changes = new TriggerSource(RUN, []);
  await changes.prepare(client, 'state.sqlite');
  const [info] = await listTables(client, 'source', { include: ['public.items'], exclude: [] });
  const c = await changes.install(client, info!, [], {
    log: pino({ level: 'silent' }),
    signal: new AbortController().signal,
  });
  table = { schema: 'public', name: 'items', oid: c.oid, key: c.key };
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await source?.stop();
});

describe('trigger log slices', () => {
  it('splits a transaction bigger than the window between the slices by all of its keys', async () => {
    // One position for ROWS log rows, ten times the window of two slices of LIMIT rows.
    await source.query('UPDATE items SET v = v + 1');
    const slices = await changes.sliceRanges(client, table, 2, LIMIT);
    expect(slices).toHaveLength(2);

    const read: number[] = [];
    for (const slice of slices) {
      const batch = (await changes.readBatch(client, table, { limit: LIMIT, slice })) as ChangeBatch | null;
      expect(batch).not.toBeNull();
      read.push(batch!.changes);
      await changes.consume(client, batch!);
    }
    expect(read.reduce((a, n) => a + n, 0)).toBe(ROWS);
    for (const n of read) expect(n).toBeGreaterThan(ROWS * 0.35);
    const [left] = await source.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgferry.log_${RUN}_${table.oid}`,
    );
    expect(left!.n).toBe(0);
  });
});
