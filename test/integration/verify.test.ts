// verify: counts per table; with --checksums one changed value in a million rows is found and its
// key named, as are a missing and an extra row; equal databases of different major versions and
// settings verify equal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

let source: Cluster;
let target: Cluster;
let dir: string;

const DATA = `
CREATE TABLE big (id int PRIMARY KEY, v text, n numeric, at timestamptz);
INSERT INTO big SELECT g, md5(g::text), g / 3.0, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 1000000) g;
CREATE TABLE pairs (a text, b int, note text, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT 'k' || (g % 100), g, NULL FROM generate_series(1, 5000) g;
CREATE TABLE loose (x int, y text);
INSERT INTO loose SELECT g, 'y' FROM generate_series(1, 100) g;
ANALYZE;
`;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(14), startCluster(17)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-verify-'));
  await Promise.all([source.query('CREATE DATABASE app'), target.query('CREATE DATABASE app')]);
  // The target's sessions print timestamps in another zone: verify must not care.
  await target.query("ALTER DATABASE app SET TimeZone = 'Asia/Kolkata'");
  await Promise.all([source.query(DATA, [], 'app'), target.query(DATA, [], 'app')]);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const verify = (extra: string[] = [], db = 'app') =>
  runCli(['verify', '--source', source.url({ db }), '--target', target.url({ db }), ...extra]);

interface Report {
  equal: boolean;
  tables: {
    table: string;
    equal: boolean;
    sourceRows: number;
    targetRows: number;
    differences?: { key: Record<string, string>; kind: string }[];
  }[];
}

describe('verify', () => {
  it('finds equal databases equal, by counts and by checksums', async () => {
    const counts = await verify();
    expect(counts.code, counts.stderr).toBe(0);
    expect(counts.stdout).toContain('Equal: 3 tables');
    const sums = await verify(['--checksums', '--json']);
    expect(sums.code, sums.stderr).toBe(0);
    const report = JSON.parse(sums.stdout) as Report;
    expect(report.tables.map((t) => [t.table, t.equal, t.sourceRows])).toEqual([
      ['public.big', true, 1000000],
      ['public.loose', true, 100],
      ['public.pairs', true, 5000],
    ]);
  });

  it('names the key of one changed value among a million rows, a missing and an extra row', async () => {
    await target.query(
      `UPDATE big SET v = 'changed' WHERE id = 654321;
       DELETE FROM big WHERE id = 123;
       INSERT INTO big VALUES (2000001, 'extra', 0, now());
       UPDATE pairs SET note = '' WHERE a = 'k7' AND b = 7;`,
      [],
      'app',
    );
    // Counts alone cannot see a delete balanced by an insert.
    const counts = await verify(['--json']);
    expect((JSON.parse(counts.stdout) as Report).tables.find((t) => t.table === 'public.big')?.equal).toBe(
      true,
    );

    const res = await verify(['--checksums', '--json']);
    expect(res.code).toBe(1);
    const report = JSON.parse(res.stdout) as Report;
    expect(report.equal).toBe(false);
    const big = report.tables.find((t) => t.table === 'public.big')!;
    expect(big.equal).toBe(false);
    expect(big.differences).toEqual(
      expect.arrayContaining([
        { key: { id: '654321' }, kind: 'different' },
        { key: { id: '123' }, kind: 'missing-on-target' },
        { key: { id: '2000001' }, kind: 'extra-on-target' },
      ]),
    );
    expect(big.differences).toHaveLength(3);
    const pairs = report.tables.find((t) => t.table === 'public.pairs')!;
    expect(pairs.differences).toEqual([{ key: { a: 'k7', b: '7' }, kind: 'different' }]);
    expect(report.tables.find((t) => t.table === 'public.loose')?.equal).toBe(true);

    const human = await verify(['--checksums']);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain('different         id=654321');
    expect(human.stdout).toContain('Different: 2 of 3 tables.');
  });

  it('finds a 14 → 17 copy of every type family equal', async () => {
    await Promise.all([source.query('CREATE DATABASE types'), target.query('CREATE DATABASE types')]);
    await source.query(fs.readFileSync(path.join(FIXTURES, 'types.sql'), 'utf8'), [], 'types');
    const copy = await runCli([
      'migrate',
      '--copy-only',
      '--source',
      source.url({ db: 'types' }),
      '--target',
      target.url({ db: 'types' }),
      '--state',
      path.join(dir, 'types.sqlite'),
    ]);
    expect(copy.code, copy.stderr.slice(-2000)).toBe(0);
    const res = await verify(['--checksums'], 'types');
    expect(res.stdout).toMatch(/Equal: \d+ tables, every row hashed/);
    expect(res.code, res.stdout + res.stderr).toBe(0);
  });
});
