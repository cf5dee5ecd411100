// Small batches are applied through one staged stream (engine/replay/table-batch.ts): every key's
// row with a presence flag, the gone rows' columns null. A column whose domain refuses NULL cannot
// be staged for a deleted row: the table falls back to the two-stream apply and nothing is lost.
// Rows are upserted on the primary key; a batch the upsert refuses (two rows swapping a UNIQUE
// value, an identity GENERATED ALWAYS column that is not the key, a DEFERRABLE primary key, which
// ON CONFLICT cannot use) is applied by delete and insert. A table named "excluded" is upserted too.
// Identity GENERATED ALWAYS columns keep the source's values, and a partitioned table's rows reach
// their partitions.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'replay-staged',
  db: 'app',
  sourceSql: `
    CREATE DOMAIN positive AS int NOT NULL CHECK (VALUE > 0);
    CREATE TABLE strict (id int PRIMARY KEY, n positive, note text);
    INSERT INTO strict SELECT g, g, 'n' || g FROM generate_series(1, 200) g;
    CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL);
    INSERT INTO ident (v) SELECT 'v' || g FROM generate_series(1, 200) g;
    CREATE TABLE parts (id int, region text, v int NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
    CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');
    CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us');
    INSERT INTO parts SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 200) g;
    CREATE TABLE keyonly (a int, b text, PRIMARY KEY (a, b));
    INSERT INTO keyonly SELECT g, 'b' || g FROM generate_series(1, 100) g;
    CREATE TABLE uniq (id int PRIMARY KEY, email text NOT NULL UNIQUE, v int);
    INSERT INTO uniq SELECT g, 'e' || g, g FROM generate_series(1, 100) g;
    CREATE TABLE counter (id int PRIMARY KEY, seq int GENERATED ALWAYS AS IDENTITY, v text);
    INSERT INTO counter (id, v) SELECT g, 'v' || g FROM generate_series(1, 100) g;
    CREATE TABLE excluded (id int PRIMARY KEY, excluded text);
    INSERT INTO excluded SELECT g, 'v' || g FROM generate_series(1, 100) g;
    CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, v text);
    INSERT INTO deferred SELECT g, 'v' || g FROM generate_series(1, 100) g;`,
});

describe('staged small batches', () => {
  it('applies deletes, updates, inserts and key changes, and falls back where a domain refuses nulls', async () => {
    const args = pair.migrate('--exit-when-synced');
    const first = await runCli(args);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `DELETE FROM strict WHERE id <= 20;
       UPDATE strict SET n = n + 1000, note = NULL WHERE id BETWEEN 21 AND 40;
       INSERT INTO strict SELECT g, g, NULL FROM generate_series(201, 230) g;
       UPDATE strict SET id = id + 1000 WHERE id BETWEEN 41 AND 45;
       DELETE FROM ident WHERE id % 7 = 0;
       UPDATE ident SET v = v || '!' WHERE id % 5 = 0;
       INSERT INTO ident (v) SELECT 'new' || g FROM generate_series(1, 20) g;
       UPDATE parts SET region = 'eu' WHERE id BETWEEN 1 AND 19 AND region = 'us';
       DELETE FROM parts WHERE id > 180;
       DELETE FROM keyonly WHERE a <= 10;
       INSERT INTO keyonly VALUES (1, 'again'), (500, 'x');
       UPDATE uniq SET v = -v WHERE id BETWEEN 50 AND 60;
       UPDATE uniq SET email = 'swap' WHERE id = 1;
       UPDATE uniq SET email = 'e1' WHERE id = 2;
       UPDATE uniq SET email = 'e2' WHERE id = 1;
       UPDATE counter SET v = v || '?' WHERE id % 3 = 0;
       UPDATE excluded SET excluded = excluded || '!' WHERE id % 4 = 0;
       INSERT INTO excluded VALUES (101, 'new');
       UPDATE deferred SET v = v || '!' WHERE id % 4 = 0;
       DELETE FROM deferred WHERE id > 95;
       INSERT INTO deferred VALUES (101, 'new');`,
      [],
      'app',
    );
    const second = await runCli(args);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    expect(second.stderr + second.stdout).toContain('staged rows refused');
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
