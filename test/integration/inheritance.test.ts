// Issue 12, finding 1: in an inheritance tree each table is captured and replayed on its own, so a
// parent's replay (a TRUNCATE ONLY, an UPDATE ONLY) never deletes rows of a child that shares its
// key values.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'inheritance',
  db: 'app',
  sourceSql: `
    CREATE TABLE parent (id int PRIMARY KEY, v text);
    CREATE TABLE child (extra text) INHERITS (parent);
    ALTER TABLE child ADD PRIMARY KEY (id);
    INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 100) g;
    -- The same key values in the child.
    INSERT INTO child SELECT g, 'c' || g, 'x' FROM generate_series(1, 100) g;`,
});

describe('inheritance trees under replay', () => {
  it("replays a parent's TRUNCATE ONLY and UPDATE ONLY without touching the child's rows", async () => {
    const args = pair.migrate('--exit-when-synced');
    const first = await runCli(args);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `UPDATE ONLY parent SET v = v || '!' WHERE id <= 10;
       INSERT INTO child VALUES (101, 'c101', 'y');
       UPDATE child SET extra = 'z' WHERE id = 5;`,
      [],
      'app',
    );
    const second = await runCli(args);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `TRUNCATE ONLY parent;
       INSERT INTO parent SELECT g, 'new' || g FROM generate_series(1, 50) g;
       DELETE FROM ONLY parent WHERE id = 7;`,
      [],
      'app',
    );
    const third = await runCli(args);
    expect(third.code, third.stderr.slice(-2000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
    const [child] = await pair.target.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ONLY child',
      [],
      'app',
    );
    expect(child!.n).toBe(101);
  });
});
