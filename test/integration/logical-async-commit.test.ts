// `--capture logical` on a source whose commits are asynchronous (synchronous_commit off, as an
// application may set it): such a commit is visible at once, but a walsender decodes only WAL
// that was flushed, and the WAL writer flushes it later (here up to 10 s later). A write made
// just before `--exit-when-synced` or a cutover must still reach the target, and the cutover's
// count ledger must agree with the counts, so that it proves tables equal without counting them.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, v text);
INSERT INTO items SELECT g, 'v' FROM generate_series(1, 1000) g;
CREATE TABLE filler (id int PRIMARY KEY, pad text);
`;

const pair = clusterPair({ name: 'async-commit', sourceSql: SCHEMA });
const base = () => [
  '--source',
  pair.source.url({ db: pair.db }),
  '--target',
  pair.target.url({ db: pair.db }),
];
const state = () => ['--state', `${pair.dir}/state.sqlite`];

beforeAll(async () => {
  await pair.source.query("ALTER SYSTEM SET wal_writer_delay = '10s'");
  await pair.source.query('SELECT pg_reload_conf()');
});

let next = 2000;

/**
 * Commits `rows` new items asynchronously, left unflushed: a few pages of WAL first wake the WAL
 * writer, which flushes whole pages only and then sleeps wal_writer_delay; the items' commit,
 * on the page after them, waits for its next round.
 */
async function commitUnflushed(rows: number): Promise<void> {
  const c = new pg.Client({ connectionString: pair.source.url({ db: pair.db }) });
  await c.connect();
  try {
    await c.query('SET synchronous_commit = off');
    await c.query(
      `INSERT INTO filler SELECT g, repeat('x', 300) FROM generate_series($1::int, $1::int + 199) g`,
      [next],
    );
    await new Promise((r) => setTimeout(r, 300));
    await c.query(
      `INSERT INTO items SELECT g, 'late' FROM generate_series($1::int, $1::int + $2::int - 1) g`,
      [next, rows],
    );
    next += 1000;
    const [r] = (
      await c.query<{ unflushed: boolean }>(
        'SELECT pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn() AS unflushed',
      )
    ).rows;
    expect(r!.unflushed).toBe(true);
  } finally {
    await c.end();
  }
}

const lateOnTarget = async () =>
  Number(
    (
      await pair.target.query<{ n: string }>("SELECT count(*) AS n FROM items WHERE v = 'late'", [], pair.db)
    )[0]!.n,
  );

const synced = () => runCli(['migrate', ...base(), ...state(), '--capture', 'logical', '--exit-when-synced']);

describe('--capture logical with asynchronous commits', () => {
  it('--exit-when-synced waits for a commit not flushed yet', async () => {
    const first = await synced();
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await commitUnflushed(25);
    const again = await synced();
    expect(again.code, again.stderr.slice(-2000)).toBe(0);
    expect(await lateOnTarget()).toBe(25);
  });

  it('a cutover takes in a commit made just before it, and proves the tables by its ledger', async () => {
    await commitUnflushed(30);
    const cut = await runCli(['cutover', '--freeze', 'readonly', ...base(), ...state()], {
      PGFERRY_LOG_LEVEL: 'debug',
    });
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    expect(await lateOnTarget()).toBe(55);
    expect(cut.stderr).not.toContain('row count changes since the verified point differ');
    const cmp = await compareDatabases(pair.source.url({ db: pair.db }), pair.target.url({ db: pair.db }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
