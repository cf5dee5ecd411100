// The standby's files in its data directory, written by `pgferry walg restore` and read by
// `walg status`/`promote`: the WAL-G environment (pgferry-walg.env, owner-only: it holds the
// storage's credentials, and is never logged), the restore_command wrapper (pgferry-wal-fetch:
// sources that file, runs `wal-g wal-fetch %f %p`, and appends the outcome to
// pgferry-wal-fetch.log, which status counts), and the record of the restore (pgferry-walg.json).
import fs from 'node:fs';
import path from 'node:path';

export const ENV_FILE = 'pgferry-walg.env';
export const FETCH_SCRIPT = 'pgferry-wal-fetch';
export const FETCH_LOG = 'pgferry-wal-fetch.log';
export const RECORD = 'pgferry-walg.json';

/** WAL-G's exit status when the file is not in the archive (yet): the end of the archive, not an error. */
export const WAL_NOT_FOUND = 74;

export interface StandbyRecord {
  walg: string;
  backup: string;
  port: number;
  /** The server's binaries (its major version's). */
  bin: string;
  /** The role status and promote connect as, over the data directory's socket. */
  user: string;
  restoredAt: string;
  promotedAt: string | null;
}

export function readRecord(pgdata: string): StandbyRecord | null {
  const file = path.join(pgdata, RECORD);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as StandbyRecord) : null;
}

export function writeRecord(pgdata: string, r: StandbyRecord): void {
  fs.writeFileSync(path.join(pgdata, RECORD), `${JSON.stringify(r, null, 2)}\n`, { mode: 0o600 });
}

/** KEY=VALUE lines (comments, blank lines and `export ` allowed; values optionally quoted). */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    if (/^'.*'$/.test(value) || /^".*"$/.test(value)) value = value.slice(1, -1);
    env[m[1]!] = value;
  }
  return env;
}

/** The environment as sh reads it back: each value single-quoted. */
const shellQuote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;

/** Writes the environment file and the restore_command wrapper into the data directory. */
export function writeFetchScript(pgdata: string, walg: string, env: Record<string, string>): string {
  fs.writeFileSync(
    path.join(pgdata, ENV_FILE),
    `${Object.entries(env)
      .map(([k, v]) => `${k}=${shellQuote(v)}`)
      .join('\n')}\n`,
    { mode: 0o600 },
  );
  const script = path.join(pgdata, FETCH_SCRIPT);
  fs.writeFileSync(
    script,
    `#!/bin/sh
# Written by pgferry walg restore: runs WAL-G's wal-fetch with the storage's environment and logs
# the outcome (time, segment, exit status) for pgferry walg status.
here=$(dirname "$0")
set -a
. "$here/${ENV_FILE}"
set +a
${shellQuote(walg)} wal-fetch "$1" "$2"
rc=$?
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1 $rc" >> "$here/${FETCH_LOG}"
exit $rc
`,
    { mode: 0o700 },
  );
  return script;
}

export interface FetchLog {
  fetched: number;
  notFound: number;
  failed: number;
  lastFetched: { at: string; segment: string } | null;
  lastNotFound: { at: string; segment: string } | null;
  lastFailure: { at: string; segment: string; code: number } | null;
}

/** What the wrapper logged: segments fetched, the archive's end reached, failures. */
export function readFetchLog(pgdata: string): FetchLog {
  const out: FetchLog = {
    fetched: 0,
    notFound: 0,
    failed: 0,
    lastFetched: null,
    lastNotFound: null,
    lastFailure: null,
  };
  const file = path.join(pgdata, FETCH_LOG);
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [at, segment, rc] = line.split(' ');
    if (!at || !segment || rc === undefined) continue;
    const code = Number(rc);
    if (code === 0) {
      out.fetched++;
      out.lastFetched = { at, segment };
    } else if (code === WAL_NOT_FOUND) {
      out.notFound++;
      out.lastNotFound = { at, segment };
    } else {
      out.failed++;
      out.lastFailure = { at, segment, code };
    }
  }
  return out;
}
