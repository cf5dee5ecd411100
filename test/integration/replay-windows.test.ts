// A log position is the writing transaction's id (engine/capture/triggers/triggers.ts), so a batch
// window cut by the batch size can end inside one transaction's rows: the batch is then every row
// of the last position, and its head (count, TRUNCATE, inserts and deletes) covers exactly those.
// A transaction larger than a batch that updates part of a table, truncates it and refills it must
// come out equal: the rows it never updated are gone only if the batch applies its TRUNCATE.
// No change is lost to a late commit: a transaction whose position (its id) is below those of
// transactions that commit, are replayed and consumed while it is open, is replayed once it commits
// (the log is consumed by snapshot visibility, never from the last position seen on).
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { migrateInProcess } from '../support/in-process.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const pair = clusterPair({
  name: 'replay-windows',
  db: 'app',
  sourceSql: `
    CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
    INSERT INTO items SELECT g, g FROM generate_series(1, 300) g;`,
});

// Far fewer log rows per batch than one transaction writes.
const run = () => migrateInProcess(pair, { batchSize: 50 });

describe('batch windows and transactions', () => {
  it('applies a transaction larger than a batch whole, its TRUNCATE included', async () => {
    await run();
    await pair.source.query(
      `BEGIN;
       UPDATE items SET v = v + 1 WHERE id <= 200;
       TRUNCATE items;
       INSERT INTO items SELECT g, -g FROM generate_series(1, 120) g;
       COMMIT;
       UPDATE items SET v = 0 WHERE id <= 10;
       DELETE FROM items WHERE id > 100;`,
      [],
      'app',
    );
    const result = await run();
    expect(result.replay?.backlog).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('replays a transaction that took its position before batches consumed later ones', async () => {
    const stop = new AbortController();
    const running = migrateInProcess(pair, { batchSize: 50, signal: stop.signal });
    const late = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    await late.connect();
    try {
      const targetSum = async () =>
        Number(
          (await pair.target.query<{ s: string }>('SELECT sum(v)::text AS s FROM items', [], 'app'))[0]?.s,
        );
      // Its log row's position is its transaction id, lower than every one committed after it.
      await late.query('BEGIN');
      await late.query('UPDATE items SET v = 1000 WHERE id = 1');
      for (let i = 0; i < 5; i++) {
        await pair.source.query('UPDATE items SET v = v + 1 WHERE id BETWEEN 2 AND 100', [], 'app');
      }
      const [{ s } = { s: '' }] = await pair.source.query<{ s: string }>(
        'SELECT sum(v)::text AS s FROM items',
        [],
        'app',
      );
      await waitFor('the later transactions replayed', async () => (await targetSum()) === Number(s));
      await late.query('COMMIT');
      await waitFor(
        'the late transaction replayed',
        async () =>
          (await pair.target.query<{ v: number }>('SELECT v FROM items WHERE id = 1', [], 'app'))[0]?.v ===
          1000,
        20_000,
      );
    } finally {
      await late.end();
      stop.abort();
      await running.catch(() => {});
    }
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
