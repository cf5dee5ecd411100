// The yardstick: psql's COPY TO STDOUT piped into psql's COPY FROM STDIN through bash, one pipe per
// table, all tables at once. Passwords reach psql through PGPASSWORD set from environment
// variables inside the script, so no password is ever on a command line (`ps` shows them).
import { spawn } from 'node:child_process';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Endpoint {
  port: number;
  user: string;
  db: string;
  /** Name of the environment variable holding the password (never the password itself). */
  passwordVar: 'SRC_PW' | 'DST_PW';
}

export type CopyFormat = 'binary' | 'text';

const conn = (e: Endpoint) => `-h 127.0.0.1 -p ${e.port} -U ${e.user} -d ${e.db}`;
const formatOption = (f: CopyFormat) => (f === 'binary' ? ' (FORMAT binary)' : '');

/** The bash script of one table's pipe; printed verbatim in the report. */
export function pipeScript(table: string, format: CopyFormat, src: Endpoint, dst: Endpoint): string {
  return (
    `set -o pipefail; PGPASSWORD="$${src.passwordVar}" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(src)} ` +
    `-c 'COPY ${table} TO STDOUT${formatOption(format)}' | ` +
    `PGPASSWORD="$${dst.passwordVar}" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(dst)} ` +
    `-c 'COPY ${table} FROM STDIN${formatOption(format)}'`
  );
}

/** The bash script that counts one table's COPY stream bytes (timed runs do not count). */
export function bytesScript(table: string, format: CopyFormat, src: Endpoint): string {
  return (
    `set -o pipefail; PGPASSWORD="$${src.passwordVar}" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(src)} ` +
    `-c 'COPY ${table} TO STDOUT${formatOption(format)}' | wc -c`
  );
}

/** pg_dump's pre-data (tables without keys or indexes) from the source, applied to the target. */
export function schemaScript(src: Endpoint, dst: Endpoint): string {
  return (
    `set -o pipefail; PGPASSWORD="$${src.passwordVar}" ${PG_BIN}/pg_dump --schema-only --section=pre-data ` +
    `--no-owner --no-acl ${conn(src)} | ` +
    `PGPASSWORD="$${dst.passwordVar}" ${PG_BIN}/psql -X -q -v ON_ERROR_STOP=1 ${conn(dst)}`
  );
}

export async function bash(script: string, passwords: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {
      env: { ...process.env, ...passwords },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`bash exited with ${code}: ${script}\n${err.trim()}`));
    });
  });
}

export interface PipeRun {
  format: CopyFormat;
  seconds: number;
  rows: number;
  tables: { table: string; seconds: number; rows: number }[];
}

/** All tables' pipes at once; the run lasts until the slowest table is done. */
export async function runPipes(
  tables: readonly string[],
  format: CopyFormat,
  src: Endpoint,
  dst: Endpoint,
  passwords: Record<string, string>,
): Promise<PipeRun> {
  const t0 = performance.now();
  const per = await Promise.all(
    tables.map(async (table) => {
      const out = await bash(pipeScript(table, format, src, dst), passwords);
      const m = /^COPY (\d+)$/m.exec(out);
      if (!m) throw new Error(`no row count from the ${format} pipe of ${table}: ${out.trim()}`);
      return { table, seconds: (performance.now() - t0) / 1000, rows: Number(m[1]) };
    }),
  );
  return {
    format,
    seconds: (performance.now() - t0) / 1000,
    rows: per.reduce((a, t) => a + t.rows, 0),
    tables: per,
  };
}

/** Bytes of each table's COPY stream in this format, from a separate, untimed read. */
export async function streamBytes(
  tables: readonly string[],
  format: CopyFormat,
  src: Endpoint,
  passwords: Record<string, string>,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of tables)
    out[table] = Number((await bash(bytesScript(table, format, src), passwords)).trim());
  return out;
}
