// The capture triggers fire for every writer, and a trigger taken away stops the run for good.
// Writes in a session whose session_replication_role is replica (Bucardo, Slony or pglogical
// feeding this database, an ETL job skipping foreign-key checks) skip plain triggers: the capture's
// are ENABLE ALWAYS. A trigger disabled under the run (ALTER TABLE … DISABLE TRIGGER ALL, as old
// load scripts do) leaves its table short: a resume finds it and refuses; a cutover finds it after
// the freeze and gives the writes back; and enabling it again does not make the run resumable,
// since the changes made meanwhile are lost to it.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const SCHEMA = `
  CREATE TABLE accounts (id int PRIMARY KEY, v text);
  INSERT INTO accounts SELECT g, 'a' FROM generate_series(1, 200) g;
  CREATE TABLE events (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  INSERT INTO events SELECT g, date '2024-06-01' + g, 'e' FROM generate_series(1, 400) g;`;

describe('writes in replica mode', () => {
  const pair = clusterPair({ name: 'capture-replica', sourceSql: SCHEMA });

  it('are captured and replayed, into a table and a partition', async () => {
    const first = await runCli(pair.migrate('--exit-when-synced'));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `SET session_replication_role = replica;
       UPDATE accounts SET v = 'replica' WHERE id <= 20; DELETE FROM accounts WHERE id > 190;
       INSERT INTO accounts VALUES (1000, 'replica');
       UPDATE events_2025 SET v = 'replica'; INSERT INTO events_2024 VALUES (5000, '2024-02-02', 'r');
       TRUNCATE events_2024;`,
      [],
      pair.db,
    );
    const second = await runCli(pair.migrate('--exit-when-synced'));
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    const { source, target } = await compareDatabases(
      pair.source.url({ db: pair.db }),
      pair.target.url({ db: pair.db }),
    );
    expect(target).toEqual(source);
  }, 120_000);
});

describe('a capture trigger disabled under the run', () => {
  const pair = clusterPair({ name: 'capture-disabled', sourceSql: SCHEMA });

  it('refuses the resume, naming the table, and the run stays refused once it is enabled again', async () => {
    const first = await runCli(pair.migrate('--exit-when-synced'));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `ALTER TABLE accounts DISABLE TRIGGER ALL; UPDATE accounts SET v = 'unseen' WHERE id = 1;`,
      [],
      pair.db,
    );
    const refused = await runCli(pair.migrate('--exit-when-synced'));
    expect(refused.code, refused.stderr.slice(-2000)).toBe(1);
    expect(refused.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
    expect(refused.stderr).toContain('accounts');

    await pair.source.query('ALTER TABLE accounts ENABLE TRIGGER ALL', [], pair.db);
    const again = await runCli(pair.migrate('--exit-when-synced'));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
  }, 120_000);
});

describe('a capture trigger disabled before a cutover', () => {
  const pair = clusterPair({ name: 'capture-disabled-cutover', sourceSql: SCHEMA });

  it('fails the cutover after the freeze and gives the source its writes back', async () => {
    const first = await runCli(pair.migrate('--exit-when-synced'));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `ALTER TABLE events_2025 DISABLE TRIGGER ALL; UPDATE events SET v = 'unseen' WHERE id = 300;`,
      [],
      pair.db,
    );
    const [, , src, , dst, , state] = pair.migrate();
    const cut = await runCli(['cutover', '--source', src!, '--target', dst!, '--state', state!]);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
    expect(cut.stderr).toContain('events_2025');
    // Writable again: the freeze was undone.
    await pair.source.query(`UPDATE accounts SET v = 'after' WHERE id = 2`, [], pair.db);
  }, 120_000);
});

describe('a source role granted TRIGGER on tables it does not own', () => {
  const pair = clusterPair({ name: 'capture-not-owner', sourceSql: SCHEMA });

  it('captures with plain triggers, and says what they miss', async () => {
    await pair.source.query(
      `CREATE ROLE migrator LOGIN PASSWORD 'migrator-pw'; GRANT CREATE ON DATABASE ${pair.db} TO migrator;
       GRANT SELECT, TRIGGER ON ALL TABLES IN SCHEMA public TO migrator;`,
      [],
      pair.db,
    );
    const args = pair.migrate('--exit-when-synced');
    args[2] = pair.source.url({ db: pair.db, user: 'migrator', password: 'migrator-pw' });
    const first = await runCli(args);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    expect(first.stderr).toContain('writers in session_replication_role replica skip');
    await pair.source.query(
      `UPDATE accounts SET v = 'x' WHERE id <= 20; DELETE FROM events WHERE id < 50`,
      [],
      pair.db,
    );
    const second = await runCli(args);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    const { source, target } = await compareDatabases(
      pair.source.url({ db: pair.db }),
      pair.target.url({ db: pair.db }),
    );
    expect(target).toEqual(source);
  }, 120_000);
});
