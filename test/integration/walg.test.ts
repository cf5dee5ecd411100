// `pgferry walg` on real servers, through the CLI, with a stand-in for WAL-G
// (test/support/wal-g-standin.mjs: backup-fetch and wal-fetch with WAL-G's arguments and exit
// codes) over an archive a real primary fills: pg_basebackup into basebackups_005/, and its
// archive_command pushing every segment into wal_005/. Restore, the standby catching up with
// writes made after the backup, status, promote, and the promoted copy equal to the primary row
// for row; a missing backup and a failing wal-fetch give clear errors.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverBinDir } from '../../src/embedded/binaries.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, SUPERUSER_PASSWORD, startCluster } from '../support/cluster.js';
import { tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const STANDIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/wal-g-standin.mjs');

let primary: Cluster;
let dir: string;
let archive: string;
const standbys: string[] = [];

const env = () => ({ WALG_FILE_PREFIX: archive, PGFERRY_PG_BIN: serverBinDir(15) });

/** pg_basebackup of the installed client tools (the newest, as pgferry picks pg_dump). */
function pgBasebackup(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)) : [];
  const found = versions
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, 'bin', 'pg_basebackup'))
    .find((f) => fs.existsSync(f));
  return found ?? 'pg_basebackup';
}

function postgresIds() {
  if (process.getuid?.() !== 0) return {};
  const id = (f: string) => Number(execFileSync('id', [f, 'postgres']).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

beforeAll(async () => {
  primary = await startCluster(15);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-walg-'));
  fs.chmodSync(dir, 0o755);
  archive = path.join(dir, 'archive');
  fs.mkdirSync(path.join(archive, 'wal_005'), { recursive: true });
  fs.chmodSync(archive, 0o777);
  fs.chmodSync(path.join(archive, 'wal_005'), 0o777);
  await primary.query('ALTER SYSTEM SET archive_mode = on');
  await primary.query(
    `ALTER SYSTEM SET archive_command = 'WALG_FILE_PREFIX=${archive} ${STANDIN} wal-push %p'`,
  );
  await primary.restart();
  await primary.query('CREATE DATABASE app');
  await primary.query(
    `CREATE TABLE items (id int PRIMARY KEY, v text);
     INSERT INTO items SELECT g, 'before ' || g FROM generate_series(1, 5000) g;`,
    [],
    'app',
  );
  // The base backup, as WAL-G would keep it (its WAL comes from the archive).
  const url = new URL(primary.url());
  execFileSync(
    pgBasebackup(),
    [
      '-D',
      path.join(archive, 'basebackups_005', 'base_000000010000000000000003'),
      '-Fp',
      '-X',
      'none',
      '-c',
      'fast',
      '-h',
      '127.0.0.1',
      '-p',
      url.port,
      '-U',
      'postgres',
    ],
    { env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD }, stdio: 'pipe' },
  );
  // Written after the backup: the standby gets it from the archive.
  await primary.query(
    `INSERT INTO items SELECT g, 'after ' || g FROM generate_series(5001, 6000) g`,
    [],
    'app',
  );
  await primary.query('SELECT pg_switch_wal()');
}, 180_000);

afterAll(async () => {
  for (const pgdata of standbys) {
    try {
      execFileSync(path.join(serverBinDir(15), 'pg_ctl'), ['-D', pgdata, 'stop', '-m', 'immediate'], {
        ...postgresIds(),
        stdio: 'pipe',
      });
    } catch {
      // not running
    }
  }
  await primary?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const status = async (pgdata: string) => {
  const res = await runCli(['walg', 'status', '--pgdata', pgdata, '--json']);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout);
};

describe('pgferry walg', () => {
  it('restores, follows the archive, reports lag, promotes, and ends equal to the primary', async () => {
    const pgdata = path.join(dir, 'standby');
    standbys.push(pgdata);
    const port = await freePort();
    const restored = await runCli(
      ['walg', 'restore', '--pgdata', pgdata, '--port', String(port), '--walg', STANDIN, '--json'],
      env(),
    );
    expect(restored.code, restored.stderr.slice(-3000)).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ ok: true, backup: 'LATEST', port });
    // The storage settings are kept owner-only, and never printed.
    expect(fs.statSync(path.join(pgdata, 'pgferry-walg.env')).mode & 0o077).toBe(0);
    expect(restored.stderr).not.toContain(archive);
    const kept = fs.readFileSync(path.join(pgdata, 'pgferry-walg.env'), 'utf8');
    expect(kept).toContain(`WALG_FILE_PREFIX='${archive}'`);
    expect(kept).not.toMatch(/PGFERRY_|PGPASSWORD/);
    const copy = `postgresql://postgres:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/app`;
    const count = async (url: string) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return Number((await c.query('SELECT count(*) AS n FROM items')).rows[0].n);
      } finally {
        await c.end();
      }
    };
    await waitFor(
      'standby has the writes made after the backup',
      async () => (await count(copy).catch(() => 0)) === 6000,
      60_000,
      500,
    );

    // Written on the primary now: the standby catches up through the archive.
    await primary.query(`UPDATE items SET v = v || '!' WHERE id % 7 = 0`, [], 'app');
    await primary.query(`INSERT INTO items SELECT g, 'later' FROM generate_series(6001, 6500) g`, [], 'app');
    await primary.query('SELECT pg_switch_wal()');
    await waitFor('caught up', async () => (await count(copy).catch(() => 0)) === 6500, 60_000, 500);
    const s = await waitFor(
      'keeping up',
      async () => {
        const st = await status(pgdata);
        return st.keepingUp && st.inRecovery && st.lastReplayAt && st;
      },
      60_000,
      500,
    );
    expect(s.fetch.fetched).toBeGreaterThan(0);
    expect(s.replayLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(typeof s.lagSeconds).toBe('number');
    const text = await runCli(['walg', 'status', '--pgdata', pgdata, '--source', primary.url()]);
    expect(text.stdout).toMatch(/keeping up: yes/);
    expect(text.stdout).toMatch(/bytes behind the primary/);

    // The storage stops serving (credentials expired): status says so, and promote refuses.
    const envFile = path.join(pgdata, 'pgferry-walg.env');
    const saved = fs.readFileSync(envFile, 'utf8');
    fs.appendFileSync(envFile, "WALG_STANDIN_FAIL='wal-fetch'\n");
    await waitFor('fetch failing', async () => !(await status(pgdata)).keepingUp, 60_000, 500);
    const refused = await runCli(['walg', 'promote', '--pgdata', pgdata]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not reached the end of the archive \(wal-fetch failed with exit 1/);
    fs.writeFileSync(envFile, saved);
    await waitFor('keeping up again', async () => (await status(pgdata)).keepingUp, 60_000, 500);

    // The same as metrics, for Prometheus, while the command serves them.
    const httpPort = await freePort();
    const served = startCli(['walg', 'status', '--pgdata', pgdata, '--http', `127.0.0.1:${httpPort}`]);
    const metrics = await waitFor(
      'walg metrics',
      async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`).catch(() => null))?.text(),
      20_000,
      200,
    );
    expect(metrics).toMatch(/pgferry_walg_keeping_up 1/);
    expect(metrics).toMatch(/pgferry_walg_in_recovery 1/);
    expect(metrics).toMatch(/pgferry_walg_segments_fetched [1-9]/);
    expect(await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()).toMatchObject({
      running: true,
      inRecovery: true,
    });
    served.child.kill('SIGTERM');
    expect((await served.done).code).toBe(0);

    const promoted = await runCli(['walg', 'promote', '--pgdata', pgdata, '--json']);
    expect(promoted.code, promoted.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(promoted.stdout).endLsn).toMatch(/\//);
    const [a, b] = await Promise.all([
      tableHashes(primary.url({ db: 'app' }), { schemas: ['public'] }),
      tableHashes(copy, { schemas: ['public'] }),
    ]);
    expect([...b.entries()]).toEqual([...a.entries()]);
    // It takes writes, and a second promote is refused.
    await new pg.Client({ connectionString: copy }).connect().then(async (c) => {
      await c.query(`INSERT INTO items VALUES (999999, 'on the copy')`);
      await c.end();
    });
    const again = await runCli(['walg', 'promote', '--pgdata', pgdata]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already promoted/);
  }, 240_000);

  it('names a missing backup, and a failing wal-fetch keeps promote from losing data', async () => {
    const missing = await runCli(
      [
        'walg',
        'restore',
        '--pgdata',
        path.join(dir, 'none'),
        '--port',
        String(await freePort()),
        '--walg',
        STANDIN,
        '--backup',
        'base_nosuch',
      ],
      env(),
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /PGFERRY_WALG_FAILED.*backup-fetch base_nosuch failed \(exit 1\).*Backup 'base_nosuch' does not exist/,
    );

    const pgdata = path.join(dir, 'broken');
    standbys.push(pgdata);
    const broken = await runCli(
      [
        'walg',
        'restore',
        '--pgdata',
        pgdata,
        '--port',
        String(await freePort()),
        '--walg',
        STANDIN,
        '--env-file',
        writeEnvFile(),
      ],
      { PGFERRY_PG_BIN: serverBinDir(15), WALG_FILE_PREFIX: archive },
    );
    // The storage cannot serve WAL: the copy cannot become consistent, and restore says why.
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/PGFERRY_WALG_FAILED.*wal-g wal-fetch fails \(exit 1 for \S+, \d+ times\)/);
  }, 240_000);
});

function writeEnvFile(): string {
  const file = path.join(dir, 'walg.env');
  fs.writeFileSync(
    file,
    `# WAL-G settings\nexport WALG_FILE_PREFIX='${archive}'\nWALG_STANDIN_FAIL=wal-fetch\n`,
  );
  return file;
}
