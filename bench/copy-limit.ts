// The write limit of the replay's target (issue 15, target 2): how fast the same target takes a
// plain COPY of the same table. psql's binary COPY of `pgbench_accounts` from the source piped
// into an empty copy of the table on the target (`LIKE … INCLUDING ALL`: its primary key too, as
// replay writes into an indexed table), timed, then dropped.
import { bash, PG_BIN } from './pipe.js';

export interface CopyLimit {
  table: string;
  rows: number;
  seconds: number;
  rows_per_s: number;
  script: string;
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
  const script =
    `set -o pipefail; PGPASSWORD="$SRC_PW" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(src)} ` +
    `-c 'COPY ${table} TO STDOUT (FORMAT binary)' | ` +
    `PGPASSWORD="$DST_PW" ${PG_BIN}/psql -X -v ON_ERROR_STOP=1 ${conn(dst)} ` +
    `-c 'COPY ${COPY_TABLE} FROM STDIN (FORMAT binary)'`;
  try {
    const started = performance.now();
    const out = await bash(script, { SRC_PW: password, DST_PW: password });
    const seconds = (performance.now() - started) / 1000;
    const rows = Number(/COPY (\d+)/.exec(out)?.[1] ?? Number.NaN);
    if (!Number.isFinite(rows)) throw new Error(`the copy-limit pipe printed no row count: ${out}`);
    return {
      table,
      rows,
      seconds,
      rows_per_s: rows / seconds,
      script: script.replace(/ -p \d+ /g, ' -p <port> '),
    };
  } finally {
    await query(`DROP TABLE IF EXISTS ${COPY_TABLE}`);
  }
}
