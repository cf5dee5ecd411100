// Databases that encode text differently. A LATIN1 source moved into a UTF8 target: every
// character converted, and verify --checksums (rows hashed from their text, whose bytes differ
// between the two encodings) proves it equal and still finds a changed row. A SQL_ASCII source
// holding bytes that are not UTF-8, and a target whose encoding lacks a character: preflight warns,
// and the copy, or the replay of a later change, stops naming the table with a fix rather than
// "run again".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-encodings-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const createDb = (c: Cluster, db: string, encoding: string) =>
  c.query(`CREATE DATABASE ${db} ENCODING '${encoding}' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`);

const migrate = (db: string, ...extra: string[]) => [
  'migrate',
  '--source',
  source.url({ db }),
  '--target',
  target.url({ db }),
  '--state',
  path.join(dir, `${db}.sqlite`),
  '--exit-when-synced',
  ...extra,
];

const verify = (db: string) =>
  runCli(['verify', '--source', source.url({ db }), '--target', target.url({ db }), '--checksums', '--json']);

/** Every row of a table as the client reads it (UTF-8 from both servers), sorted. */
async function rowsOf(url: string, table: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT * FROM ${table}`);
    return rows.map((r) => JSON.stringify(r)).sort();
  } finally {
    await c.end();
  }
}

async function preflightWarnings(db: string) {
  const r = await runCli([
    'preflight',
    '--source',
    source.url({ db }),
    '--target',
    target.url({ db }),
    '--json',
  ]);
  const report = JSON.parse(r.stdout) as {
    source: { encoding: string };
    target: { encoding: string };
    warnings: { code: string; message: string }[];
  };
  return report;
}

describe('a LATIN1 source into a UTF8 target', () => {
  const db = 'latin';
  it('moves every character, and verify --checksums proves it equal', async () => {
    await createDb(source, db, 'LATIN1');
    await createDb(target, db, 'UTF8');
    await source.query(
      `CREATE TABLE words (k text PRIMARY KEY, v text);
       INSERT INTO words SELECT 'clé ' || g, repeat('ÿàç', g % 5) FROM generate_series(1, 300) g;
       CREATE TABLE nums (id int PRIMARY KEY, v text);
       INSERT INTO nums SELECT g, 'déjà vu ' || g FROM generate_series(1, 300) g;
       CREATE TABLE composite (a text COLLATE "C", b int, v text, PRIMARY KEY (a, b));
       INSERT INTO composite SELECT chr(190 + g % 60), g, 'ñ' FROM generate_series(1, 300) g;`,
      [],
      db,
    );
    const report = await preflightWarnings(db);
    expect([report.source.encoding, report.target.encoding]).toEqual(['LATIN1', 'UTF8']);
    expect(report.warnings.map((w) => w.code)).not.toContain('target-encoding-narrower');

    const first = await runCli(migrate(db));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await source.query(
      `UPDATE words SET v = 'Ünïcödé' WHERE k < 'clé 2'; DELETE FROM words WHERE k > 'clé 8';
       UPDATE nums SET v = 'çà' WHERE id % 7 = 0; INSERT INTO words VALUES ('Ý', 'ß');
       UPDATE composite SET v = 'ö' WHERE b % 3 = 0;`,
      [],
      db,
    );
    const second = await runCli(migrate(db));
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    for (const t of ['words', 'nums', 'composite'])
      expect(await rowsOf(target.url({ db }), t)).toEqual(await rowsOf(source.url({ db }), t));

    const equal = await verify(db);
    expect(equal.code, equal.stdout + equal.stderr.slice(-2000)).toBe(0);

    // A row changed on the target only: found, and named.
    await target.query(`UPDATE nums SET v = 'déjà vü' WHERE id = 42`, [], db);
    const differ = await verify(db);
    expect(differ.code).toBe(1);
    const verdicts = JSON.parse(differ.stdout) as {
      tables: { table: string; equal: boolean; differences?: { key: Record<string, string> }[] }[];
    };
    expect(verdicts.tables.filter((t) => !t.equal).map((t) => [t.table, t.differences])).toEqual([
      ['public.nums', [{ key: { id: '42' }, kind: 'different' }]],
    ]);
  }, 180_000);
});

describe('text one side cannot take', () => {
  it('a SQL_ASCII source with bytes that are not UTF-8: warned, and the copy stops naming the table and the fix', async () => {
    const db = 'ascii_copy';
    await createDb(source, db, 'SQL_ASCII');
    await createDb(target, db, 'UTF8');
    await source.query(
      `CREATE TABLE fine (id int PRIMARY KEY, v text); INSERT INTO fine SELECT g, 'ok' FROM generate_series(1, 100) g;
       CREATE TABLE legacy (id int PRIMARY KEY, v text); INSERT INTO legacy SELECT g, 'ok' FROM generate_series(1, 100) g;
       INSERT INTO legacy VALUES (1000, E'caf\\xe9');`,
      [],
      db,
    );
    const report = await preflightWarnings(db);
    expect(report.warnings.map((w) => w.code)).toContain('source-sql-ascii');

    const run = await runCli(migrate(db), { PGFERRY_LOG_LEVEL: 'warn' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('public.legacy');
    expect(run.stderr).toContain('22021');
    expect(run.stderr).toContain('source-sql-ascii');
    expect(run.stderr).toContain("the other database's encoding");
    expect(run.stderr).not.toContain('run the same command again');
  }, 120_000);

  it('a SQL_ASCII source whose later change is not UTF-8: the replay stops naming the table and the fix', async () => {
    const db = 'ascii_replay';
    await createDb(source, db, 'SQL_ASCII');
    await createDb(target, db, 'UTF8');
    await source.query(
      `CREATE TABLE legacy (id int PRIMARY KEY, v text); INSERT INTO legacy SELECT g, 'ok' FROM generate_series(1, 100) g;`,
      [],
      db,
    );
    const first = await runCli(migrate(db));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await source.query(`UPDATE legacy SET v = E'na\\xefve' WHERE id = 7`, [], db);
    const run = await runCli(migrate(db), { PGFERRY_LOG_LEVEL: 'warn' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('public.legacy');
    expect(run.stderr).toContain("the other database's encoding");
  }, 120_000);

  it('a UTF8 source into a LATIN1 target: warned, and a character LATIN1 lacks stops the copy', async () => {
    const db = 'narrow';
    await createDb(source, db, 'UTF8');
    await createDb(target, db, 'LATIN1');
    await source.query(
      `CREATE TABLE prices (id int PRIMARY KEY, v text); INSERT INTO prices SELECT g, 'é' FROM generate_series(1, 100) g;
       INSERT INTO prices VALUES (1000, '10 €');`,
      [],
      db,
    );
    const report = await preflightWarnings(db);
    expect(report.warnings.map((w) => w.code)).toContain('target-encoding-narrower');
    const run = await runCli(migrate(db), { PGFERRY_LOG_LEVEL: 'warn' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('public.prices');
    expect(run.stderr).toContain('22P05');
    expect(run.stderr).toContain('target-encoding-narrower');
    expect(run.stderr).toContain("the other database's encoding");
  }, 120_000);
});
