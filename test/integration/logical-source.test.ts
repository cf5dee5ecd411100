// `--capture logical` as an operator meets it: a role without REPLICATION is refused before
// anything is written (named, with the fix) and the same command works once the fix is made; a
// crash between the target's commit and the slot's confirmation replays the batch again and loses
// nothing; the slot's confirmed position never passes what the checkpoint store recorded, which
// takes in a batch consumed right after another within a moment; TOASTed
// values left unchanged, truncates, keys an array literal must quote (quotes, backslashes, braces,
// NULL, blanks) and rows moving between partitions arrive; a table added while
// it replicates joins with the changes made during its copy; the run cannot be
// resumed with another --capture; `cleanup` drops the slot and the publication.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { CONFIRMED_META } from '../../engine/capture/logical/logical-source.js';
import { runCli, startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const SCHEMA = `
CREATE ROLE mover LOGIN PASSWORD 'mover-pw' NOSUPERUSER;
CREATE TABLE docs (id int PRIMARY KEY, big text, n int);
INSERT INTO docs SELECT g, repeat(md5(g::text), 400), 0 FROM generate_series(1, 200) g;
CREATE TABLE kv (k text PRIMARY KEY, v text);
INSERT INTO kv SELECT 'k' || g, 'v' FROM generate_series(1, 500) g;
CREATE TABLE events (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 300) g;
ALTER TABLE docs OWNER TO mover; ALTER TABLE kv OWNER TO mover; ALTER TABLE events OWNER TO mover;
ALTER TABLE events_eu OWNER TO mover; ALTER TABLE events_us OWNER TO mover;
`;

const pair = clusterPair({ name: 'logical', db: 'shop', sourceSql: SCHEMA, versions: [15, 17] });
const mover = () => pair.source.url({ db: 'shop', user: 'mover', password: 'mover-pw' });
const state = () => path.join(pair.dir, 'logical.sqlite');
const args = () => [
  'migrate',
  '--source',
  mover(),
  '--target',
  pair.target.url({ db: 'shop' }),
  '--state',
  state(),
  '--capture',
  'logical',
  '--jobs',
  '2',
];
const sourceCount = async (sql: string) =>
  Number((await pair.source.query<{ n: string }>(sql, [], 'shop'))[0]!.n);

/** The run replicates (its unique constraints built), and has confirmed a slot position if `confirmed`. */
function replicating(confirmed: boolean): boolean {
  if (!fs.existsSync(state())) return false;
  const s = CheckpointStore.open(state(), { create: false, readonly: true });
  try {
    return s.getMeta('unique_built') !== null && (!confirmed || s.getMeta(CONFIRMED_META) !== null);
  } finally {
    s.close();
  }
}

describe('--capture logical', () => {
  it('refuses a role that may not stream, before writing anything, and runs once it may', async () => {
    await pair.source.query('GRANT CREATE ON DATABASE shop TO mover');
    const pre = await runCli([
      'preflight',
      '--source',
      mover(),
      '--target',
      pair.target.url({ db: 'shop' }),
      '--capture',
      'logical',
    ]);
    expect(pre.code).toBe(1);
    expect(pre.stdout).toContain('ALTER ROLE mover REPLICATION');

    const refused = await runCli(args());
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('PGFERRY_PREFLIGHT_PROBLEMS');
    expect(refused.stderr).toContain('may not stream changes');
    // Nothing on either side, and no run bound to the state file: running again is a new run.
    expect(await sourceCount('SELECT count(*) AS n FROM pg_replication_slots')).toBe(0);
    expect(await sourceCount('SELECT count(*) AS n FROM pg_publication')).toBe(0);
    expect(await sourceCount("SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'pgferry'")).toBe(0);
    const store = CheckpointStore.open(state(), { create: false, readonly: true });
    expect(store.setup()).toBeNull();
    store.close();

    await pair.source.query('ALTER ROLE mover REPLICATION');
    const first = startCli(args(), { PGFERRY_TEST_CRASH_AT: 'replay:batch-read' });
    await waitFor('replicating', () => replicating(false));
    // Past the stream's once-a-second confirmation of positions it received: this one must wait for the target.
    await new Promise((r) => setTimeout(r, 1500));
    await pair.source.query('UPDATE docs SET n = n + 1 WHERE id = 1', [], 'shop');
    // Killed with the first batch read from the stream and not applied: the slot must send it again.
    expect((await first.done).signal).toBe('SIGKILL');
    const events = CheckpointStore.open(state(), { create: false, readonly: true });
    expect(events.events(100).map((e) => e.message)).toContainEqual(
      expect.stringMatching(/^slot pgferry_\w+ created and checked: the copy starts after it$/),
    );
    events.close();
    await pair.source.query('UPDATE docs SET n = n + 1 WHERE id = 2', [], 'shop');
    const second = startCli(args(), { PGFERRY_TEST_CRASH_AT: 'replay:target-committed' });
    // Killed after a batch's target commit, before the slot was told: it is applied again.
    expect((await second.done).signal).toBe('SIGKILL');
    const done = await pair.target.query<{ n: number }>(
      'SELECT n FROM docs WHERE id IN (1, 2) ORDER BY id',
      [],
      'shop',
    );
    expect(done.map((r) => r.n)).toEqual([1, 1]);
  });

  it('loses nothing across a crash between the target commit and the slot confirmation', async () => {
    // Changes made while no pgferry runs wait in the slot.
    await pair.source.query(
      `UPDATE docs SET n = n + 1 WHERE id <= 50;
       TRUNCATE kv; INSERT INTO kv SELECT 'r' || g, 'w' FROM generate_series(1, 40) g;
       INSERT INTO kv VALUES (E'q"u\\\\o', 'odd'), ('{a,b}', 'odd'), ('NULL', 'odd'), (' ', 'odd'), ('', 'odd');
       UPDATE events SET region = 'eu' WHERE id BETWEEN 1 AND 20 AND region = 'us';
       DELETE FROM events WHERE id > 290;`,
      [],
      'shop',
    );
    const run = startCli(args());
    await waitFor('replicating', () => replicating(true));
    for (let i = 0; i < 20; i++) {
      await pair.source.query(`UPDATE docs SET n = n + 1 WHERE id % 20 = ${i}`, [], 'shop');
      await pair.source.query(`INSERT INTO kv VALUES ('x${i}', 'y')`, [], 'shop');
    }
    await new Promise((r) => setTimeout(r, 1500));
    run.child.kill('SIGKILL');
    await run.done;
    // The slot was told no more than what the state file recorded as applied.
    const s = CheckpointStore.open(state(), { create: false, readonly: true });
    const recorded = s.getMeta(CONFIRMED_META)!;
    s.close();
    const [slot] = await pair.source.query<{ behind: boolean }>(
      'SELECT confirmed_flush_lsn <= $1::pg_lsn AS behind FROM pg_replication_slots',
      [recorded],
      'shop',
    );
    expect(slot!.behind).toBe(true);

    const final = await runCli([...args(), '--exit-when-synced']);
    expect(final.code, final.stderr.slice(-2000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'shop' }), pair.target.url({ db: 'shop' }));
    expect(cmp.target).toEqual(cmp.source);
    // The TOASTed column, never updated, is on the target as on the source.
    const big = await pair.target.query<{ n: string }>(
      'SELECT count(*) AS n FROM docs WHERE length(big) = 12800',
      [],
      'shop',
    );
    expect(Number(big[0]!.n)).toBe(200);
  });

  it('records a batch consumed right after another one within a moment, not at the next status', async () => {
    const run = startCli(args());
    await waitFor('replicating', () => replicating(true));
    // Flushed at commit, so that each reaches the stream at once (the clusters run with it off).
    const commit = (sql: string) =>
      pair.source.query(`BEGIN; SET LOCAL synchronous_commit = on; ${sql}; COMMIT`, [], 'shop');
    await commit('UPDATE docs SET n = 100 WHERE id = 7');
    await waitFor('the first change on the target', async () => {
      const rows = await pair.target.query('SELECT 1 FROM docs WHERE id = 7 AND n = 100', [], 'shop');
      return rows.length === 1;
    });
    // The first batch's position is recorded; the second batch is consumed well within CONFIRM_MS
    // of it, so its position is held back, then recorded, long before the stream's 5 s status.
    const [mark] = await pair.source.query<{ lsn: string }>(
      'SELECT pg_current_wal_insert_lsn()::text AS lsn',
      [],
      'shop',
    );
    await commit("INSERT INTO kv VALUES ('soon', 'z')");
    await waitFor('the second change on the target', async () => {
      const rows = await pair.target.query("SELECT 1 FROM kv WHERE k = 'soon'", [], 'shop');
      return rows.length === 1;
    });
    const past = async () => {
      const s = CheckpointStore.open(state(), { create: false, readonly: true });
      const recorded = s.getMeta(CONFIRMED_META)!;
      s.close();
      const [row] = await pair.source.query<{ past: boolean }>(
        'SELECT $1::pg_lsn > $2::pg_lsn AS past',
        [recorded, mark!.lsn],
        'shop',
      );
      return row!.past;
    };
    await waitFor('the second position recorded', past, 700);
    run.child.kill('SIGTERM');
    expect((await run.done).code).toBe(0);
  });

  it('takes in a table added while it replicates, its changes during the join included', async () => {
    await pair.source.query(
      `CREATE TABLE extra (id int PRIMARY KEY, v text); ALTER TABLE extra OWNER TO mover;
       INSERT INTO extra SELECT g, 'a' FROM generate_series(1, 2000) g;`,
      [],
      'shop',
    );
    const run = startCli(args());
    // The state says replicating from the run before: wait for this daemon's own word.
    await waitFor('replicating', () => run.output().stderr.includes('replicating ·'));
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await pair.source.query(
          `UPDATE extra SET v = 'b${i}' WHERE id % 50 = ${i % 50}; INSERT INTO extra VALUES (${5000 + i}, 'new')`,
          [],
          'shop',
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const add = await runCli(['tables', 'add', 'public.extra', '--state', state()]);
    writing = false;
    await writer;
    expect(add.code, add.stderr.slice(-2000)).toBe(0);
    run.child.kill('SIGTERM');
    const stopped = await run.done;
    expect(stopped.code, `signal ${stopped.signal}: ${stopped.stderr.slice(-3000)}`).toBe(0);
    const final = await runCli([...args(), '--exit-when-synced']);
    expect(final.code, final.stderr.slice(-2000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'shop' }), pair.target.url({ db: 'shop' }));
    expect(Object.keys(cmp.target)).toContain('public.extra');
    expect(cmp.target).toEqual(cmp.source);
  });

  it('refuses to resume the run with another change source', async () => {
    const other = await runCli(args().map((a) => (a === 'logical' ? 'triggers' : a)));
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('PGFERRY_STATE_MISMATCH');
    expect(other.stderr).toContain('--capture was logical');
  });

  it("cleanup drops the slot and the publication, and nobody else's named like them", async () => {
    // Someone else's slot and publication whose names merely start with pgferry_ (the bench's
    // logical peer's were dropped so once).
    await pair.source.query(
      `SELECT pg_create_logical_replication_slot('pgferry_bystander', 'pgoutput');
       CREATE PUBLICATION pgferry_bystander;`,
      [],
      'shop',
    );
    const clean = await runCli(['cleanup', '--source', mover()]);
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toContain('replication slot pgferry_');
    expect(clean.stdout).toContain('publication pgferry_');
    expect(clean.stdout).not.toContain('pgferry_bystander');
    const names = (sql: string) => pair.source.query<{ name: string }>(sql, [], 'shop');
    expect(await names('SELECT slot_name AS name FROM pg_replication_slots')).toEqual([
      { name: 'pgferry_bystander' },
    ]);
    expect(await names('SELECT pubname AS name FROM pg_publication')).toEqual([
      { name: 'pgferry_bystander' },
    ]);
    await pair.source.query(
      "SELECT pg_drop_replication_slot('pgferry_bystander'); DROP PUBLICATION pgferry_bystander;",
      [],
      'shop',
    );
  });
});
