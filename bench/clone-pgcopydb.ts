// The peer: `pgcopydb clone` (Debian's package), installed by the bench when missing. Like pgferry's
// `migrate --copy-only` it copies schema, data and indexes under one exported snapshot, with N COPY
// jobs and N CREATE INDEX jobs; unlike pgferry it also runs VACUUM ANALYZE on every table (pgcopydb
// 0.10 cannot turn that off; it overlaps with the index builds). Without
// --split-tables-larger-than it copies each table in one COPY; with it, it splits big tables into
// integer-key ranges as pgferry does, so the bench runs both.
//
// pgcopydb takes connection URIs; the bench's carry no password: pgcopydb, and the pg_dump and
// pg_restore it runs, read them from a pgpass file named by PGPASSFILE.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PG_BIN } from './pipe.js';

export type PgcopydbTool =
  | { available: true; version: string; installedByBench: boolean }
  | {
      available: false;
      reason: string;
    };

function run(cmd: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    encoding: 'utf8',
    timeout: 10 * 60_000,
  });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}` };
}

const lastLine = (text: string) => text.trim().split('\n').pop() ?? '';

/**
 * `command -v pgcopydb`, else (with `install`) `apt-get install -y pgcopydb`, after `apt-get update`
 * if that fails. Without `install` (the --quick smoke runs) a missing pgcopydb is only reported.
 */
export function ensurePgcopydb(say: (msg: string) => void, opts: { install: boolean }): PgcopydbTool {
  const found = () => run('bash', ['-c', 'command -v pgcopydb']).ok;
  let installedByBench = false;
  if (!found() && !opts.install) {
    return {
      available: false,
      reason:
        'not installed, and --quick does not install it (the full bench runs apt-get install -y pgcopydb)',
    };
  }
  if (!found()) {
    say('pgcopydb is not installed: apt-get install -y pgcopydb');
    let install = run('apt-get', ['install', '-y', 'pgcopydb']);
    if (!install.ok) {
      say('  failed; apt-get update, then again');
      run('apt-get', ['update']);
      install = run('apt-get', ['install', '-y', 'pgcopydb']);
    }
    if (!install.ok || !found()) {
      return { available: false, reason: `apt-get install -y pgcopydb failed: ${lastLine(install.output)}` };
    }
    installedByBench = true;
  }
  const version = run('pgcopydb', ['--version']);
  if (!version.ok)
    return { available: false, reason: `pgcopydb --version failed: ${lastLine(version.output)}` };
  const line = version.output.split('\n').find((l) => l.startsWith('pgcopydb version')) ?? '';
  return { available: true, version: line.replace('pgcopydb version ', '').trim(), installedByBench };
}

export interface PgcopydbEndpoint {
  port: number;
  user: string;
  db: string;
}

export interface PgcopydbRun {
  seconds: number;
  /** pgcopydb's own closing table of step durations, verbatim. */
  summary: string;
}

const uri = (e: PgcopydbEndpoint) => `postgres://${e.user}@127.0.0.1:${e.port}/${e.db}`;

export function pgcopydbArgs(opts: {
  src: PgcopydbEndpoint;
  dst: PgcopydbEndpoint;
  jobs: number;
  dir: string;
  splitTablesLargerThan?: string;
}): string[] {
  return [
    'clone',
    '--source',
    uri(opts.src),
    '--target',
    uri(opts.dst),
    '--dir',
    opts.dir,
    '--table-jobs',
    String(opts.jobs),
    '--index-jobs',
    String(opts.jobs),
    '--no-owner',
    '--no-acl',
    ...(opts.splitTablesLargerThan ? ['--split-tables-larger-than', opts.splitTablesLargerThan] : []),
  ];
}

/** One line per host:port, for the pgpass file (`*` for the database). */
export function writePgpass(file: string, entries: { port: number; user: string; password: string }[]): void {
  const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  const text = entries.map((e) => `127.0.0.1:${e.port}:*:${esc(e.user)}:${esc(e.password)}\n`).join('');
  fs.writeFileSync(file, text, { mode: 0o600 });
}

/** The step table pgcopydb logs at the end ("Step  Connection  Duration  Concurrency" and below). */
function summaryOf(log: string): string {
  const lines = log.split('\n');
  const start = lines.findIndex((l) => /\bStep\b.*\bDuration\b/.test(l));
  return start < 0 ? '' : lines.slice(start).join('\n').trimEnd();
}

/** Runs one `pgcopydb clone`; `dir` must not exist. Its log is kept in `<dir>.log`. */
export async function runPgcopydb(args: string[], pgpassFile: string, dir: string): Promise<PgcopydbRun> {
  const logFile = `${dir}.log`;
  const t0 = performance.now();
  const child = spawn('pgcopydb', args, {
    env: {
      ...process.env,
      PGPASSFILE: pgpassFile,
      // pgcopydb runs pg_dump, pg_restore and psql from PG_CONFIG's bindir, else from PATH.
      PG_CONFIG: path.join(PG_BIN, 'pg_config'),
      PATH: `${PG_BIN}:${process.env.PATH ?? ''}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d: Buffer) => {
    log += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const seconds = (performance.now() - t0) / 1000;
  fs.writeFileSync(logFile, log);
  fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0) {
    throw new Error(`pgcopydb exited with ${code}:\n${log.trim().split('\n').slice(-15).join('\n')}`);
  }
  return { seconds, summary: summaryOf(log) };
}
