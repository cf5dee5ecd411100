// The `walg` mode: a physical copy restored from a WAL-G archive and kept in sync as a standby,
// then promoted. pgferry runs exactly two WAL-G commands, with the user's environment (the
// storage prefix and credentials: passed through, never logged): `wal-g backup-fetch PGDATA NAME`
// once, and `wal-g wal-fetch %f %p` as the standby's restore_command (standby.ts's wrapper). The
// server runs from the binaries of the backup's major version (PGFERRY_PG_BIN, or Debian's
// /usr/lib/postgresql/<major>/bin), as the data directory's owner (`postgres` when run as root).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PgferryError, redact } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { chownTree, client, pgCtl, serverBin, serverUser } from './server.js';
import {
  FETCH_LOG,
  readFetchLog,
  readRecord,
  type StandbyRecord,
  writeFetchScript,
  writeRecord,
} from './standby.js';

export { type PromoteResult, promote, type StandbyStatus, status } from './follow.js';

export interface RestoreOptions {
  pgdata: string;
  port: number;
  walg: string;
  backup: string;
  env: Record<string, string>;
  user: string;
  log: (level: 'info' | 'warn', message: string) => void;
}

/** The program that runs `wal-g`: --walg, else `wal-g` on PATH. */
export function findWalg(flag: string | undefined): string {
  const candidates = flag
    ? [flag]
    : (process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'wal-g'));
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) {
    throw new PgferryError(
      'PGFERRY_TOOL_MISSING',
      flag ? `--walg ${flag} does not exist` : 'wal-g not found on PATH',
      {
        side: 'tool',
        hint: 'Install WAL-G (https://github.com/wal-g/wal-g/releases) or point --walg at it.',
      },
    );
  }
  return path.resolve(found);
}

export async function restore(opts: RestoreOptions): Promise<StandbyRecord> {
  const { pgdata } = opts;
  if (fs.existsSync(pgdata) && fs.readdirSync(pgdata).length > 0) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `--pgdata ${pgdata} is not empty`, {
      side: 'config',
      hint: readRecord(pgdata)
        ? 'It holds a copy pgferry restored: `pgferry walg status` or `promote` it, or remove it to restore again.'
        : 'Point --pgdata at an empty or new directory.',
    });
  }
  fs.mkdirSync(pgdata, { recursive: true, mode: 0o700 });
  opts.log('info', `wal-g backup-fetch ${pgdata} ${opts.backup}`);
  const fetched = await runWalg(opts.walg, ['backup-fetch', pgdata, opts.backup], opts.env, (line) =>
    opts.log('info', `wal-g: ${line}`),
  );
  if (fetched.code !== 0) {
    throw new PgferryError(
      'PGFERRY_WALG_FAILED',
      `wal-g backup-fetch ${opts.backup} failed (exit ${fetched.code}): ${redact(fetched.stderr.trim().split('\n').slice(-2).join(' | '))}`,
      {
        side: 'tool',
      },
    );
  }
  const version = path.join(pgdata, 'PG_VERSION');
  if (!fs.existsSync(version)) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `wal-g backup-fetch left no PostgreSQL data directory in ${pgdata}`,
      { side: 'tool' },
    );
  }
  const major = fs.readFileSync(version, 'utf8').trim();
  const script = writeFetchScript(pgdata, opts.walg, opts.env);
  // Standby settings last, so they win over the primary's: no archiving of its own (it would push
  // into the primary's archive after promotion), its socket in the data directory, trust on it.
  fs.appendFileSync(
    path.join(pgdata, 'postgresql.auto.conf'),
    [
      '# pgferry walg restore',
      `restore_command = '${script.replace(/'/g, "''")} %f %p'`,
      "recovery_target_timeline = 'latest'",
      'hot_standby = on',
      "archive_mode = 'off'",
      `port = ${opts.port}`,
      "listen_addresses = 'localhost'",
      `unix_socket_directories = '${pgdata.replace(/'/g, "''")}'`,
      '',
    ].join('\n'),
  );
  const hba = path.join(pgdata, 'pg_hba.conf');
  const oldHba = fs.existsSync(hba) ? fs.readFileSync(hba, 'utf8') : '';
  // The socket lives in the data directory (owner-only): only the server's user can use it.
  fs.writeFileSync(
    hba,
    `# pgferry walg restore: the data directory's socket\nlocal all all trust\n${oldHba}`,
  );
  fs.writeFileSync(path.join(pgdata, 'standby.signal'), '');
  for (const f of ['postmaster.pid', 'postmaster.opts']) fs.rmSync(path.join(pgdata, f), { force: true });
  const rec: StandbyRecord = {
    walg: opts.walg,
    backup: opts.backup,
    port: opts.port,
    bin: serverBin(major),
    user: opts.user,
    restoredAt: new Date().toISOString(),
    promotedAt: null,
  };
  writeRecord(pgdata, rec);
  const ids = serverUser();
  if (ids) chownTree(pgdata, ids);
  fs.chmodSync(pgdata, 0o700);
  opts.log('info', `starting PostgreSQL ${major} as a standby on port ${opts.port}`);
  pgCtl(rec, pgdata, 'start');
  await startAndWait(rec, pgdata, opts.log);
  return rec;
}

/** Fetches that fail (not "not found") this many times before the copy is ready: the archive is broken. */
const FAILED_FETCHES = 3;

/**
 * Waits until the standby accepts connections (it replayed up to the backup's end), saying how
 * many segments it fetched; stops it and fails when wal-fetch keeps failing or it does not come up.
 */
async function startAndWait(rec: StandbyRecord, pgdata: string, log: RestoreOptions['log']): Promise<void> {
  const deadline = Date.now() + 600_000;
  let said = -1;
  for (;;) {
    const c = await client(pgdata, rec).catch(() => null);
    if (c) {
      await c.end().catch(() => {});
      return;
    }
    const f = readFetchLog(pgdata);
    if (f.fetched !== said && f.fetched > 0) {
      log(
        'info',
        `recovering: ${f.fetched} WAL segments fetched${f.lastFetched ? `, last ${f.lastFetched.segment}` : ''}`,
      );
      said = f.fetched;
    }
    const broken = f.failed >= FAILED_FETCHES && f.fetched === 0;
    if (broken || Date.now() > deadline) {
      try {
        pgCtl(rec, pgdata, 'stop');
      } catch {
        // it may not be running
      }
      throw new PgferryError(
        broken ? 'PGFERRY_WALG_FAILED' : 'PGFERRY_TARGET_CONNECT',
        broken
          ? `wal-g wal-fetch fails (exit ${f.lastFailure?.code} for ${f.lastFailure?.segment}, ${f.failed} times): the copy cannot replay the WAL it needs`
          : 'the restored copy did not accept connections within 10 minutes',
        {
          side: 'tool',
          hint: `The server's log: ${path.join(pgdata, 'pgferry-server.log')}; the fetches: ${path.join(pgdata, FETCH_LOG)}`,
        },
      );
    }
    await sleep(500);
  }
}

function runWalg(walg: string, args: string[], env: Record<string, string>, onLine: (line: string) => void) {
  return new Promise<{ code: number; stderr: string }>((resolve) => {
    const child = spawn(walg, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const line of d.toString().split('\n')) if (line.trim()) onLine(redact(line.trim()));
    });
    child.on('error', (e) => resolve({ code: 127, stderr: e.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}
