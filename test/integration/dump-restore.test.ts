// `pgferry dump-restore` on real servers, driven through the CLI: a round trip of a schema with
// extensions (one in its own schema, as Heroku's heroku_ext), exotic types, partitions, a
// materialized view, sequences and foreign keys ends equal row for row; a restore killed halfway
// (after a table committed and before it was recorded) and run again ends equal without a row
// twice; an extension the target lacks stops the run in preflight with the fix; --stream.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverBinDir } from '../../src/embedded/binaries.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

let source: Cluster;
let target: Cluster;
let newer: Cluster;
let dir: string;
/** Files of an extension made up for the version trap: 1.0 on PostgreSQL 15, only 2.0 on 17. */
const fakeExtension: string[] = [];

function installFakeExtension(version: 15 | 17, extVersion: string) {
  const ext = path.join(serverBinDir(version), '..', 'share', 'postgresql', 'extension');
  const files = {
    'pgferry_fake.control': `default_version = '${extVersion}'\nrelocatable = true\ncomment = 'pgferry test extension'\n`,
    [`pgferry_fake--${extVersion}.sql`]: `CREATE FUNCTION pgferry_fake_version() RETURNS text LANGUAGE sql AS $$ SELECT '${extVersion}' $$;\n`,
  };
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(ext, name), text);
    fakeExtension.push(path.join(ext, name));
  }
}

const SCHEMA = `
CREATE SCHEMA heroku_ext;
CREATE EXTENSION pg_trgm WITH SCHEMA heroku_ext;
CREATE EXTENSION citext;
CREATE TYPE mood AS ENUM ('ok', 'meh', 'great');
CREATE TABLE customers (id bigserial PRIMARY KEY, email citext UNIQUE NOT NULL, mood mood, tags text[], meta jsonb,
  spent numeric(12,2), born date, at timestamptz DEFAULT now(), r int4range, ip inet);
CREATE INDEX customers_email_trgm ON customers USING gin (email heroku_ext.gin_trgm_ops);
INSERT INTO customers (email, mood, tags, meta, spent, born, r, ip)
  SELECT 'user' || g || '@example.com', (ARRAY['ok','meh','great'])[1 + g % 3]::mood, ARRAY['a' || g, NULL],
         jsonb_build_object('g', g), g * 1.5, date '2000-01-01' + g, int4range(g, g + 10), '10.0.0.1'::inet + g
    FROM generate_series(1, 3000) g;
CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer bigint NOT NULL REFERENCES customers,
  total numeric, doubled numeric GENERATED ALWAYS AS (total * 2) STORED);
INSERT INTO orders (customer, total) SELECT 1 + g % 3000, g FROM generate_series(1, 8000) g;
CREATE TABLE events (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_a PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE events_b PARTITION OF events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO events SELECT g, date '2026-01-01' + g % 59, 'e' || g FROM generate_series(1, 4000) g;
CREATE TABLE notes (body text, n int);
INSERT INTO notes SELECT 'note ' || g, g FROM generate_series(1, 500) g;
CREATE MATERIALIZED VIEW spend AS SELECT customer, sum(total) AS total FROM orders GROUP BY customer;
-- A pgferry run's capture on the source: its schema is not dumped, its trigger must not be restored.
CREATE SCHEMA pgferry;
CREATE FUNCTION pgferry.capture_row_abc123_16400() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER pgferry_capture_abc123 AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION pgferry.capture_row_abc123_16400();
`;

const args = (db: string, extra: string[]) => [
  'dump-restore',
  '--source',
  source.url({ db: 'app' }),
  '--target',
  target.url({ db }),
  '--jobs',
  '2',
  ...extra,
];

async function expectEqual(db: string) {
  const [a, b] = await Promise.all([
    tableHashes(source.url({ db: 'app' }), { schemas: ['public'] }),
    tableHashes(target.url({ db }), { schemas: ['public'] }),
  ]);
  expect([...b.entries()]).toEqual([...a.entries()]);
}

beforeAll(async () => {
  [source, target, newer] = await Promise.all([startCluster(15), startCluster(15), startCluster(17)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-dump-restore-'));
  await source.query('CREATE DATABASE app');
  await source.query(SCHEMA, [], 'app');
  for (const db of ['whole', 'killed', 'streamed', 'watched', 'dumpkill'])
    await target.query(`CREATE DATABASE ${db}`);
  await newer.query('CREATE DATABASE app');
  await newer.query('CREATE DATABASE ext');
}, 180_000);

afterAll(async () => {
  for (const f of fakeExtension) fs.rmSync(f, { force: true });
  await Promise.all([source?.stop(), target?.stop(), newer?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('pgferry dump-restore', () => {
  it('round-trips extensions, types, partitions, a materialized view, sequences and foreign keys', async () => {
    const res = await runCli(args('whole', ['--workdir', path.join(dir, 'whole'), '--json']));
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out).toMatchObject({ ok: true, resumed: false, materializedViews: 1, snapshots: 1 });
    expect(out.verify.equal).toBe(true);
    await expectEqual('whole');
    // Progress per phase on stderr.
    expect(res.stderr).toMatch(/"phase":"dump".*\d+\/\d+ tables/);
    expect(res.stderr).toMatch(/"phase":"restore"/);
    const [facts] = await target.query(
      `SELECT (SELECT count(*) FROM spend)::int AS spend,
              (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm') AS trgm,
              (SELECT count(*) FROM pg_constraint WHERE contype = 'f')::int AS fks,
              (SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_email_trgm')::int AS gin,
              (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgferry%')::int AS capture`,
      [],
      'whole',
    );
    expect(facts).toEqual({ spend: 3000, trgm: 'heroku_ext', fks: 1, gin: 1, capture: 0 });
    // Sequences continue after the source's values.
    const [ids] = await target.query(
      `INSERT INTO customers (email) VALUES ('new@example.com') RETURNING id::int AS c,
         (SELECT max(id)::int FROM orders) AS o`,
      [],
      'whole',
    );
    expect(ids!.c).toBe(3001);
    const [next] = await target.query(
      `INSERT INTO orders (customer, total) VALUES (1, 1) RETURNING id`,
      [],
      'whole',
    );
    expect(next!.id).toBe(8001);
  }, 180_000);

  it('resumes a restore killed after a table committed, with no row twice', async () => {
    const workdir = path.join(dir, 'killed');
    const first = await runCli(args('killed', ['--workdir', workdir]), {
      PGFERRY_TEST_CRASH_AT: 'dump-restore:table-committed',
    });
    expect(first.signal).toBe('SIGKILL');
    const record = JSON.parse(fs.readFileSync(path.join(workdir, 'pgferry-dump.json'), 'utf8'));
    expect(record.schemaDumped).toBe(true);
    expect(record.tables.every((t: { dumped: boolean }) => t.dumped)).toBe(true);
    expect(record.tables.some((t: { restored: boolean }) => t.restored)).toBe(false);
    const again = await runCli(args('killed', ['--workdir', workdir]));
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    expect(again.stdout).toMatch(/^resumed and finished: 5 tables/);
    expect(again.stdout).toMatch(/verify: equal/);
    await expectEqual('killed');
  }, 180_000);

  it('--stream pipes pg_dump into pg_restore and ends equal', async () => {
    const res = await runCli(args('streamed', ['--stream']));
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect(res.stdout).toMatch(/verify: equal/);
    await expectEqual('streamed');
  }, 180_000);

  it('stops in preflight when the target lacks an extension of the source, naming the fix', async () => {
    await source.query('CREATE DATABASE old');
    await source.query('CREATE EXTENSION adminpack; CREATE TABLE t (id int PRIMARY KEY)', [], 'old');
    const res = await runCli([
      'dump-restore',
      '--source',
      source.url({ db: 'old' }),
      '--target',
      newer.url({ db: 'app' }),
      '--workdir',
      path.join(dir, 'old'),
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /PGFERRY_PREFLIGHT_PROBLEMS.*extension adminpack .* not available on the target.*fix: install adminpack/,
    );
    const tables = await newer.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`,
      [],
      'app',
    );
    expect(tables[0]!.n).toBe(0);
  }, 120_000);

  it('resumes a dump killed halfway in a new snapshot, says so, and ends equal', async () => {
    const workdir = path.join(dir, 'dumpkill');
    const first = await runCli(args('dumpkill', ['--workdir', workdir]), {
      PGFERRY_TEST_CRASH_AT: 'dump-restore:table-dumped',
    });
    expect(first.signal).toBe('SIGKILL');
    const record = JSON.parse(fs.readFileSync(path.join(workdir, 'pgferry-dump.json'), 'utf8'));
    expect(record.tables.filter((t: { dumped: boolean }) => t.dumped).length).toBeGreaterThanOrEqual(1);
    expect(record.tables.filter((t: { dumped: boolean }) => !t.dumped).length).toBeGreaterThanOrEqual(1);
    const again = await runCli(args('dumpkill', ['--workdir', workdir, '--json']));
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    expect(again.stderr).toMatch(
      /resuming the dump in a new snapshot: \d+ table\(s\) were dumped in an earlier one/,
    );
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, resumed: true, snapshots: 2 });
    await expectEqual('dumpkill');
  }, 180_000);

  it('serves progress and metrics with --http while it runs', async () => {
    const port = await freePort();
    const run = startCli(
      args('watched', ['--workdir', path.join(dir, 'watched'), '--http', `127.0.0.1:${port}`]),
      // Up to 4 s after each table restored: the second run below, which takes its lock only once
      // its own preflight passed (seconds on a loaded machine), must find this one still restoring.
      {
        PGFERRY_TEST_DELAY_AT: 'dump-restore:table-restored=4000',
      },
    );
    const seen = await waitFor(
      'restore metrics',
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => null))?.text();
        return (
          text?.includes('pgferry_dump_restore_phase{phase="restore"} 1') &&
          /pgferry_dump_restore_tables_done [1-9]/.test(text) &&
          text
        );
      },
      60_000,
      100,
    );
    expect(seen).toMatch(/pgferry_dump_restore_tables_total 5/);
    const status = await (await fetch(`http://127.0.0.1:${port}/status`)).json();
    expect(status).toMatchObject({ phase: 'restore', total: 5 });
    // A second run on the same directory meanwhile is refused.
    const second = await runCli(args('watched', ['--workdir', path.join(dir, 'watched')]));
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/PGFERRY_STATE_LOCKED.*in use by pgferry process \d+/);
    const end = await run.done;
    expect(end.code, end.stderr.slice(-2000)).toBe(0);
    await expectEqual('watched');
  }, 180_000);

  it("creates each extension at the source's version, not the target's default", async () => {
    await source.query('CREATE DATABASE ext');
    await source.query('CREATE EXTENSION amcheck; CREATE TABLE t (id int PRIMARY KEY)', [], 'ext');
    const [src] = await source.query(
      `SELECT extversion FROM pg_extension WHERE extname = 'amcheck'`,
      [],
      'ext',
    );
    const [def] = await newer.query(
      `SELECT default_version FROM pg_available_extensions WHERE name = 'amcheck'`,
    );
    expect(def!.default_version).not.toBe(src!.extversion);
    const res = await runCli([
      'dump-restore',
      '--source',
      source.url({ db: 'ext' }),
      '--target',
      newer.url({ db: 'ext' }),
      '--workdir',
      path.join(dir, 'ext'),
    ]);
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const [dst] = await newer.query(
      `SELECT extversion FROM pg_extension WHERE extname = 'amcheck'`,
      [],
      'ext',
    );
    expect(dst!.extversion).toBe(src!.extversion);
  }, 120_000);

  it('stops on an extension the target offers only at another version, and with --adapt-extensions says what changed', async () => {
    installFakeExtension(15, '1.0');
    installFakeExtension(17, '2.0');
    await source.query('CREATE DATABASE fake');
    await source.query('CREATE EXTENSION pgferry_fake; CREATE TABLE t (id int PRIMARY KEY)', [], 'fake');
    await newer.query('CREATE DATABASE fake');
    const run = (extra: string[]) =>
      runCli([
        'dump-restore',
        '--source',
        source.url({ db: 'fake' }),
        '--target',
        newer.url({ db: 'fake' }),
        '--workdir',
        path.join(dir, 'fake'),
        ...extra,
      ]);
    const refused = await run([]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /extension pgferry_fake is 1\.0 on the source; the target offers 2\.0, not 1\.0 \(fix: run again with --adapt-extensions/,
    );
    const adapted = await run(['--adapt-extensions', '--json']);
    expect(adapted.code, adapted.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(adapted.stdout).adaptedExtensions).toEqual([
      { name: 'pgferry_fake', from: '1.0', to: '2.0' },
    ]);
    const [v] = await newer.query('SELECT pgferry_fake_version() AS v', [], 'fake');
    expect(v!.v).toBe('2.0');
  }, 120_000);
});
