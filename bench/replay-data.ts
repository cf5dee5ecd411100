// The replay benchmark's data: pgbench's tables, the backlog of captured changes made on them with
// pgferry stopped, the capture logs' sizes, and the digests that prove source and target equal.
import pg from 'pg';

/** pgbench_history has no primary key: pgferry cannot capture it, so the bench leaves it out. */
export const EXCLUDED = 'public.pgbench_history';
export const REPLAYED = [
  'public.pgbench_accounts',
  'public.pgbench_branches',
  'public.pgbench_tellers',
] as const;
const BALANCE: Record<(typeof REPLAYED)[number], string> = {
  'public.pgbench_accounts': 'abalance',
  'public.pgbench_branches': 'bbalance',
  'public.pgbench_tellers': 'tbalance',
};

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface Digest {
  rows: number;
  balance: string;
  /** Order-independent sum of a 64-bit hash of every row's text form. */
  hash: string;
}

export async function digests(url: string): Promise<Record<string, Digest>> {
  return withClient(url, async (c) => {
    const out: Record<string, Digest> = {};
    for (const table of REPLAYED) {
      const { rows } = await c.query<{ n: string; b: string | null; h: string | null }>(
        `SELECT count(*) AS n, sum(${BALANCE[table]})::text AS b,
                sum(hashtextextended("bench row"::text, 0)::numeric)::text AS h
           FROM ${table} AS "bench row"`,
      );
      const r = rows[0]!;
      out[table] = { rows: Number(r.n), balance: r.b ?? '0', hash: r.h ?? '0' };
    }
    return out;
  });
}

/** Never report figures for a broken run: throws unless every replayed table is equal. */
export async function assertEqual(sourceUrl: string, targetUrl: string, when: string): Promise<string> {
  const [s, t] = await Promise.all([digests(sourceUrl), digests(targetUrl)]);
  for (const table of REPLAYED) {
    const a = s[table]!;
    const b = t[table];
    if (!b || a.rows !== b.rows || a.balance !== b.balance || a.hash !== b.hash) {
      throw new Error(
        `${when}: ${table} differs: source ${JSON.stringify(a)}, target ${JSON.stringify(b)}; no figures reported`,
      );
    }
  }
  return REPLAYED.map((table) => `${table} ${s[table]!.rows} rows`).join(', ');
}

/** Rows in each capture log (pgferry.log_<run>_<oid>), by captured table: the bench runs one pgferry run at a time. */
export async function logCounts(c: pg.Client): Promise<Record<string, number>> {
  const { rows: captured } = await c.query<{ schema_name: string; table_name: string; log_table: string }>(
    'SELECT schema_name, table_name, log_table FROM pgferry.captured ORDER BY 1, 2',
  );
  const out: Record<string, number> = {};
  for (const t of captured) {
    const { rows } = await c.query<{ n: string }>(
      `SELECT count(*) AS n FROM pgferry.${pg.escapeIdentifier(t.log_table)}`,
    );
    out[`${t.schema_name}.${t.table_name}`] = Number(rows[0]!.n);
  }
  return out;
}

export const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, n) => a + n, 0);

export interface BacklogStatement {
  sql: string;
  rows: number;
  seconds: number;
}

/**
 * Brings the captured backlog up to about `want` changes, on top of what is already logged:
 * UPDATEs of abalance in a few big statements (`aid % 10 = k`, up to a tenth of the table each),
 * 2% DELETEs of the highest aids, 2% INSERTs of new aids, and ~1% as whole-table UPDATEs of
 * pgbench_branches and pgbench_tellers repeated (many log rows per key, as hot rows get).
 */
export async function makeBacklog(url: string, scale: number, want: number): Promise<BacklogStatement[]> {
  return withClient(url, async (c) => {
    const accounts = scale * 100_000;
    const rest = Math.max(0, want - total(await logCounts(c)));
    const perPass = scale * 11; // branches + tellers rows
    const passes = Math.max(1, Math.round((rest * 0.01) / perPass));
    const deletes = Math.min(Math.round(rest * 0.02), Math.floor(accounts / 10));
    const inserts = Math.round(rest * 0.02);
    let updates = rest - passes * perPass - deletes - inserts;
    const done: BacklogStatement[] = [];
    const run = async (sql: string) => {
      const t0 = performance.now();
      const res = await c.query(sql);
      done.push({ sql, rows: res.rowCount ?? 0, seconds: (performance.now() - t0) / 1000 });
      return res.rowCount ?? 0;
    };
    for (let k = 0; updates > 0; k++) {
      const rows = Math.min(updates, accounts / 10);
      updates -= await run(
        `UPDATE pgbench_accounts SET abalance = abalance + ${k + 1} WHERE aid % 10 = ${k % 10} AND aid <= ${rows * 10}`,
      );
    }
    for (let p = 0; p < passes; p++) {
      await run('UPDATE pgbench_branches SET bbalance = bbalance + 1');
      await run('UPDATE pgbench_tellers SET tbalance = tbalance + 1');
    }
    if (deletes > 0) await run(`DELETE FROM pgbench_accounts WHERE aid > ${accounts - deletes}`);
    if (inserts > 0) {
      await run(
        `INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
         SELECT ${accounts} + g, ${scale}, g % 1000, '' FROM generate_series(1, ${inserts}) g`,
      );
    }
    return done;
  });
}
