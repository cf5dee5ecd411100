// The write limits of the replay's target (issue 15, target 2): how fast the same target takes a
// plain COPY of the same table: psql's binary COPY of `pgbench_accounts` from the source piped
// into an empty copy of the table on the target (`LIKE … INCLUDING ALL`: its primary key too, as
// replay writes into an indexed table), timed. Then, on that full copy, how fast the target
// replaces rows that exist (what a backlog of UPDATEs asks of it): every row deleted and the same
// rows copied in again from the source, in one transaction, timed; the table is then dropped.
import { bash, PG_BIN } from './pipe.js';

interface Timed {
  rows: number;
  seconds: number;
  rows_per_s: number;
  script: string;
}

export interface CopyLimit extends Timed {
  table: string;
  /** Every row of the full copy replaced: DELETE of all, then the same COPY again. */
  rewrite: Timed;
}

interface Side {
  port: number;
  user: string;
  db: string;
}

const COPY_TABLE = 'bench_copy_limit';

export async function copyLimit(
  src: Side,
  dst: Side,
  password: string,
  query: (sql: string) => Promise<unknown>,
  table = 'pgbench_accounts',
): Promise<CopyLimit> {
  const conn = (s: Side) => `-h 127.0.0.1 -p ${s.port} -U ${s.user} -d ${s.db}`;
  await query(`DROP TABLE IF EXISTS ${COPY_TABLE}; CREATE TABLE ${COPY_TABLE} (LIKE ${table} INCLUDING ALL)`);
  // The source's binary COPY piped into psql on the target running `into` (extra psql flags first).
  const pipe = (into: string) =>
    `set -o pipefail; PGPASSWORD="$SRC_PW" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(src)} ` +
    `-c 'COPY ${table} TO STDOUT (FORMAT binary)' | ` +
    `PGPASSWORD="$DST_PW" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${into}`;
  const copyIn = `-c 'COPY ${COPY_TABLE} FROM STDIN (FORMAT binary)'`;
  const timed = async (script: string): Promise<Timed> => {
    const started = performance.now();
    const out = await bash(script, { SRC_PW: password, DST_PW: password });
    const seconds = (performance.now() - started) / 1000;
    const rows = Number(/COPY (\d+)/.exec(out)?.[1] ?? Number.NaN);
    if (!Number.isFinite(rows)) throw new Error(`the copy-limit pipe printed no row count: ${out}`);
    return { rows, seconds, rows_per_s: rows / seconds, script: script.replace(/ -p \d+ /g, ' -p <port> ') };
  };
  try {
    const copy = await timed(pipe(`${conn(dst)} ${copyIn}`));
    await query(`VACUUM ANALYZE ${COPY_TABLE}`);
    const rewrite = await timed(pipe(`-1 ${conn(dst)} -c 'DELETE FROM ${COPY_TABLE}' ${copyIn}`));
    return { table, ...copy, rewrite };
  } finally {
    await query(`DROP TABLE IF EXISTS ${COPY_TABLE}`);
  }
}
