// Finding and running PostgreSQL's client programs (pg_dump, psql). pg_dump must be at least the
// source's major version, so the newest installed one is preferred over whatever PATH finds first.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PgferryError } from '../../lib/errors.js';
import { BUCARDO_SCHEMA, PGFERRY_SCHEMA } from './catalog.js';
import type { ConnInfo } from './conn-info.js';

export interface PgTool {
  path: string;
  major: number;
  version: string;
}

function candidateDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.PGFERRY_PG_BIN) dirs.push(process.env.PGFERRY_PG_BIN);
  const debianRoot = '/usr/lib/postgresql';
  if (fs.existsSync(debianRoot)) {
    const versions = fs
      .readdirSync(debianRoot)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) dirs.push(path.join(debianRoot, v, 'bin'));
  }
  for (const p of (process.env.PATH ?? '').split(path.delimiter)) if (p) dirs.push(p);
  return dirs;
}

// What a child program inherits: its locale and paths, nothing else. Not PGFERRY_* (the URLs, the
// API token), and not the PG* variables of pgferry's own environment either: a PGSSLMODE there would
// give pg_dump a meaning of the URL that node-postgres's sessions do not share.
const INHERITED = /^(?:PATH|HOME|USER|LOGNAME|LANG|LC_[A-Z]+|TZ|TMPDIR)$/;

function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && INHERITED.test(k)) env[k] = v;
  return { ...env, ...extra };
}

async function run(
  file: string,
  args: string[],
  opts: { env?: Record<string, string>; input?: string } = {},
) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(file, args, {
      env: childEnv(opts.env),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {}); // psql may exit early on error; its exit code reports it
      child.stdin.end(opts.input);
    }
  });
}

const cache = new Map<string, PgTool | null>();

export async function findTool(name: 'pg_dump' | 'psql' | 'pg_restore'): Promise<PgTool | null> {
  if (cache.has(name)) return cache.get(name) ?? null;
  let found: PgTool | null = null;
  for (const dir of candidateDirs()) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    try {
      const { stdout } = await run(file, ['--version']);
      const m = /\(PostgreSQL\)\s+(\d+)(\.\d+)?/.exec(stdout);
      if (!m) continue;
      found = { path: file, major: Number(m[1]), version: `${m[1]}${m[2] ?? ''}` };
      break;
    } catch {
      // not executable: try the next one
    }
  }
  cache.set(name, found);
  return found;
}

/** Finds a tool able to work with a server of the given major version, or says what to install. */
export async function requireTool(
  name: 'pg_dump' | 'psql' | 'pg_restore',
  serverMajor: number,
): Promise<PgTool> {
  const tool = await findTool(name);
  if (!tool) {
    throw new PgferryError(
      'PGFERRY_TOOL_MISSING',
      `${name} not found (looked in PGFERRY_PG_BIN, /usr/lib/postgresql/*/bin, PATH)`,
      {
        side: 'tool',
      },
    );
  }
  if (name !== 'psql' && tool.major < serverMajor) {
    throw new PgferryError(
      'PGFERRY_TOOL_MISSING',
      `${tool.path} is version ${tool.version}, older than the source server (${serverMajor}); ${name} must be at least the source's major version`,
      { side: 'tool' },
    );
  }
  return tool;
}

/** A password file for one child: libpq reads it, and neither `ps` nor /proc/PID/environ shows it. */
function passfile(password: string): { path: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-pass-'));
  const file = path.join(dir, 'pgpass');
  // Any host, port, database and user: the file serves this one child's one connection.
  // https://www.postgresql.org/docs/current/libpq-pgpass.html (backslash and colon escaped).
  fs.writeFileSync(file, `*:*:*:*:${password.replace(/[\\:]/g, '\\$&')}\n`, { mode: 0o600 });
  return { path: file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs a libpq program against a server; the password goes through a password file of its own. */
export async function runAgainst(
  tool: PgTool,
  conn: ConnInfo,
  args: string[],
  opts: {
    input?: string;
    pgoptions?: string;
    /** Files the program reads (a pg_restore list): written for it, `$name` in args replaced by the path. */
    files?: Record<string, string>;
    /** The program does not connect (pg_restore --list): no --dbname. */
    noDatabase?: boolean;
  } = {},
) {
  const { dbname, password } = conn.libpq();
  const env: Record<string, string> = { PGAPPNAME: 'pgferry', PGCONNECT_TIMEOUT: '15' };
  if (opts.pgoptions) env.PGOPTIONS = opts.pgoptions;
  const pass = password === undefined || opts.noDatabase ? null : passfile(password);
  if (pass) env.PGPASSFILE = pass.path;
  const dir = opts.files ? fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-args-')) : null;
  try {
    const paths: Record<string, string> = {};
    for (const [name, text] of Object.entries(opts.files ?? {})) {
      paths[name] = path.join(dir!, name);
      fs.writeFileSync(paths[name], text, { mode: 0o600 });
    }
    const argv = args.map((a) => a.replace(/\$(\w+)/g, (m, name: string) => paths[name] ?? m));
    if (!opts.noDatabase) argv.push(`--dbname=${dbname}`);
    return await run(tool.path, argv, { env, input: opts.input });
  } finally {
    pass?.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// libpq programs report no SQLSTATE: what they print is all there is. These are libpq's and the
// server's words for a connection that could not be made or was lost (a restart, a failover).
const LOST =
  /connection to server .*failed|server closed the connection unexpectedly|could not connect to server|terminating connection due to administrator command|the database system is (?:shutting down|starting up|in recovery mode)|no connection to the server|SSL SYSCALL error/i;

/**
 * Whether a libpq program failed because its connection was lost or refused: psql says so with
 * exit status 2; pg_dump, which exits 1 for everything, only in its message.
 */
export function lostConnection(tool: PgTool, res: { code: number; stderr: string }): boolean {
  if (res.code === 0) return false;
  if (path.basename(tool.path) === 'psql' && res.code === 2) return true;
  return LOST.test(res.stderr) && !/password authentication failed|no pg_hba\.conf entry/i.test(res.stderr);
}

export interface PipeEnd {
  tool: PgTool;
  conn: ConnInfo;
  args: string[];
}

/**
 * Runs `from` (pg_dump) with its standard output piped into `to` (pg_restore), each against its
 * own server with its own password file, nothing on disk in between. If one ends in failure the
 * other is stopped. `onBytes` hears the bytes passing (progress).
 */
export async function pipeTools(
  from: PipeEnd,
  to: PipeEnd,
  onBytes?: (total: number) => void,
): Promise<{ from: { code: number; stderr: string }; to: { code: number; stderr: string } }> {
  const ends = [from, to].map((e) => {
    const { dbname, password } = e.conn.libpq();
    const pass = password === undefined ? null : passfile(password);
    const env: Record<string, string> = { PGAPPNAME: 'pgferry', PGCONNECT_TIMEOUT: '15' };
    if (pass) env.PGPASSFILE = pass.path;
    return { argv: [...e.args, `--dbname=${dbname}`], env, pass, tool: e.tool };
  });
  const [a, b] = ends as [(typeof ends)[number], (typeof ends)[number]];
  try {
    const producer = spawn(a.tool.path, a.argv, { env: childEnv(a.env), stdio: ['ignore', 'pipe', 'pipe'] });
    const consumer = spawn(b.tool.path, b.argv, { env: childEnv(b.env), stdio: ['pipe', 'ignore', 'pipe'] });
    let bytes = 0;
    producer.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      onBytes?.(bytes);
    });
    producer.stdout.pipe(consumer.stdin);
    consumer.stdin.on('error', () => {}); // the consumer gone: its exit code says why
    const ended = (child: ReturnType<typeof spawn>, other: ReturnType<typeof spawn>) => {
      const err: Buffer[] = [];
      child.stderr!.on('data', (d: Buffer) => err.push(d));
      return new Promise<{ code: number; stderr: string }>((resolve) => {
        child.on('error', (e) => resolve({ code: 1, stderr: e.message }));
        child.on('close', (code) => {
          if (code !== 0) other.kill('SIGTERM');
          resolve({ code: code ?? 1, stderr: Buffer.concat(err).toString('utf8') });
        });
      });
    };
    const [f, t] = await Promise.all([ended(producer, consumer), ended(consumer, producer)]);
    return { from: f, to: t };
  } finally {
    for (const e of ends) e.pass?.remove();
  }
}

/** A pg_dump pattern that matches one name exactly: quoted, with quotes doubled. */
const quotePattern = (name: string) => `"${name.replace(/"/g, '""')}"`;
export const exactPattern = (schema: string, name: string) => `${quotePattern(schema)}.${quotePattern(name)}`;

/**
 * What every pg_dump pgferry runs leaves out or waits for: owners, grants, publications,
 * subscriptions, security labels and tablespaces (a target is another server, its roles and
 * disks others), pgferry's own schema, and no queueing behind an exclusive lock on the
 * production source for more than 30 s.
 */
export const DUMP_FLAGS = [
  '--no-owner',
  '--no-acl',
  '--no-publications',
  '--no-subscriptions',
  '--no-security-labels',
  '--no-tablespaces',
  '--lock-wait-timeout=30000',
  `--exclude-schema=${quotePattern(PGFERRY_SCHEMA)}`,
  `--exclude-schema=${quotePattern(BUCARDO_SCHEMA)}`,
] as const;
