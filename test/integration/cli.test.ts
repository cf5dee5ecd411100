// The command-line contract: help, version, usage errors (exit 2, one line), configuration from
// the environment, status of a run, cleanup, and modes that are not built yet saying so.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../support/cluster.js';

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at /);

describe('usage', () => {
  it('--help lists every command and exits 0', async () => {
    const res = await runCli(['--help']);
    expect(res.code).toBe(0);
    for (const cmd of [
      'preflight',
      'migrate',
      'status',
      'cleanup',
      'verify',
      'dump-restore',
      'walg',
      'demo',
    ]) {
      expect(res.stdout).toContain(cmd);
    }
  });

  it('each command has --help with its flags', async () => {
    const res = await runCli(['migrate', '--help']);
    expect(res.code).toBe(0);
    for (const flag of [
      '--source',
      '--target',
      '--state',
      '--jobs',
      '--include',
      '--exclude',
      '--copy-only',
      '--max-snapshot-age',
      '--json',
    ]) {
      expect(res.stdout).toContain(flag);
    }
    const cutover = await runCli(['cutover', '--help']);
    expect(cutover.code).toBe(0);
    for (const flag of ['--state', '--freeze', '--abort', '--json']) expect(cutover.stdout).toContain(flag);
  });

  it('--version prints the version', async () => {
    const res = await runCli(['--version']);
    expect(res.code).toBe(0);
    expect(res.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('an unknown option is a usage error: exit 2', async () => {
    const res = await runCli(['migrate', '--no-such-flag']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--no-such-flag');
  });

  it('a missing source URL says which flag or variable to set', async () => {
    const res = await runCli(['migrate', '--copy-only', '--target', 'postgresql://x@127.0.0.1/x'], {
      PGFERRY_SOURCE_URL: '',
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('PGFERRY_CONFIG_MISSING');
    expect(res.stderr).toContain('PGFERRY_SOURCE_URL');
    noStack(res.stderr);
  });

  it('bad values are named', async () => {
    const url = 'postgresql://a:pw-not-shown@127.0.0.1/db';
    for (const [flag, value] of [
      ['--jobs', 'zero'],
      ['--chunk-size', 'big'],
      ['--max-snapshot-age', 'soon'],
    ] as const) {
      const res = await runCli(['migrate', '--copy-only', '--source', url, '--target', url, flag, value]);
      expect(res.code, flag).toBe(2);
      expect(res.stderr).toContain(flag);
      expect(res.stderr).not.toContain('pw-not-shown');
    }
    const notUrl = await runCli(['preflight', '--source', 'host=db password=zzz', '--target', url]);
    expect(notUrl.code).toBe(2);
    expect(notUrl.stderr).toContain('--source is not a PostgreSQL URL');
    expect(notUrl.stderr).not.toContain('zzz');
  });

  it('status of a missing state file is an error naming the file', async () => {
    const res = await runCli(['status', '--state', '/nonexistent/pgferry.sqlite']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('PGFERRY_STATE_NOT_FOUND');
    expect(res.stderr).toContain('/nonexistent/pgferry.sqlite');
  });
});

describe('a run driven by environment variables', () => {
  let source: Cluster;
  let target: Cluster;
  let dir: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-cli-'));
    await source.query('CREATE DATABASE app');
    await target.query('CREATE DATABASE app');
    await source.query(
      `CREATE TABLE items (id int PRIMARY KEY, name text);
       INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;`,
      [],
      'app',
    );
  });

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('migrates with PGFERRY_SOURCE_URL / PGFERRY_TARGET_URL, then status shows it done', async () => {
    const state = path.join(dir, 'env.sqlite');
    const env = {
      PGFERRY_SOURCE_URL: source.url({ db: 'app' }),
      PGFERRY_TARGET_URL: target.url({ db: 'app' }),
    };
    const res = await runCli(['migrate', '--copy-only', '--state', state], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/done: 1 tables, 5,000 rows/);
    // Log lines are JSON when not on a terminal, and never carry a password.
    // Each carries its level by name and an ISO 8601 UTC time, as log pipelines expect.
    const lines = res.stderr.trim().split('\n');
    for (const line of lines) {
      const rec = JSON.parse(line) as { level: unknown; time: unknown };
      expect(rec.level).toMatch(/^(debug|info|warn)$/);
      expect(rec.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    }
    expect(res.stderr).not.toContain(SUPERUSER_PASSWORD);

    const status = await runCli(['status', '--state', state, '--json']);
    expect(status.code).toBe(0);
    const json = JSON.parse(status.stdout);
    expect(json.phase).toBe('done');
    expect(json.tables).toEqual([
      expect.objectContaining({ table: 'public.items', rowsCopied: 5000, chunksDone: 1, chunksTotal: 1 }),
    ]);
    expect(status.stdout).not.toContain(SUPERUSER_PASSWORD);

    const human = await runCli(['status', '--state', state]);
    expect(human.stdout).toContain('phase   done');
    expect(human.stdout).toContain('public.items');

    // The state file holds no password either.
    expect(fs.readFileSync(state).includes(Buffer.from(SUPERUSER_PASSWORD))).toBe(false);
  });

  it('cleanup removes the pgferry schema and its triggers, and a second run finds nothing', async () => {
    await source.query(
      `CREATE SCHEMA pgferry;
       CREATE TABLE pgferry.log_abc123_16400 (id int);
       CREATE FUNCTION pgferry.capture_row_abc123_16400() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
       CREATE TRIGGER pgferry_capture_abc123 AFTER INSERT ON public.items FOR EACH ROW EXECUTE FUNCTION pgferry.capture_row_abc123_16400();`,
      [],
      'app',
    );
    const first = await runCli(['cleanup', '--source', source.url({ db: 'app' })]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('trigger pgferry_capture_abc123 on items');
    expect(first.stdout).toContain('table pgferry.log_abc123_16400');
    expect(first.stdout).toContain('schema pgferry');
    const left = await source.query<{ n: string }>(
      "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry') + (SELECT count(*) FROM pg_trigger WHERE tgname = 'pgferry_capture_abc123') AS n",
      [],
      'app',
    );
    expect(Number(left[0]!.n)).toBe(0);
    const second = await runCli(['cleanup', '--source', source.url({ db: 'app' })]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('nothing to remove');
  });

  it("cleanup never drops what is not pgferry's in a schema named pgferry, and migrate refuses such a source", async () => {
    await Promise.all([source.query('CREATE DATABASE taken'), target.query('CREATE DATABASE taken')]);
    await source.query(
      `CREATE TABLE items (id int PRIMARY KEY);
       CREATE SCHEMA pgferry;
       CREATE TABLE pgferry.orders (id int PRIMARY KEY);
       INSERT INTO pgferry.orders VALUES (1), (2);
       CREATE FUNCTION pgferry.audit() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
       CREATE TRIGGER audit AFTER INSERT ON public.items FOR EACH ROW EXECUTE FUNCTION pgferry.audit();
       CREATE TABLE pgferry.log_abc123_16400 (id int);`,
      [],
      'taken',
    );
    const cleaned = await runCli(['cleanup', '--source', source.url({ db: 'taken' })]);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    const [removed, keptLine] = cleaned.stdout.split(/\n(?=kept )/);
    expect(removed).toContain('table pgferry.log_abc123_16400');
    expect(removed).not.toContain('orders');
    expect(removed).not.toContain('audit');
    expect(keptLine).toMatch(
      /^kept schema pgferry on .*: it also holds .*\(pgferry\.audit\(\), pgferry\.orders\)/,
    );
    const json = await runCli(['cleanup', '--source', source.url({ db: 'taken' }), '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      removed: [],
      kept: ['pgferry.audit()', 'pgferry.orders'],
    });
    const kept = await source.query<{ n: number; t: number }>(
      "SELECT (SELECT count(*)::int FROM pgferry.orders) AS n, (SELECT count(*)::int FROM pg_trigger WHERE tgname = 'audit') AS t",
      [],
      'taken',
    );
    expect(kept).toEqual([{ n: 2, t: 1 }]);
    const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-taken-')), 'state.sqlite');
    for (const mode of ['--copy-only', '--exit-when-synced']) {
      const refused = await runCli([
        'migrate',
        '--source',
        source.url({ db: 'taken' }),
        '--target',
        target.url({ db: 'taken' }),
        '--state',
        state,
        mode,
      ]);
      expect(refused.code, refused.stderr.slice(-1000)).toBe(1);
      expect(refused.stderr).toContain('PGFERRY_PREFLIGHT_PROBLEMS');
      expect(refused.stderr).toMatch(
        /schema "pgferry" is not pgferry's: it holds pgferry\.audit\(\), pgferry\.orders/,
      );
    }
    const preflight = await runCli([
      'preflight',
      '--source',
      source.url({ db: 'taken' }),
      '--target',
      target.url({ db: 'taken' }),
    ]);
    expect(preflight.code, preflight.stderr.slice(-1000)).toBe(1);
    expect(preflight.stdout).toMatch(/schema "pgferry" is not pgferry's/);
    expect(
      await source.query("SELECT relname FROM pg_class WHERE relname IN ('runs', 'captured')", [], 'taken'),
    ).toEqual([]);
  });
});
