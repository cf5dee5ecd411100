// A log position is the writing transaction's id (engine/capture/triggers/triggers.ts), so a batch
// window cut by the batch size can end inside one transaction's rows: the batch is then every row
// of the last position, and its head (count, TRUNCATE, inserts and deletes) covers exactly those.
// A transaction larger than a batch that updates part of a table, truncates it and refills it must
// come out equal: the rows it never updated are gone only if the batch applies its TRUNCATE.
import { describe, expect, it } from 'vitest';
import { migrateInProcess } from '../support/in-process.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

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
});
