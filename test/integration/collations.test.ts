// Text keys under two collations: the source database sorts text with ICU en-US (case folded:
// apple < Apple < banana), the target with C (bytes: Apple < Banana < apple). pgferry is killed
// right after chunks have committed on the target and before it has recorded them, twice, so
// the resumed copy must tell which rows each chunk put there; the target ends equal, verify
// --checksums says so, and preflight says that text sorts differently on the two sides.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { verify } from '../../engine/verify/verify.js';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

let source: Cluster;
let target: Cluster;
let dir: string;

const KEYS = `(CASE g % 3 WHEN 0 THEN upper(md5(g::text)) WHEN 1 THEN md5(g::text) ELSE initcap(md5(g::text) || ' x') END) || '-' || g`;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-collations-'));
  await source.query(
    `CREATE DATABASE app TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`,
  );
  await target.query(`CREATE DATABASE app TEMPLATE template0 LOCALE 'C.UTF-8'`);
  await source.query(
    `CREATE TABLE words (k text PRIMARY KEY, n int NOT NULL, payload text);
     INSERT INTO words SELECT ${KEYS}, g, repeat(md5(g::text), 3) FROM generate_series(1, 40000) g;
     CREATE TABLE pairs (a text, b int, payload text, PRIMARY KEY (a, b));
     INSERT INTO pairs SELECT CASE g % 2 WHEN 0 THEN 'Item' ELSE 'item' END || (g % 50), g, repeat('p', 100)
       FROM generate_series(1, 30000) g;
     ANALYZE;`,
    [],
    'app',
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('text keys under different collations', () => {
  const args = () => [
    'migrate',
    '--source',
    source.url({ db: 'app' }),
    '--target',
    target.url({ db: 'app' }),
    '--state',
    path.join(dir, 'state.sqlite'),
    '--jobs',
    '3',
    '--chunk-size',
    '64kB',
  ];

  it('preflight says that text sorts differently on the two sides', async () => {
    const res = await runCli(['preflight', ...args().slice(1, 5), '--json']);
    expect(res.stdout).toContain('collation');
    expect(res.stdout).toMatch(/en-US/);
  });

  it('copies with chunks committed but not recorded, resumes and ends equal', async () => {
    for (let i = 0; i < 2; i++) {
      const killed = await runCli([...args(), '--exit-when-synced'], {
        PGFERRY_TEST_CRASH_AT: 'copy:chunk-committed',
      });
      expect(killed.signal, killed.stderr.slice(-2000)).toBe('SIGKILL');
      // The run itself says it too, when it starts.
      if (i === 0) expect(killed.stderr).toContain('collation-differs');
    }
    const done = await runCli([...args(), '--exit-when-synced']);
    expect(done.code, done.stderr.slice(-3000)).toBe(0);
    const cmp = await compareDatabases(source.url({ db: 'app' }), target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('verify --checksums compares the same rows on both sides', async () => {
    // Ranges of 2,000 rows: each table is compared in many parts.
    const check = () =>
      verify({
        source: new ConnInfo('source', source.url({ db: 'app' })),
        target: new ConnInfo('target', target.url({ db: 'app' })),
        filter: { include: [], exclude: [] },
        checksums: true,
        jobs: 2,
        rangeRows: 2_000,
      });
    const equal = await check();
    expect(equal.tables.filter((t) => !t.equal)).toEqual([]);
    for (const t of equal.tables) expect(t.rangesChecked, t.table).toBeGreaterThan(10);
    // A row changed on the target is found and named by its key.
    const [changed] = await target.query<{ k: string }>(
      `UPDATE words SET n = -1 WHERE k = (SELECT min(k) FROM words) RETURNING k`,
      [],
      'app',
    );
    const differs = await check();
    expect(differs.equal).toBe(false);
    const words = differs.tables.find((t) => t.table === 'public.words')!;
    expect(words.differences).toEqual([{ key: { k: changed!.k }, kind: 'different' }]);
    expect(differs.tables.find((t) => t.table === 'public.pairs')!.equal).toBe(true);
  });
});
