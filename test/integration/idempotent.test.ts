// Replay is idempotent: a batch applied twice (as after a crash between the target's commit and
// the source's deletion of the consumed log rows) leaves the target unchanged. The test keeps a
// copy of the log, lets pgferry drain it, puts the same changes back into the log and drains again.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases, tableHashes } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'idem',
  sourceSql: `CREATE TABLE items (id int PRIMARY KEY, code text NOT NULL UNIQUE, qty int, note text);
     INSERT INTO items SELECT g, 'c' || g, g, NULL FROM generate_series(1, 10000) g;`,
});

describe('replay is idempotent', () => {
  it('applying the same changes twice leaves the target unchanged', async () => {
    const args = pair.migrate('--exit-when-synced');
    const first = await runCli(args);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    const [{ log } = { log: '' }] = await pair.source.query<{ log: string }>(
      "SELECT 'pgferry.' || quote_ident(log_table) AS log FROM pgferry.captured",
      [],
      'app',
    );
    await pair.source.query(
      `UPDATE items SET qty = qty + 1 WHERE id % 3 = 0;
       DELETE FROM items WHERE id % 7 = 0;
       INSERT INTO items SELECT g, 'c' || g, 0, '' FROM generate_series(20001, 20500) g;
       UPDATE items SET id = id + 100000 WHERE id BETWEEN 100 AND 150;
       BEGIN;
       UPDATE items SET code = 'tmp' WHERE id = 1;
       UPDATE items SET code = 'c1' WHERE id = 2;
       UPDATE items SET code = 'c2' WHERE id = 1;
       COMMIT;
       CREATE TABLE public.log_copy AS SELECT * FROM ${log};`,
      [],
      'app',
    );
    const second = await runCli(args);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    const afterOnce = await tableHashes(pair.target.url({ db: 'app' }));

    // The same batch again: every consumed change back in the log.
    await pair.source.query(
      `INSERT INTO ${log} (pgferry_op, pgferry_at, pgferry_rel, id)
         SELECT pgferry_op, pgferry_at, pgferry_rel, id FROM public.log_copy;
       DROP TABLE public.log_copy;`,
      [],
      'app',
    );
    const third = await runCli(args);
    expect(third.code, third.stderr.slice(-2000)).toBe(0);
    expect(third.stdout).toMatch(/[1-9][\d,]* changes replayed/);
    expect(await tableHashes(pair.target.url({ db: 'app' }))).toEqual(afterOnce);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
