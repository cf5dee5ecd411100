// The whole-clone yardstick everyone knows: `pg_dump -Fd -j N` into a directory, then
// `pg_restore -j N` into an empty database, timed separately and summed (a user runs them one after
// the other). Both run with their defaults otherwise, as a user would: the directory format
// compresses each table's data with gzip, which is most of pg_dump's time here.
// Passwords reach the tools through PGPASSWORD set inside the script, never on a command line.
import fs from 'node:fs';
import path from 'node:path';
import { bash, type Endpoint, PG_BIN } from './pipe.js';

export interface DumpRestoreRun {
  dumpSeconds: number;
  restoreSeconds: number;
  /** dump + restore */
  seconds: number;
  /** Size of the dump directory. */
  dumpBytes: number;
}

const conn = (e: Endpoint) => `-h 127.0.0.1 -p ${e.port} -U ${e.user} -d ${e.db}`;

export function dumpScript(src: Endpoint, dir: string, jobs: number): string {
  return (
    `PGPASSWORD="$${src.passwordVar}" ${PG_BIN}/pg_dump -Fd -j ${jobs} --no-owner --no-acl ` +
    `-f ${dir} ${conn(src)}`
  );
}

/** --exit-on-error: a restore that skipped an object must fail the bench, not be timed. */
export function restoreScript(dst: Endpoint, dir: string, jobs: number): string {
  return (
    `PGPASSWORD="$${dst.passwordVar}" ${PG_BIN}/pg_restore -j ${jobs} --no-owner --no-acl --exit-on-error ` +
    `${conn(dst)} ${dir}`
  );
}

function dirBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

/** Dumps the source into `dir` (which must not exist), restores it into `dst` (an empty database),
 *  removes `dir`. */
export async function runDumpRestore(opts: {
  src: Endpoint;
  dst: Endpoint;
  jobs: number;
  dir: string;
  passwords: Record<string, string>;
}): Promise<DumpRestoreRun> {
  const t0 = performance.now();
  await bash(dumpScript(opts.src, opts.dir, opts.jobs), opts.passwords);
  const t1 = performance.now();
  await bash(restoreScript(opts.dst, opts.dir, opts.jobs), opts.passwords);
  const t2 = performance.now();
  const dumpBytes = dirBytes(opts.dir);
  fs.rmSync(opts.dir, { recursive: true, force: true });
  return {
    dumpSeconds: (t1 - t0) / 1000,
    restoreSeconds: (t2 - t1) / 1000,
    seconds: (t2 - t0) / 1000,
    dumpBytes,
  };
}
