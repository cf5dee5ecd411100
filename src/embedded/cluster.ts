// Throwaway PostgreSQL clusters for tests and the demo: initdb in a temp dir, a free port,
// wal_level=logical, started as the `postgres` user when we run as root, always torn down
// (by stop(), or at the latest when this process exits) unless released with keepRunning().
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type ServerVersion, serverBinDir } from './binaries.js';

export interface Cluster {
  readonly version: ServerVersion;
  readonly port: number;
  readonly dataDir: string;
  /** The postmaster's process id. */
  readonly pid: number;
  /** Connection URL; defaults to the superuser `postgres` on database `postgres` (with
   *  sslmode=require on a TLS-only cluster; `no-verify` is node-postgres's word for that). */
  url(opts?: { db?: string; user?: string; password?: string; sslmode?: string }): string;
  /** Runs SQL as the superuser on `db` (default `postgres`) and returns the rows. */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
    db?: string,
  ): Promise<T[]>;
  stop(): Promise<void>;
  /** Stops the server (fast, or immediate: as a crash would) and starts it again on the same port,
   *  after downMs; resolves once it accepts connections. */
  restart(mode?: 'fast' | 'immediate', downMs?: number): Promise<void>;
  /** Leaves the server running after this process exits (its directory too). */
  keepRunning(): void;
}

export interface ClusterOptions {
  /** Where the cluster's directory is created (default the system temp dir). As root, the
   *  `postgres` user must be able to traverse it. */
  parentDir?: string;
  /** Starts the server in its own process group, so a Ctrl-C on the terminal reaches only this
   *  process, which then stops the server in its own order. */
  ownProcessGroup?: boolean;
  /** TLS only, as Heroku and RDS are: the server's certificate and key (PEM files); connections
   *  without TLS over TCP are rejected by pg_hba, and url() asks for sslmode=require. */
  tls?: { cert: string; key: string };
}

export const SUPERUSER_PASSWORD = 'super-secret-pw';

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Kills every server this process started and has not released, at once (a last resort). */
export function killAllClusters(): void {
  for (const child of running) child.kill('SIGKILL');
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { stdio: 'pipe' }).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { stdio: 'pipe' }).toString().trim());
    return { uid, gid };
  } catch {
    throw new Error(
      'PostgreSQL refuses to run as root, and this machine has no `postgres` user to run it as',
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startCluster(version: ServerVersion = 15, opts: ClusterOptions = {}): Promise<Cluster> {
  const bin = serverBinDir(version);
  const ids = postgresIds();
  const base = fs.mkdtempSync(path.join(opts.parentDir ?? os.tmpdir(), `pgferry-pg${version}-`));
  try {
    return await startIn(base, bin, version, ids, opts);
  } catch (err) {
    fs.rmSync(base, { recursive: true, force: true });
    throw err;
  }
}

/** initdb into `dataDir`, the superuser's password from a file beside it. */
function initdb(
  bin: string,
  dataDir: string,
  ids: { uid: number; gid: number } | undefined,
  spawnOpts: object,
): void {
  const pwfile = path.join(path.dirname(dataDir), 'pwfile');
  fs.writeFileSync(pwfile, `${SUPERUSER_PASSWORD}\n`);
  if (ids) fs.chownSync(pwfile, ids.uid, ids.gid);
  execFileSync(
    path.join(bin, 'initdb'),
    [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      `--pwfile=${pwfile}`,
      '--no-sync',
    ],
    { ...spawnOpts, stdio: 'pipe' },
  );
}

/**
 * With PGFERRY_CLUSTER_TEMPLATES set (the test suite sets it), a data directory made by initdb
 * once per server build in that directory, which each new cluster copies (0.25 s against initdb's
 * 1.9 s, a hundred and fifty times per test run). Workers racing to make it: one rename wins.
 */
function templateDir(
  bin: string,
  version: ServerVersion,
  ids: { uid: number; gid: number } | undefined,
  spawnOpts: object,
): string | undefined {
  const root = process.env.PGFERRY_CLUSTER_TEMPLATES;
  if (!root) return undefined;
  const initdbStat = fs.statSync(path.join(bin, 'initdb'));
  const key = createHash('sha256')
    .update(`${bin} ${initdbStat.size} ${initdbStat.mtimeMs} ${ids?.uid ?? ''} ${SUPERUSER_PASSWORD}`)
    .digest('hex')
    .slice(0, 16);
  const dir = path.join(root, `pg${version}-${key}`);
  if (fs.existsSync(path.join(dir, 'PG_VERSION'))) return dir;
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const work = fs.mkdtempSync(path.join(root, 'making-'));
  try {
    if (ids) fs.chownSync(work, ids.uid, ids.gid);
    initdb(bin, path.join(work, 'data'), ids, spawnOpts);
    try {
      fs.renameSync(path.join(work, 'data'), dir);
    } catch (err) {
      if (!fs.existsSync(path.join(dir, 'PG_VERSION'))) throw err;
    }
    return dir;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function startIn(
  base: string,
  bin: string,
  version: ServerVersion,
  ids: { uid: number; gid: number } | undefined,
  opts: ClusterOptions,
): Promise<Cluster> {
  const dataDir = path.join(base, 'data');
  if (ids) fs.chownSync(base, ids.uid, ids.gid);
  const spawnOpts = { ...(ids ?? {}), env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' } };
  // A template that cannot be made (a directory of another user's, a full disk): initdb says why.
  let template: string | undefined;
  try {
    template = templateDir(bin, version, ids, spawnOpts);
  } catch {}
  if (template) execFileSync('cp', ['-a', template, dataDir], { stdio: 'pipe' });
  else initdb(bin, dataDir, ids, spawnOpts);
  const port = await freePort();
  const settings: Record<string, string | number> = {
    port,
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${base}'`,
    wal_level: 'logical',
    max_wal_senders: 10,
    max_replication_slots: 10,
    max_connections: 100,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: "'128MB'",
    log_min_messages: 'warning',
    logging_collector: 'off',
  };
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join(''),
  );
  if (opts.tls) {
    // The server reads its key only when the postgres user owns it and nobody else may read it.
    for (const [from, to] of [
      [opts.tls.cert, 'server.crt'],
      [opts.tls.key, 'server.key'],
    ] as const) {
      const file = path.join(dataDir, to);
      fs.copyFileSync(from, file);
      fs.chmodSync(file, 0o600);
      if (ids) fs.chownSync(file, ids.uid, ids.gid);
    }
    fs.appendFileSync(
      path.join(dataDir, 'postgresql.conf'),
      "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    );
    fs.writeFileSync(
      path.join(dataDir, 'pg_hba.conf'),
      'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n',
    );
  }
  const logFile = path.join(base, 'postgres.log');
  let child!: ChildProcess;
  let exited = false;
  const launch = () => {
    const logFd = fs.openSync(logFile, 'a');
    if (ids) fs.fchownSync(logFd, ids.uid, ids.gid);
    const proc = spawn(path.join(bin, 'postgres'), ['-D', dataDir], {
      ...spawnOpts,
      stdio: ['ignore', logFd, logFd],
      detached: opts.ownProcessGroup === true,
    });
    fs.closeSync(logFd);
    running.add(proc);
    exited = false;
    proc.once('exit', () => {
      exited = true;
      running.delete(proc);
    });
    child = proc;
  };
  launch();

  const url = (u: { db?: string; user?: string; password?: string; sslmode?: string } = {}) => {
    const user = encodeURIComponent(u.user ?? 'postgres');
    const password = encodeURIComponent(u.password ?? SUPERUSER_PASSWORD);
    const sslmode = u.sslmode ?? (opts.tls ? 'require' : undefined);
    return `postgresql://${user}:${password}@127.0.0.1:${port}/${encodeURIComponent(u.db ?? 'postgres')}${sslmode ? `?sslmode=${sslmode}` : ''}`;
  };
  // The harness's own clients are node-postgres ones, to which `require` means verify-full.
  const clientUrl = (db: string) => url({ db, sslmode: opts.tls ? 'no-verify' : undefined });

  const stop = async () => {
    if (!exited) {
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT'); // fast shutdown
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await done;
      clearTimeout(timer);
    }
    fs.rmSync(base, { recursive: true, force: true });
  };

  const waitReady = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) {
        throw new Error(`postgres ${version} exited during start:\n${fs.readFileSync(logFile, 'utf8')}`);
      }
      const probe = new pg.Client({ connectionString: clientUrl('postgres') });
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.end();
        return;
      } catch {
        await probe.end().catch(() => {});
        if (Date.now() > deadline) {
          await stop();
          throw new Error(`postgres ${version} did not start on port ${port}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  await waitReady();

  /** Stops the server (SIGINT fast, SIGQUIT immediate: no checkpoint, crash recovery at start). */
  const halt = async (mode: 'fast' | 'immediate') => {
    if (exited) return;
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await done;
  };

  return {
    version,
    port,
    dataDir,
    url,
    async query(sql, params, db) {
      const client = new pg.Client({ connectionString: clientUrl(db ?? 'postgres') });
      await client.connect();
      try {
        const res = await client.query(sql, params);
        // A multi-statement query yields an array of results; the last one is the interesting one.
        const last = Array.isArray(res) ? res[res.length - 1] : res;
        return last?.rows ?? [];
      } finally {
        await client.end();
      }
    },
    stop,
    async restart(mode = 'fast', downMs = 0) {
      await halt(mode);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      launch();
      await waitReady();
    },
    get pid() {
      return child.pid ?? 0;
    },
    keepRunning() {
      running.delete(child);
      child.unref();
    },
  };
}
