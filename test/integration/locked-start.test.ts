// Issue 11, part 3: a source table locked by someone else when a run starts (an ALTER TABLE or a
// VACUUM FULL holding ACCESS EXCLUSIVE) is waited for under short lock timeouts, and a table that
// stays locked is named, with the session that holds it.
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';

const pair = clusterPair({
  name: 'locked-start',
  db: 'app',
  sourceSql: `CREATE TABLE busy (id int PRIMARY KEY, v text);
              INSERT INTO busy SELECT g, 'v' FROM generate_series(1, 100) g;
              CREATE TABLE calm (id int PRIMARY KEY);`,
});

/** A session that holds ACCESS EXCLUSIVE on the table until it is told to let go. */
async function holdExclusive(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
  await c.connect();
  await c.query('BEGIN');
  await c.query('LOCK TABLE busy IN ACCESS EXCLUSIVE MODE');
  return c;
}

describe('a table locked at start', () => {
  it('is waited for, and the run goes on once the lock is gone', async () => {
    await pair.target.query('CREATE DATABASE waited');
    const holder = await holdExclusive();
    const started = Date.now();
    const run = startCli([
      'migrate',
      '--exit-when-synced',
      '--source',
      pair.source.url({ db: 'app' }),
      '--target',
      pair.target.url({ db: 'waited' }),
      '--state',
      path.join(pair.dir, 'waited.sqlite'),
    ]);
    // Longer than one lock_timeout of a control session (5 s).
    await new Promise((r) => setTimeout(r, 7_000));
    await holder.query('COMMIT');
    await holder.end();
    const res = await run.done;
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    expect(Date.now() - started).toBeGreaterThan(7_000);
    const rows = await pair.target.query<{ n: number }>('SELECT count(*)::int AS n FROM busy', [], 'waited');
    expect(rows[0]!.n).toBe(100);
  });

  it('names a table that stays locked, and the session holding it', async () => {
    await pair.target.query('CREATE DATABASE named');
    const holder = await holdExclusive();
    const [{ pid }] = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [
      { pid: number },
    ];
    try {
      const res = await runCli([
        'migrate',
        '--exit-when-synced',
        '--capture-lock-wait',
        '6s',
        '--source',
        pair.source.url({ db: 'app' }),
        '--target',
        pair.target.url({ db: 'named' }),
        '--state',
        path.join(pair.dir, 'named.sqlite'),
      ]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('PGFERRY_TABLE_LOCKED');
      expect(res.stderr).toContain(`busy (pid ${pid})`);
      // Nothing was bound: the target is untouched.
      const tables = await pair.target.query(
        "SELECT 1 FROM pg_tables WHERE schemaname = 'public'",
        [],
        'named',
      );
      expect(tables).toHaveLength(0);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  });
});
