// Autovacuum is off on the target's copied tables while they are loaded and indexed (it held the
// index builds' locks for deadlock_timeout), including after a crash in the copy; once the
// indexes are built each table has the source's own setting back: none, false or true, beside
// other storage parameters, on plain tables, inheritance children and partitions.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'target-autovacuum',
  sourceSql: `CREATE TABLE plain (id int PRIMARY KEY, v text);
     CREATE TABLE tuned_off (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false, fillfactor = 90);
     CREATE TABLE tuned_on (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = true);
     CREATE TABLE parent (id int PRIMARY KEY, v text);
     CREATE TABLE child (extra int) INHERITS (parent);
     ALTER TABLE child ADD PRIMARY KEY (id);
     CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
     CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10000);
     CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10000) TO (MAXVALUE) WITH (autovacuum_enabled = false);
     INSERT INTO plain SELECT g, md5(g::text) FROM generate_series(1, 30000) g;
     INSERT INTO tuned_off SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
     INSERT INTO tuned_on SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
     INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 1000) g;
     INSERT INTO child SELECT g, 'c', g FROM generate_series(1001, 2000) g;
     INSERT INTO parted SELECT g, 'x' FROM generate_series(1, 20000) g;`,
});

/** Each table's storage parameters, in name order (SET puts the one it sets last). */
const reloptions = (side: 'source' | 'target') =>
  pair[side].query<{ relname: string; reloptions: string[] | null }>(
    `SELECT relname, (SELECT array_agg(o ORDER BY o) FROM unnest(reloptions) o) AS reloptions FROM pg_class
      WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY relname`,
    [],
    'app',
  );

describe("the target's autovacuum during the copy", () => {
  it('is off from the schema until the indexes are built, through a crash, then as on the source', async () => {
    const args = pair.migrate('--copy-only', '--jobs', '2', '--chunk-size', '256kB');
    const crashed = await runCli(args, { PGFERRY_TEST_CRASH_AT: 'copy:chunk-committed' });
    expect(crashed.signal, crashed.stderr.slice(-2000)).toBe('SIGKILL');
    for (const r of await reloptions('target')) {
      if (r.relname === 'parted') expect(r.reloptions).toBeNull();
      else expect(r.reloptions, r.relname).toContain('autovacuum_enabled=false');
    }

    const done = await runCli(args);
    expect(done.code, done.stderr.slice(-3000)).toBe(0);
    expect(done.stderr).toContain("autovacuum back on the target's tables");
    const source = await reloptions('source');
    expect(source.find((r) => r.relname === 'tuned_off')!.reloptions).toEqual([
      'autovacuum_enabled=false',
      'fillfactor=90',
    ]);
    expect(await reloptions('target')).toEqual(source);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
