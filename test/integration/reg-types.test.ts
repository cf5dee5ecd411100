// Columns of the reg* types hold the OID of the object they name; the same object has another OID
// on the target. Copied and replayed, each value must name the same object there (compared by
// its text form), which binary COPY, carrying the number, would not do.
import { describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const pair = clusterPair({
  name: 'reg-types',
  sourceSql: `
    CREATE SCHEMA app;
    CREATE TABLE app.orders (id int PRIMARY KEY);
    CREATE FUNCTION app.total(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b';
    CREATE TYPE app.mood AS ENUM ('ok', 'sad');
    CREATE TEXT SEARCH CONFIGURATION app.cfg (COPY = english);
    CREATE OPERATOR app.%%% (LEFTARG = int, RIGHTARG = int, FUNCTION = app.total);
    CREATE COLLATION app.posix_copy FROM "POSIX";
    CREATE TABLE refs (
      id int PRIMARY KEY, rel regclass, typ regtype, fn regproc, fnsig regprocedure, op regoper,
      opsig regoperator, cfg regconfig, dict regdictionary, ns regnamespace, coll regcollation,
      owner regrole, rels regclass[], types regtype[]);
    INSERT INTO refs VALUES (1, 'app.orders', 'app.mood', 'app.total', 'app.total(int,int)', 'app.%%%',
      'app.%%%(int,int)', 'app.cfg', 'english_stem', 'app', 'app.posix_copy', 'postgres',
      ARRAY['app.orders'::regclass], ARRAY['app.mood'::regtype, 'int4'::regtype]);
    INSERT INTO refs SELECT g, 'refs', 'app.mood[]', fn, fnsig, op, opsig, cfg, dict, ns, coll, owner,
      ARRAY['refs'::regclass, 'app.orders'::regclass], types FROM refs, generate_series(2, 50) g;`,
});

describe('reg* columns', () => {
  it('name the same objects on the target after the copy and after replay', async () => {
    // Objects made and dropped on the target first, so that its OIDs are not the source's.
    await pair.target.query(
      `DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE TABLE burn_%s (a int); DROP TABLE burn_%s', i, i); END LOOP; END $$`,
      [],
      pair.db,
    );
    const port = await freePort();
    const daemon = startCli(pair.migrate('--http', `127.0.0.1:${port}`));
    try {
      await waitFor('replicating', async () => {
        const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { phase: string };
        return status.phase === 'replicating' ? true : undefined;
      }).catch((err: Error) => {
        throw new Error(`${err.message}\npgferry said:\n${daemon.output().stderr.slice(-3000)}`);
      });
      const copied = await pair.target.query<{ rel: string; fnsig: string; ns: string }>(
        'SELECT rel::text, fnsig::text, ns::text FROM refs WHERE id = 1',
        [],
        pair.db,
      );
      expect(copied[0]).toEqual({ rel: 'app.orders', fnsig: 'app.total(integer,integer)', ns: 'app' });
      await pair.source.query(
        `INSERT INTO refs SELECT id + 1000, rel, typ, fn, fnsig, op, opsig, cfg, dict, ns, coll, owner, rels, types FROM refs;
         UPDATE refs SET rel = 'app.orders', typ = 'refs' WHERE id % 2 = 0;`,
        [],
        pair.db,
      );
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.done;
    }
    const final = await runCli(pair.migrate('--exit-when-synced'));
    expect(final.code, final.stderr.slice(-3000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: pair.db }), pair.target.url({ db: pair.db }));
    expect(cmp.target).toEqual(cmp.source);
    const replayed = await pair.target.query<{ n: string }>(
      `SELECT count(*) AS n FROM refs WHERE id > 1000 AND rels[1]::text IN ('refs', 'app.orders') AND ns::text = 'app'`,
      [],
      pair.db,
    );
    expect(Number(replayed[0]!.n)).toBe(50);
  });
});
