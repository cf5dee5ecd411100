// The copy's server: the binaries of the backup's major version, run as the data directory's
// owner (`postgres` when pgferry runs as root: the server refuses root), pg_ctl, and a session
// over the socket in the data directory.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { PgferryError, redact } from '../../lib/errors.js';
import { readRecord, type StandbyRecord } from './standby.js';

export function serverBin(major: string): string {
  const dirs = [process.env.PGFERRY_PG_BIN, `/usr/lib/postgresql/${major}/bin`].filter(
    (d): d is string => !!d,
  );
  const bin = dirs.find(
    (d) => fs.existsSync(path.join(d, 'pg_ctl')) && fs.existsSync(path.join(d, 'postgres')),
  );
  if (!bin) {
    throw new PgferryError(
      'PGFERRY_TOOL_MISSING',
      `no PostgreSQL ${major} server found (the backup's version)`,
      {
        side: 'tool',
        hint: `Install postgresql-${major} (Debian), or set PGFERRY_PG_BIN to its bin directory.`,
      },
    );
  }
  return bin;
}

/** As root the server runs as `postgres` (it refuses root); otherwise as this user. */
export function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

export function pgCtl(rec: StandbyRecord, pgdata: string, action: 'start' | 'stop'): void {
  const ids = serverUser();
  // Started without waiting: restore watches the server and the archive itself (startAndWait).
  const args = ['-D', pgdata, action === 'start' ? '-W' : '-w', '-t', '600'].concat(action);
  if (action === 'start') args.push('-l', path.join(pgdata, 'pgferry-server.log'));
  try {
    execFileSync(path.join(rec.bin, 'pg_ctl'), args, {
      ...(ids ?? {}),
      stdio: 'pipe',
      env: { PATH: process.env.PATH ?? '' },
    });
  } catch (err) {
    const out = `${(err as { stderr?: Buffer }).stderr?.toString() ?? ''}`.trim();
    throw new PgferryError(
      'PGFERRY_TARGET_CONNECT',
      `pg_ctl ${action} failed: ${redact(out.split('\n').slice(-3).join(' | '))}`,
      {
        side: 'target',
        hint: `Its log: ${path.join(pgdata, 'pgferry-server.log')}`,
      },
    );
  }
}

export function chownTree(dir: string, ids: { uid: number; gid: number }): void {
  fs.chownSync(dir, ids.uid, ids.gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, ids);
    else fs.lchownSync(p, ids.uid, ids.gid);
  }
}

export async function client(pgdata: string, rec: StandbyRecord): Promise<pg.Client> {
  const c = new pg.Client({
    host: pgdata,
    port: rec.port,
    user: rec.user,
    database: 'postgres',
    application_name: 'pgferry',
  });
  await c.connect();
  return c;
}

export function requireRecord(pgdata: string): StandbyRecord {
  const rec = readRecord(pgdata);
  if (!rec) {
    throw new PgferryError(
      'PGFERRY_STATE_NOT_FOUND',
      `${pgdata} holds no copy restored by pgferry walg restore`,
      {
        side: 'state',
        hint: 'Give the --pgdata of `pgferry walg restore`.',
      },
    );
  }
  return rec;
}
