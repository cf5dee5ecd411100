// A table with a big backlog is replayed in slices (disjoint key ranges, each in its own snapshot,
// at once). Slicing must lose nothing: not with a writer changing the table meanwhile, not across a
// TRUNCATE in the backlog (a slice that sees one applies nothing), not when two keys swapped a
// unique value and land in different slices (the table falls back to unsliced batches), not with
// a composite key. Every drain ends with the target equal to the source, row for row.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'slices',
  sourceSql: `CREATE TABLE hot (id int PRIMARY KEY, v int NOT NULL, pad text);
     INSERT INTO hot SELECT g, 0, repeat('x', g % 50) FROM generate_series(1, 60000) g;
     CREATE TABLE uniq (id int PRIMARY KEY, code text NOT NULL UNIQUE);
     INSERT INTO uniq SELECT g, 'c' || g FROM generate_series(1, 30000) g;
     CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
     INSERT INTO pairs SELECT g % 1000, 'b' || (g / 1000), g FROM generate_series(1, 40000) g;
     CREATE TABLE events (at timestamptz, id uuid, note text COLLATE "C", amount numeric,
                          PRIMARY KEY (at, id));
     INSERT INTO events SELECT timestamptz '2024-03-31 00:00:00+00' + g * interval '1.5 second',
                               md5(g::text)::uuid, 'É' || g, g / 7.0
       FROM generate_series(1, 40000) g;
     CREATE TABLE labels (name text COLLATE "C" PRIMARY KEY, n int);
     INSERT INTO labels SELECT 'label ' || md5(g::text) || ' \\ ''q''', g FROM generate_series(1, 40000) g;`,
});

/** Runs `migrate --exit-when-synced` with debug logs; returns the log lines' messages. */
async function drain(jobs: number): Promise<{ msg: string; table?: string; slices?: number }[]> {
  const r = await runCli(pair.migrate('--exit-when-synced', '--jobs', String(jobs)), {
    PGFERRY_LOG_LEVEL: 'debug',
  });
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; table?: string; slices?: number });
}

async function expectEqual(): Promise<void> {
  const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
  expect(cmp.target).toEqual(cmp.source);
}

const sliced = (lines: { msg: string; table?: string; slices?: number }[], table: string) =>
  lines.filter((l) => l.msg === 'replaying a table in slices' && l.table === table);

describe('replay in slices', () => {
  it('copies, then drains a one-table backlog in slices while a writer goes on', async () => {
    await drain(2);
    await pair.source.query(
      `UPDATE hot SET v = v + 1;
       DELETE FROM hot WHERE id % 13 = 0;
       INSERT INTO hot SELECT g, 1, 'new' FROM generate_series(60001, 65000) g;
       UPDATE hot SET id = id + 1000000 WHERE id BETWEEN 2000 AND 2999;`,
      [],
      'app',
    );
    // A writer keeps changing the rows the slices are applying, each slice in its own snapshot.
    const writer = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    await writer.connect();
    let writing = true;
    let writes = 0;
    const loop = (async () => {
      for (let i = 0; writing; i++) {
        const id = 1 + ((i * 7919) % 65000);
        await writer.query(
          `UPDATE hot SET v = v + 1 WHERE id = $1;
           DELETE FROM hot WHERE id = $1 + 1;
           INSERT INTO hot VALUES ($1 + 1, -1, 'again') ON CONFLICT (id) DO UPDATE SET v = -2;`.replace(
            /\$1/g,
            String(id),
          ),
        );
        writes++;
      }
    })();
    const lines = await drain(4);
    writing = false;
    await loop;
    await writer.end();
    expect(writes).toBeGreaterThan(10);
    expect(sliced(lines, 'public.hot').length).toBeGreaterThan(0);
    expect(sliced(lines, 'public.hot')[0]!.slices).toBe(4);
    await drain(4);
    await expectEqual();
  });

  it('never applies a slice across a TRUNCATE', async () => {
    // Changes to rows on both sides of the TRUNCATE, a refill, and rows changed after it: a slice
    // applying keys past the TRUNCATE before it is applied would have them wiped by it.
    await pair.source.query(
      `UPDATE hot SET v = v + 5 WHERE id % 2 = 0;
       TRUNCATE hot;
       INSERT INTO hot SELECT g, 7, 'refill' FROM generate_series(1, 40000) g;
       UPDATE hot SET v = v + 1 WHERE id % 3 = 0;`,
      [],
      'app',
    );
    const lines = await drain(2);
    expect(sliced(lines, 'public.hot').length).toBeGreaterThan(0);
    await expectEqual();
  });

  it('falls back to unsliced batches when two slices hold a swapped unique value', async () => {
    // Every row takes the next row's code (the last takes the first's): wherever the ranges are
    // cut, the last key of one slice takes a code that the next slice's first key still holds on
    // the target.
    await pair.source.query(
      `BEGIN;
       UPDATE uniq SET code = 'tmp' || id;
       UPDATE uniq SET code = 'c' || (id % 30000 + 1);
       COMMIT;`,
      [],
      'app',
    );
    const lines = await drain(2);
    expect(sliced(lines, 'public.uniq').length).toBeGreaterThan(0);
    expect(lines.some((l) => l.msg === 'unique conflict between slices: the table is no longer sliced')).toBe(
      true,
    );
    await expectEqual();
  });

  it('slices keys of other types: timestamptz and uuid, text with quotes and backslashes', async () => {
    // Range bounds travel as the keys' text forms: they must come back as the same values.
    await pair.source.query(
      `UPDATE events SET amount = amount + 1;
       DELETE FROM events WHERE amount::int % 9 = 0;
       UPDATE events SET at = at + interval '1 microsecond' WHERE amount::int % 9 = 1;
       UPDATE labels SET n = -n;
       DELETE FROM labels WHERE n % 5 = 0;`,
      [],
      'app',
    );
    const lines = await drain(4);
    expect(sliced(lines, 'public.events').length).toBeGreaterThan(0);
    expect(sliced(lines, 'public.labels').length).toBeGreaterThan(0);
    await expectEqual();
  });

  it('slices a composite key', async () => {
    await pair.source.query(
      `UPDATE pairs SET v = v * 2;
       DELETE FROM pairs WHERE a % 10 = 0;
       UPDATE pairs SET b = b || 'x' WHERE a % 10 = 1;`,
      [],
      'app',
    );
    const lines = await drain(3);
    expect(sliced(lines, 'public.pairs').length).toBeGreaterThan(0);
    await expectEqual();
  });
});
