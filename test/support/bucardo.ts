// Bucardo 5 for tests: its control database on a throwaway cluster of its own, installed with the
// real `bucardo` program (Debian's bucardo package), databases, tables and syncs added with it,
// and its daemon started and stopped. The control database needs PL/PerlU: Debian's
// postgresql-plperl-15 builds it for Debian's PostgreSQL 15 binaries, and it cannot load into the
// embedded binaries of cluster.ts (different libperl and server build), so the control cluster
// runs /usr/lib/postgresql/15/bin. Its pg_hba trusts every local connection: the bucardo role
// installation creates then needs no password. The databases Bucardo replicates stay on
// cluster.ts's clusters; Bucardo reaches them over TCP with their superuser's password.
// Bucardo's daemon runs as root without complaint; its pid and log files, and the .pgpass that
// `bucardo install` writes into $HOME, go to the test's own directory.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { type Cluster, freePort, SUPERUSER_PASSWORD } from './cluster.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Bucardo {
  /** The control cluster's port (its databases: postgres, bucardo, and any the test creates). */
  readonly port: number;
  /** A URL of a database of the control cluster, as its superuser. */
  url(db: string): string;
  /** Runs SQL as the superuser on a database of the control cluster. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, db?: string): Promise<T[]>;
  /** Runs the bucardo program against the control database; its output, or throws with it. */
  cli(...args: string[]): Promise<string>;
  /** `bucardo add db`: a database of a test cluster, or (no cluster) of the control cluster. */
  addDb(name: string, db: string, cluster?: Cluster): Promise<void>;
  /** Starts the daemon and waits until its master process runs. */
  start(): Promise<void>;
  /** Stops the daemon and waits until its processes are gone. */
  stop(): Promise<void>;
  /** The daemon's log so far. */
  log(): string;
  /** Stops the daemon and the control cluster, and removes their directory. */
  close(): Promise<void>;
}

/** Whether this machine has what installBucardo needs (`.ci/run` installs it). */
export function bucardoAvailable(): boolean {
  return (
    fs.existsSync('/usr/bin/bucardo') &&
    fs.existsSync(path.join(PG_BIN, 'postgres')) &&
    fs.existsSync('/usr/lib/postgresql/15/lib/plperl.so')
  );
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** The control cluster: Debian's PostgreSQL 15, as the `postgres` user when we are root. */
async function startControl(base: string): Promise<{ port: number; child: ChildProcess }> {
  const ids = postgresIds();
  const data = path.join(base, 'data');
  fs.mkdirSync(data, { mode: 0o700 });
  if (ids) {
    fs.chownSync(base, ids.uid, ids.gid);
    fs.chownSync(data, ids.uid, ids.gid);
  }
  const env = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };
  execFileSync(
    path.join(PG_BIN, 'initdb'),
    ['-D', data, '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', '--auth=trust', '--no-sync'],
    { ...ids, env, stdio: 'pipe' },
  );
  const port = await freePort();
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    `port = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${base}'\nfsync = off\n` +
      'synchronous_commit = off\nlog_min_messages = warning\n',
  );
  const logFd = fs.openSync(path.join(base, 'postgres.log'), 'a');
  if (ids) fs.fchownSync(logFd, ids.uid, ids.gid);
  const child = spawn(path.join(PG_BIN, 'postgres'), ['-D', data], {
    ...ids,
    env,
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  await waitFor(
    'the Bucardo control cluster',
    async () => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      c.on('error', () => {});
      await c.connect();
      await c.end();
      return true;
    },
    30_000,
    100,
  );
  return { port, child };
}

/** Bucardo installed in a control cluster of its own; close() it after the tests. */
export async function installBucardo(): Promise<Bucardo> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bucardo-'));
  fs.chmodSync(base, 0o755);
  const dirs = { home: path.join(base, 'home'), pids: path.join(base, 'run'), logs: path.join(base, 'log') };
  for (const d of Object.values(dirs)) fs.mkdirSync(d);
  let control: { port: number; child: ChildProcess } | undefined;
  const env = { ...process.env, HOME: dirs.home, PGBINDIR: PG_BIN, PGHOST: '127.0.0.1' };
  const query = async <T extends pg.QueryResultRow>(sql: string, db = 'postgres'): Promise<T[]> => {
    const c = new pg.Client({ host: '127.0.0.1', port: control!.port, user: 'postgres', database: db });
    await c.connect();
    try {
      const res = (await c.query<T>(sql)) as pg.QueryResult<T> | pg.QueryResult<T>[];
      return Array.isArray(res) ? (res.at(-1)?.rows ?? []) : res.rows;
    } finally {
      await c.end();
    }
  };
  const bucardo = async (args: string[]): Promise<string> => {
    try {
      const { stdout, stderr } = await run('bucardo', args, { env, cwd: base, timeout: 120_000 });
      return stdout + stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`bucardo ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
  const conn = () => ['--dbhost', '127.0.0.1', '--dbport', String(control!.port), '--piddir', dirs.pids];
  const asBucardo = () => [...conn(), '--dbuser', 'bucardo', '--dbname', 'bucardo'];
  const daemonPids = (): number[] =>
    fs.existsSync(dirs.pids)
      ? fs
          .readdirSync(dirs.pids)
          .filter((f) => f.endsWith('.pid'))
          .map((f) => Number.parseInt(fs.readFileSync(path.join(dirs.pids, f), 'utf8'), 10))
          .filter((p) => Number.isInteger(p) && p > 0)
      : [];
  // An exited daemon process whose parent is gone may stay a zombie here (the sandbox's pid 1
  // reaps nothing): gone all the same.
  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  // `bucardo stop` writes a stop file that each daemon process notices between two sleeps (the
  // master's can last 15 s): given a few seconds, the processes left are sent SIGTERM.
  const stop = async () => {
    if (!fs.existsSync(path.join(dirs.pids, 'bucardo.mcp.pid'))) return;
    const pids = daemonPids();
    await bucardo([...asBucardo(), 'stop']).catch(() => '');
    const gone = () => pids.every((p) => !alive(p));
    try {
      await waitFor('the Bucardo daemon to stop', gone, 3_000, 100).catch(async () => {
        // Only the daemon's own processes, by the ids it wrote.
        for (const p of pids.filter(alive)) process.kill(p, 'SIGTERM');
        await waitFor('the Bucardo daemon to end', gone, 10_000, 100);
      });
    } finally {
      for (const p of pids.filter(alive)) process.kill(p, 'SIGKILL');
    }
    fs.rmSync(path.join(dirs.pids, 'fullstopbucardo'), { force: true });
  };
  try {
    control = await startControl(base);
    await bucardo([
      'install',
      '--batch',
      '--quiet',
      ...conn(),
      '--dbuser',
      'postgres',
      '--dbname',
      'postgres',
    ]);
  } catch (err) {
    control?.child.kill('SIGKILL');
    fs.rmSync(base, { recursive: true, force: true });
    throw err;
  }
  const port = control.port;
  return {
    port,
    url: (db) => `postgresql://postgres@127.0.0.1:${port}/${db}`,
    query,
    cli: (...args) => bucardo([...asBucardo(), ...args]),
    async addDb(name, db, cluster) {
      const where = cluster
        ? [`host=127.0.0.1`, `port=${cluster.port}`, 'user=postgres', `pass=${SUPERUSER_PASSWORD}`]
        : [`host=127.0.0.1`, `port=${port}`, 'user=postgres'];
      await bucardo([...asBucardo(), 'add', 'db', name, `dbname=${db}`, ...where]);
    },
    async start() {
      // The daemon keeps the stdout and stderr it was started with: a file, not a pipe that
      // execFile would wait on for ever.
      const out = fs.openSync(path.join(dirs.logs, 'start.out'), 'a');
      const args = [...asBucardo(), 'start', '--log-destination', dirs.logs];
      const child = spawn('bucardo', args, { env, cwd: base, stdio: ['ignore', out, out] });
      fs.closeSync(out);
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0)
        throw new Error(
          `bucardo start failed (${code}): ${fs.readFileSync(path.join(dirs.logs, 'start.out'), 'utf8')}`,
        );
      await waitFor(
        'the Bucardo daemon',
        () => fs.existsSync(path.join(dirs.pids, 'bucardo.mcp.pid')),
        30_000,
        100,
      );
    },
    stop,
    log: () => {
      const file = path.join(dirs.logs, 'log.bucardo');
      return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    },
    async close() {
      await stop().catch(() => {});
      if (control && control.child.exitCode === null) {
        const done = new Promise<void>((resolve) => control!.child.once('exit', () => resolve()));
        control.child.kill('SIGINT');
        const timer = setTimeout(() => control!.child.kill('SIGKILL'), 15_000);
        await done;
        clearTimeout(timer);
      }
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Tables Bucardo can replicate: a name it shortens, one with a space and a non-ASCII letter. */
export const LONG = 'shipments_awaiting_customs_clearance_at_the_border_crossing';
export const PAIRS = 'Pair Table ü';
export const TABLES = ['public.accounts', 'public.kv', `public.${PAIRS}`, `public.${LONG}`];
export const SCHEMA = `
CREATE SEQUENCE account_ids START 100000;
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, balance numeric(14,2) NOT NULL, note text);
CREATE TABLE kv (k text PRIMARY KEY, v text, payload jsonb);
CREATE TABLE "${PAIRS}" ("Key A" int, "key b" uuid, val bytea, PRIMARY KEY ("Key A", "key b"));
CREATE TABLE ${LONG} (id int PRIMARY KEY, n int NOT NULL, note text);`;
export const SEED = `
INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g, CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE 'n' END
  FROM generate_series(1, 3000) g;
INSERT INTO kv SELECT 'k' || g, 'v' || g, jsonb_build_object('g', g) FROM generate_series(1, 500) g;
INSERT INTO "${PAIRS}" SELECT g % 40, md5(g::text)::uuid, decode(md5(g::text), 'hex') FROM generate_series(1, 800) g;
INSERT INTO ${LONG} SELECT g, g, NULL FROM generate_series(1, 1000) g;`;

const rnd = (n: number) => 1 + Math.floor(Math.random() * n);
const OPERATIONS: ((c: pg.Client) => Promise<unknown>)[] = [
  (c) =>
    c.query(`INSERT INTO accounts VALUES (nextval('account_ids'), 'n' || gen_random_uuid(), 1, $1)`, ['hi']),
  (c) => c.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [rnd(3000)]),
  (c) => c.query('DELETE FROM accounts WHERE id = $1', [rnd(3000)]),
  (c) => c.query('UPDATE accounts SET id = id + 1000000 WHERE id = $1', [rnd(3000)]),
  (c) => c.query('UPDATE accounts SET balance = balance * 1.01 WHERE id % 97 = $1', [rnd(96)]),
  async (c) => {
    // Two rows swap a value under a UNIQUE constraint.
    const [a, b] = [rnd(3000), rnd(3000)];
    await c.query('BEGIN');
    const { rows } = await c.query(
      'SELECT id, email FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE',
      [a, b],
    );
    if (rows.length === 2) {
      await c.query(`UPDATE accounts SET email = 'swap' || id WHERE id = $1`, [rows[0].id]);
      await c.query('UPDATE accounts SET email = $1 WHERE id = $2', [rows[0].email, rows[1].id]);
      await c.query('UPDATE accounts SET email = $1 WHERE id = $2', [rows[1].email, rows[0].id]);
    }
    await c.query('COMMIT');
  },
  (c) =>
    c.query(
      `BEGIN; DELETE FROM kv WHERE k = 'k${rnd(500)}'; INSERT INTO kv VALUES ('k${rnd(500)}', 'reborn', NULL) ON CONFLICT DO NOTHING; COMMIT`,
    ),
  (c) => c.query(`UPDATE "${PAIRS}" SET val = NULL WHERE "Key A" = $1`, [rnd(39)]),
  (c) => c.query(`INSERT INTO "${PAIRS}" VALUES ($1, gen_random_uuid(), '\\x00')`, [rnd(39)]),
  (c) => c.query(`UPDATE ${LONG} SET n = n + 1, note = 'x' WHERE id BETWEEN $1 AND $1 + 20`, [rnd(980)]),
  (c) => c.query(`BEGIN; UPDATE accounts SET note = 'rolled back' WHERE id = ${rnd(3000)}; ROLLBACK`),
];

/**
 * Writers on those tables until stop(): inserts, updates, deletes, key changes, a UNIQUE swap,
 * delete and reinsert in one transaction, rolled-back transactions; one writer truncates and
 * refills kv now and then.
 */
export function startWorkload(url: string, loops = 3) {
  let running = true;
  const errors: string[] = [];
  let operations = 0;
  const loop = async (i: number) => {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => {});
    await c.connect();
    for (let n = 0; running; n++) {
      try {
        if (i === 0 && n % 200 === 199)
          await c.query(
            `BEGIN; TRUNCATE kv; INSERT INTO kv SELECT 'k' || g, 'refill', NULL FROM generate_series(1, 300) g; COMMIT`,
          );
        else await OPERATIONS[Math.floor(Math.random() * OPERATIONS.length)]!(c);
        operations++;
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        errors.push(`${code} ${(err as Error).message}`);
        // A writer whose session is gone stops (a failed test must not leave it spinning).
        if (!code) break;
        await c.query('ROLLBACK').catch(() => {});
        if (['23505', '40P01', '40001'].includes(code)) errors.pop();
      }
    }
    await c.end().catch(() => {});
  };
  const done = Promise.all(Array.from({ length: loops }, (_, i) => loop(i)));
  return {
    stop: async () => {
      running = false;
      await done;
      return { operations, errors };
    },
  };
}

/**
 * The tables above in database `db` of `source`, in a Bucardo sync s1 to database mirror of the
 * control cluster, Bucardo's daemon started, then seeded (so that the sync delivers the seed too).
 */
export async function syncShop(b: Bucardo, source: Cluster, db: string): Promise<void> {
  await b.query('CREATE DATABASE mirror');
  await Promise.all([source.query(SCHEMA, [], db), b.query(SCHEMA, 'mirror')]);
  await b.addDb('src', db, source);
  await b.addDb('mirror', 'mirror');
  await b.cli('add', 'table', ...TABLES, 'db=src', 'relgroup=rg');
  await b.cli('add', 'sync', 's1', 'relgroup=rg', 'dbs=src:source,mirror:target');
  await b.start();
  await source.query(SEED, [], db);
}
