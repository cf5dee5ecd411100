// Databases whose own settings are hostile to a long-running tool, as production ones often are:
// a statement_timeout of 40 ms, a lock_timeout of 10 ms, an idle_in_transaction_session_timeout of
// 100 ms (which ended the session holding the copy's exported snapshot: node-postgres sends no
// timeout whose value is 0), an empty search_path, serializable transactions by default and
// standard_conforming_strings off, on both sides. A migration and a cutover under them end equal,
// the sequences (identity, descending, never used, cycled, shared, oddly named) where they were.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const SETTINGS = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'];
const HOSTILE = (db: string) => `
  ALTER DATABASE ${db} SET statement_timeout = '40ms'; ALTER DATABASE ${db} SET lock_timeout = '10ms';
  ALTER DATABASE ${db} SET idle_in_transaction_session_timeout = '100ms'; ALTER DATABASE ${db} SET search_path = '';
  ALTER DATABASE ${db} SET default_transaction_isolation = serializable;
  ALTER DATABASE ${db} SET standard_conforming_strings = off;`;

const SCHEMA = `
  CREATE SCHEMA other;
  CREATE TABLE public.ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text DEFAULT $$C:\\dir$$);
  INSERT INTO public.ident (v) SELECT 'x' FROM generate_series(1, 50);
  CREATE SEQUENCE other.down INCREMENT -1 MINVALUE -1000 MAXVALUE 0 START 0;
  SELECT nextval('other.down') FROM generate_series(1, 7);
  CREATE SEQUENCE public.fresh;
  CREATE SEQUENCE public.cyc MAXVALUE 5 CYCLE; SELECT nextval('public.cyc') FROM generate_series(1, 7);
  CREATE SEQUENCE public.shared;
  CREATE TABLE public.a (id bigint PRIMARY KEY DEFAULT nextval('public.shared'), v text);
  CREATE TABLE public.b (id bigint PRIMARY KEY DEFAULT nextval('public.shared'), v text);
  INSERT INTO public.a (v) SELECT 'a' FROM generate_series(1, 10); INSERT INTO public.b (v) SELECT 'b' FROM generate_series(1, 10);
  CREATE SEQUENCE public."Odd ""Seq""" START 100; SELECT nextval('public."Odd ""Seq"""');
  CREATE TABLE public.big (id int PRIMARY KEY, pad text CHECK (pad <> $$a\\b$$));
  INSERT INTO public.big SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g;
  CREATE INDEX big_pad ON public.big (pad) WHERE pad <> $$x\\y$$;
  CREATE MATERIALIZED VIEW public.mv AS SELECT count(*) AS n FROM public.big;`;

const SEQUENCES = `SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE schemaname <> 'pgferry' ORDER BY 1, 2`;

describe('hostile database settings on both sides', () => {
  const pair = clusterPair({ name: 'db-settings' });

  it('migrate and cutover end equal, sequences too', async () => {
    const { db } = pair;
    // The schema is made before the settings: the test's own sessions are not pgferry's.
    await pair.source.query(SCHEMA, [], db);
    await Promise.all([pair.source.query(HOSTILE(db)), pair.target.query(HOSTILE(db))]);
    const first = await runCli(pair.migrate('--exit-when-synced'));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `SET statement_timeout = 0; INSERT INTO public.ident (v) VALUES ('y'); SELECT nextval('other.down');
       INSERT INTO public.a (v) VALUES ('n'); UPDATE public.big SET pad = $$y\\z$$ WHERE id < 20000`,
      [],
      db,
    );
    const cut = await runCli(['cutover', ...pair.migrate().slice(1), '--verify', 'checksums']);
    expect(cut.code, cut.stderr.slice(-2000)).toBe(0);

    for (const c of [pair.source, pair.target])
      for (const s of SETTINGS) await c.query(`ALTER DATABASE ${db} RESET ${s}`);
    const { source, target } = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(target).toEqual(source);
    const [s, t] = await Promise.all([
      pair.source.query(SEQUENCES, [], db),
      pair.target.query(SEQUENCES, [], db),
    ]);
    expect(t).toEqual(s);
    const [mv] = await pair.target.query('SELECT n FROM public.mv', [], db);
    expect(Number(mv?.n)).toBe(300000);
  }, 180_000);
});

describe('a source whose connection slots are nearly all taken', () => {
  const pair = clusterPair({
    name: 'db-slots',
    sourceSql: 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);',
  });

  it('is warned about with the figures, and the run still ends', async () => {
    // 80 of the cluster's 100 slots held by "the application".
    const held = await Promise.all(
      Array.from({ length: 80 }, async () => {
        const c = new pg.Client({ connectionString: pair.source.url({ db: pair.db }) });
        await c.connect();
        return c;
      }),
    );
    try {
      const run = await runCli(pair.migrate('--exit-when-synced', '--jobs', '8'), {
        PGFERRY_LOG_LEVEL: 'warn',
      });
      expect(run.code, run.stderr.slice(-2000)).toBe(0);
      expect(run.stderr).toMatch(
        /the source allows 100 connections \(3 reserved for superusers\), 8\d in use: this run opens up to 12 more/,
      );
      expect(run.stderr).toContain('lower --jobs (now 8)');
      expect(run.stderr).not.toContain('the target allows');
    } finally {
      await Promise.all(held.map((c) => c.end()));
    }
  }, 120_000);
});

describe('a role that sets default_transaction_read_only off for itself', () => {
  const pair = clusterPair({
    name: 'db-role-rw',
    sourceSql:
      'CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 100) g;',
  });

  it('makes --freeze readonly refuse before freezing, naming the role; revoke goes on', async () => {
    await pair.source.query(
      `CREATE ROLE app LOGIN PASSWORD 'app-pw'; GRANT SELECT, INSERT, UPDATE, DELETE ON t TO app;
       ALTER ROLE app IN DATABASE ${pair.db} SET default_transaction_read_only = off;`,
      [],
      pair.db,
    );
    const first = await runCli(pair.migrate('--exit-when-synced'));
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    const base = pair.migrate().slice(1);
    const refused = await runCli(['cutover', ...base, '--freeze', 'readonly']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PGFERRY_CUTOVER_FAILED');
    expect(refused.stderr).toContain('role(s) app set default_transaction_read_only off');
    // Nothing frozen: the application's role writes.
    const app = new pg.Client({
      connectionString: pair.source.url({ db: pair.db, user: 'app', password: 'app-pw' }),
    });
    await app.connect();
    await app.query(`UPDATE t SET v = 'app' WHERE id = 1`);
    await app.end();
    const cut = await runCli(['cutover', ...base, '--freeze', 'revoke']);
    expect(cut.code, cut.stderr.slice(-2000)).toBe(0);
  }, 120_000);
});
