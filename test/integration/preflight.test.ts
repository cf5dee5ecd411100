// Preflight names each problem with its object and its fix, and exits 0 / 1 / 2 as the contract says.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, freePort, SUPERUSER_PASSWORD, startCluster } from '../support/cluster.js';

let source: Cluster;
let target: Cluster;

interface Report {
  ok: boolean;
  problems: { code: string; object?: string; message: string; fix?: string }[];
  warnings: { code: string; object?: string }[];
  tables: { table: string; rowsEstimate: number; bytes: number; primaryKey: string[] | null }[];
  sequences: string[];
  materializedViews: string[];
  largeObjects: number;
  unloggedTables: string[];
  extensions: { name: string; status: string }[];
}

beforeAll(async () => {
  // PostgreSQL 14's contrib has old_snapshot, which 17 no longer ships: an extension the target lacks.
  [source, target] = await Promise.all([startCluster(14), startCluster(17)]);
  await source.query('CREATE DATABASE app');
  await source.query(
    `CREATE EXTENSION old_snapshot;
     CREATE EXTENSION hstore;
     CREATE TABLE customers (id serial PRIMARY KEY, name text);
     INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 1000) g;
     CREATE TABLE audit_log (at timestamptz, line text);
     CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text);
     CREATE MATERIALIZED VIEW customer_count AS SELECT count(*) FROM customers;
     SELECT lo_create(0);
     ANALYZE;`,
    [],
    'app',
  );
  await target.query('CREATE DATABASE empty');
  await target.query('CREATE DATABASE busy');
  await target.query('CREATE TABLE already_here (id int)', [], 'busy');
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

const preflight = (targetDb: string, extra: string[] = []) =>
  runCli([
    'preflight',
    '--source',
    source.url({ db: 'app' }),
    '--target',
    target.url({ db: targetDb }),
    '--json',
    ...extra,
  ]);

describe('preflight', () => {
  it('names a table without a primary key, a missing extension and a non-empty target', async () => {
    const res = await preflight('busy');
    expect(res.code).toBe(1);
    const report = JSON.parse(res.stdout) as Report;
    expect(report.ok).toBe(false);
    const byCode = (code: string) => report.problems.filter((p) => p.code === code);

    const noKey = byCode('no-primary-key');
    expect(noKey.map((p) => p.object)).toEqual(['public.audit_log']);
    expect(noKey[0]!.fix).toContain('ADD PRIMARY KEY');
    expect(noKey[0]!.fix).toContain("--exclude 'public.audit_log'");

    expect(byCode('extension-missing').map((p) => p.object)).toEqual(['old_snapshot']);
    expect(report.extensions.find((e) => e.name === 'hstore')?.status).toBe('ok');

    const notEmpty = byCode('target-not-empty');
    expect(notEmpty).toHaveLength(1);
    expect(notEmpty[0]!.message).toContain('public.already_here');

    // What the operator must know is listed too.
    expect(report.tables.map((t) => t.table).sort()).toEqual([
      'public.audit_log',
      'public.cache',
      'public.customers',
    ]);
    expect(report.tables.find((t) => t.table === 'public.customers')).toMatchObject({
      rowsEstimate: 1000,
      primaryKey: ['id'],
    });
    expect(report.sequences).toEqual(['public.customers_id_seq']);
    expect(report.materializedViews).toEqual(['public.customer_count']);
    expect(report.largeObjects).toBe(1);
    expect(report.unloggedTables).toEqual(['public.cache']);
    expect(res.stdout + res.stderr).not.toContain(SUPERUSER_PASSWORD);
  });

  it('is ready (exit 0) once the problems are excluded or fixed', async () => {
    await source.query('DROP EXTENSION old_snapshot', [], 'app');
    try {
      const res = await preflight('empty', ['--exclude', 'public.audit_log']);
      const report = JSON.parse(res.stdout) as Report;
      expect(report.problems).toEqual([]);
      expect(res.code).toBe(0);
      expect(report.warnings.map((w) => w.code)).toContain('large-objects');
    } finally {
      await source.query('CREATE EXTENSION old_snapshot', [], 'app');
    }
  });

  it('names a foreign key and views that need an excluded table; migrate refuses before it starts', async () => {
    await source.query('CREATE DATABASE deps');
    await source.query(
      `CREATE TABLE parent (id int PRIMARY KEY);
       CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
       CREATE TABLE other (id int PRIMARY KEY);
       CREATE VIEW parent_ids AS SELECT id FROM parent;
       CREATE MATERIALIZED VIEW parent_count AS SELECT count(*) FROM parent;`,
      [],
      'deps',
    );
    await target.query('CREATE DATABASE deps');
    const urls = ['--source', source.url({ db: 'deps' }), '--target', target.url({ db: 'deps' })];
    const res = await runCli(['preflight', ...urls, '--json', '--exclude', 'public.parent']);
    expect(res.code).toBe(1);
    const report = JSON.parse(res.stdout) as Report;
    const found = report.problems.map((p) => [p.code, p.object]);
    expect(found).toEqual([
      ['foreign-key-to-excluded', 'public.child (child_parent_id_fkey)'],
      ['view-on-excluded', 'public.parent_count'],
      ['view-on-excluded', 'public.parent_ids'],
    ]);
    expect(report.problems[0]!.fix).toContain(
      'ALTER TABLE public.child DROP CONSTRAINT child_parent_id_fkey',
    );

    const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-deps-')), 'state.sqlite');
    const migrate = await runCli([
      'migrate',
      ...urls,
      '--exclude',
      'public.parent',
      '--copy-only',
      '--state',
      state,
    ]);
    fs.rmSync(path.dirname(state), { recursive: true, force: true });
    expect(migrate.code).toBe(1);
    expect(migrate.stderr).toContain('PGFERRY_PREFLIGHT_PROBLEMS');
    expect(migrate.stderr).toContain(
      'foreign key public.child (child_parent_id_fkey) references public.parent',
    );
    expect(
      await target.query("SELECT relname FROM pg_class WHERE relname IN ('child', 'other')", [], 'deps'),
    ).toEqual([]);

    // Leaving out the referencing side (and the views' table kept) needs nothing excluded.
    const fine = await runCli(['preflight', ...urls, '--json', '--exclude', 'public.child']);
    expect((JSON.parse(fine.stdout) as Report).problems).toEqual([]);
  });

  it('prints a readable report with each fix', async () => {
    const res = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app' }),
      '--target',
      target.url({ db: 'busy' }),
    ]);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('table public.audit_log has no primary key');
    expect(res.stdout).toContain('fix: ');
    expect(res.stdout).toMatch(/Not ready: \d+ problem/);
  });

  it('names a table whose row-level security would hide rows from the source role', async () => {
    await source.query("CREATE ROLE rls_owner LOGIN PASSWORD 'rls-pw' NOSUPERUSER");
    await source.query('CREATE DATABASE rlsdb OWNER rls_owner');
    const owner = source.url({ db: 'rlsdb', user: 'rls_owner', password: 'rls-pw' });
    const pg = await import('pg');
    const c = new pg.default.Client({ connectionString: owner });
    await c.connect();
    await c.query(
      `CREATE TABLE tenants (id int PRIMARY KEY, tenant text);
       ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
       ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
       CREATE POLICY only_a ON tenants USING (tenant = 'a');
       CREATE TABLE open (id int PRIMARY KEY);`,
    );
    await c.end();
    const res = await runCli([
      'preflight',
      '--source',
      owner,
      '--target',
      target.url({ db: 'empty' }),
      '--json',
    ]);
    expect(res.code).toBe(1);
    const report = JSON.parse(res.stdout) as Report;
    const rls = report.problems.filter((p) => p.code === 'row-level-security');
    expect(rls.map((p) => p.object)).toEqual(['public.tenants']);
    expect(rls[0]!.fix).toContain('BYPASSRLS');
  });

  it('exits 2 with one line naming the server when it cannot connect', async () => {
    const port = await freePort();
    const res = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app' }),
      '--target',
      `postgresql://app:hunter2-secret@127.0.0.1:${port}/nowhere`,
    ]);
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PGFERRY_TARGET_CONNECT');
    expect(lines[0]).toContain(`app@127.0.0.1:${port}/nowhere`);
    expect(res.stderr).not.toContain('hunter2-secret');
    expect(res.stderr).not.toMatch(/\n\s+at /);
  });

  it('exits 2 on a wrong password, without echoing it', async () => {
    const res = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'app', password: 'wrong-pw-123' }),
      '--target',
      target.url({ db: 'empty' }),
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('PGFERRY_SOURCE_CONNECT');
    expect(res.stderr).toContain('password authentication failed');
    expect(res.stderr).not.toContain('wrong-pw-123');
  });
});
