// The capture functions are SECURITY DEFINER: they run with the installer's rights inside the
// application's statements. A writer whose search_path puts first a schema of its own, holding
// operators and functions named like pg_catalog's, must neither break capture nor get its code run
// with those rights (the search_path pinned on the functions is what stops it: dropping it, as a
// cheaper call would want, lets every unqualified operator be hijacked). Every hostile object here
// raises, so one lookup through the writer's search_path fails the write.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

let source: Cluster;
let target: Cluster;
let dir: string;
const OWNER_PW = 'owner-pw';
const WRITER_PW = 'writer-pw';

const HOSTILE = `
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
${['text', 'int', 'record']
  .map(
    (type) => `
CREATE FUNCTION evil.trap(a ${type}, b ${type}) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END $$;
CREATE OPERATOR evil.= (LEFTARG = ${type}, RIGHTARG = ${type}, FUNCTION = evil.trap);
CREATE OPERATOR evil.<> (LEFTARG = ${type}, RIGHTARG = ${type}, FUNCTION = evil.trap);`,
  )
  .join('')}
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked: ran as %', current_user; END $$;
`;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-hijack-'));
  await source.query(
    `CREATE ROLE app_owner LOGIN PASSWORD '${OWNER_PW}';
     CREATE ROLE intruder LOGIN PASSWORD '${WRITER_PW}';`,
  );
  await source.query('CREATE DATABASE app OWNER app_owner');
  await source.query('ALTER SCHEMA public OWNER TO app_owner', [], 'app');
  await source.query('GRANT CREATE ON DATABASE app TO intruder');
  await source.query(
    `SET ROLE app_owner;
     CREATE TABLE accounts (id int PRIMARY KEY, v text);
     CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
     INSERT INTO accounts SELECT g, 'v' || g FROM generate_series(1, 50) g;
     INSERT INTO pairs SELECT g, 'k' || g, g FROM generate_series(1, 20) g;
     GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, pairs TO intruder;`,
    [],
    'app',
  );
  await target.query('CREATE DATABASE app');
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('capture under a hostile search_path', () => {
  it("captures a writer's changes without running its operators as the definer", {
    timeout: 120_000,
  }, async () => {
    const args = [
      'migrate',
      '--exit-when-synced',
      '--source',
      source.url({ db: 'app', user: 'app_owner', password: OWNER_PW }),
      '--target',
      target.url({ db: 'app' }),
      '--state',
      path.join(dir, 'state.sqlite'),
    ];
    const first = await runCli(args);
    expect(first.code, first.stderr).toBe(0);

    const intruder = new pg.Client({
      connectionString: source.url({ db: 'app', user: 'intruder', password: WRITER_PW }),
    });
    await intruder.connect();
    try {
      await intruder.query(HOSTILE);
      // The intruder's own statements use pg_catalog's operators by name: its schema comes first.
      await intruder.query('SET search_path = evil, pg_catalog, public');
      const eq = 'OPERATOR(pg_catalog.=)';
      await intruder.query(`INSERT INTO accounts VALUES (1000, 'new')`);
      await intruder.query(`UPDATE accounts SET v = 'changed' WHERE id ${eq} 7`);
      await intruder.query(`UPDATE accounts SET id = 2000 WHERE id ${eq} 8`);
      await intruder.query(`DELETE FROM accounts WHERE id ${eq} 9`);
      await intruder.query(`UPDATE pairs SET b = 'moved' WHERE a ${eq} 3`);
      await intruder.query(`UPDATE pairs SET v = 0 WHERE a ${eq} 4`);
    } finally {
      await intruder.end();
    }
    const rows = await source.query(
      `SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'pgferry'::regnamespace
          AND proname LIKE 'capture_%' AND prosecdef AND proconfig IS NOT NULL`,
      [],
      'app',
    );
    expect(rows[0]?.n).toBe(4);

    const second = await runCli(args);
    expect(second.code, second.stderr).toBe(0);
    const cmp = await compareDatabases(source.url({ db: 'app' }), target.url({ db: 'app' }), {
      schemas: ['public'],
    });
    expect(Object.keys(cmp.source)).toHaveLength(2);
    expect(cmp.target).toEqual(cmp.source);
    const moved = await target.query(
      `SELECT (SELECT v FROM accounts WHERE id = 2000) AS renamed,
              (SELECT count(*)::int FROM accounts WHERE id IN (8, 9)) AS gone,
              (SELECT count(*)::int FROM pairs WHERE a = 3 AND b = 'moved') AS pair`,
      [],
      'app',
    );
    expect(moved[0]).toEqual({ renamed: 'v8', gone: 0, pair: 1 });
  });
});
