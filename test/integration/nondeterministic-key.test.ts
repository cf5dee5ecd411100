// Keys whose equality is not byte equality: a text key under a nondeterministic (case-insensitive)
// ICU collation, a citext key, a numeric key (1.5 = 1.500). Two spellings of one key are one row,
// so an UPDATE that changes only a key's spelling is no key change to PostgreSQL (no second key
// is logged), and the target's row with the old spelling is the row to rewrite: replay must write
// the source row's own key (not the log's spelling) and rewrite the key on the target too, for
// every change source (Bucardo's when it is installed: its delta tables carry the key's collation).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bucardo, bucardoAvailable, installBucardo } from '../support/bucardo.js';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

let source: Cluster;
let target: Cluster;
let dir: string;
let bucardo: Bucardo | undefined;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-ndkey-'));
});

afterAll(async () => {
  await bucardo?.close();
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const SCHEMA = `CREATE EXTENSION citext;
  CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
  CREATE TABLE users (email text COLLATE ci PRIMARY KEY, n int NOT NULL);
  INSERT INTO users SELECT 'User' || g || '@Example.com', g FROM generate_series(1, 3000) g;
  CREATE TABLE handles (h citext PRIMARY KEY);
  INSERT INTO handles SELECT 'Handle' || g FROM generate_series(1, 3000) g;
  CREATE TABLE tags (t text COLLATE ci, k int, note text, PRIMARY KEY (t, k));
  INSERT INTO tags SELECT 'Tag' || (g % 100), g, 'x' FROM generate_series(1, 3000) g;
  CREATE TABLE prices (p numeric PRIMARY KEY, note text);
  INSERT INTO prices SELECT g / 4.0, 'p' FROM generate_series(1, 3000) g;`;

// Each statement commits alone: a later one reads the spelling an earlier one wrote.
const CHANGES = [
  'UPDATE users SET email = lower(email) WHERE n % 2 = 0',
  'UPDATE users SET email = upper(email), n = n + 1 WHERE n % 3 = 0',
  'DELETE FROM users WHERE n % 7 = 0',
  `INSERT INTO users VALUES ('NEW@x.org', -1)`,
  "UPDATE handles SET h = upper(h) WHERE right(h::text, 1) IN ('1', '4')",
  "UPDATE handles SET h = lower(h) WHERE right(h::text, 1) IN ('4', '7')",
  "DELETE FROM handles WHERE right(h::text, 1) = '9'",
  `UPDATE tags SET t = lower(t) WHERE k % 5 = 0`,
  `UPDATE tags SET t = upper(t), note = 'y' WHERE k % 10 = 0`,
  'UPDATE prices SET p = round(p, 3) WHERE p < 200',
];

const TABLES = ['public.users', 'public.handles', 'public.tags', 'public.prices'];

/** Bucardo replicating the tables to a mirror: its delta triggers log their keys from then on. */
async function underBucardo(db: string): Promise<void> {
  bucardo = await installBucardo();
  await bucardo.query('CREATE DATABASE mirror');
  await bucardo.query(SCHEMA, 'mirror');
  await bucardo.addDb('src', db, source);
  await bucardo.addDb('mirror', 'mirror');
  await bucardo.cli('add', 'table', ...TABLES, 'db=src', 'relgroup=rg');
  await bucardo.cli('add', 'sync', 's1', 'relgroup=rg', 'dbs=src:source,mirror:target');
  await bucardo.start();
}

describe.each(['triggers', 'logical', ...(bucardoAvailable() ? (['bucardo'] as const) : [])] as const)(
  'keys equal in more than one spelling (--capture %s)',
  (capture) => {
    const db = `app_${capture}`;
    const args = () => [
      'migrate',
      '--source',
      source.url({ db }),
      '--target',
      target.url({ db }),
      '--state',
      path.join(dir, `${capture}.sqlite`),
      '--capture',
      capture,
      '--exit-when-synced',
    ];

    it('replays keys whose case changed, and verify finds the sides equal', async () => {
      await Promise.all([source.query(`CREATE DATABASE ${db}`), target.query(`CREATE DATABASE ${db}`)]);
      await target.query('CREATE EXTENSION citext', [], db);
      await source.query(SCHEMA, [], db);
      if (capture === 'bucardo') await underBucardo(db);
      const first = await runCli(args());
      expect(first.code, first.stderr).toBe(0);
      for (const sql of CHANGES) await source.query(sql, [], db);
      const second = await runCli(args());
      expect(second.code, second.stderr).toBe(0);
      const { source: s, target: t } = await compareDatabases(source.url({ db }), target.url({ db }), {
        schemas: ['public'],
      });
      expect(t).toEqual(s);
      const verify = await runCli([
        'verify',
        '--source',
        source.url({ db }),
        '--target',
        target.url({ db }),
        '--checksums',
      ]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    }, 120_000);
  },
);
