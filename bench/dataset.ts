// The copy benchmark's data, ~2 GB of table data at the default scale (30) as issue 4 asks: a
// pgbench-style `accounts` table (narrow rows, ~120 bytes) and a `wide` table with half as many
// rows of ~1 kB (jsonb, bytea, numeric, timestamptz and text[]), generated server-side with
// generate_series. Rows stay under the TOAST threshold (~2 kB), so nothing is compressed and the
// COPY stream is about as big as the heap. Values are deterministic but not repetitive: the bytea
// is SHA-512 output and the jsonb carries hashes, as tokens, digests and images make real columns
// hard to compress (an earlier version repeated one md5 ten times, which gzip shrinks tenfold and
// made pg_dump look three times faster than on real data).
import pg from 'pg';

export interface TableSize {
  table: string;
  rows: number;
  heapBytes: number;
  totalBytes: number;
  avgRowBytes: number;
}

export const BENCH_TABLES = ['public.accounts', 'public.wide'] as const;

const ACCOUNTS_SQL = (rows: number) => `
  CREATE TABLE accounts (aid int NOT NULL, bid int, abalance int, filler char(84));
  INSERT INTO accounts SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${rows}) g;
  ALTER TABLE accounts ADD PRIMARY KEY (aid);`;

/** `wide` rows loaded beside `accounts` rows. */
export const wideRowsFor = (accountRows: number): number => Math.max(1, Math.floor(accountRows / 2));

// Every seventeenth amount is NULL and every eleventh tags array empty, so NULLs and empty values
// travel too.
const WIDE_SQL = (rows: number) => `
  CREATE TABLE wide (id bigint NOT NULL, doc jsonb, blob bytea, amount numeric(12,2), at timestamptz,
                     tags text[]);
  INSERT INTO wide
  SELECT g,
         jsonb_build_object(
           'id', g, 'name', 'customer ' || g, 'email', 'customer' || g || '@example.com',
           'active', g % 3 <> 0, 'score', round((g % 1000) / 7.0, 3),
           'token', encode(sha256(int8send(g)), 'base64'),
           'note', 'order ' || (g % 9973) || ' of ' || md5(g::text) || ', ' || md5((g * 31)::text),
           'address', jsonb_build_object('street', g || ' Main Street', 'city', 'City ' || (g % 500),
                                         'zip', lpad((g % 100000)::text, 5, '0'))),
         sha512(int8send(g)) || sha512(int8send(-g)) || sha512(int8send(g + 4000000000))
           || sha512(int8send(g + 8000000000)) || sha512(int8send(g + 12000000000)),
         CASE WHEN g % 17 = 0 THEN NULL ELSE ((g::bigint * 7919) % 1000000000) / 100.0 END,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
         CASE WHEN g % 11 = 0 THEN '{}'::text[]
              ELSE ARRAY['tag' || (g % 10), 'group-' || (g % 100), 'c' || md5(g::text)] END
    FROM generate_series(1, ${rows}) g;
  ALTER TABLE wide ADD PRIMARY KEY (id);`;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates and fills both tables (in parallel), then freezes them so no run pays for hint bits. */
export async function loadDataset(url: string, accountRows: number): Promise<void> {
  const rows = Math.max(1, Math.floor(accountRows));
  await Promise.all([
    withClient(url, (c) => c.query(ACCOUNTS_SQL(rows))),
    withClient(url, (c) => c.query(WIDE_SQL(wideRowsFor(rows)))),
  ]);
  // The first scan after a bulk load writes hint bits on every page: do it here, not in a timed run.
  await withClient(url, (c) => c.query('VACUUM (FREEZE, ANALYZE) accounts, wide'));
}

export async function tableSizes(url: string): Promise<TableSize[]> {
  return withClient(url, async (c) => {
    const out: TableSize[] = [];
    for (const table of BENCH_TABLES) {
      const { rows } = await c.query<{ n: string; heap: string; total: string; avg: string }>(
        `SELECT (SELECT count(*) FROM ${table}) AS n, pg_relation_size($1::regclass) AS heap,
                pg_total_relation_size($1::regclass) AS total,
                (SELECT coalesce(avg(pg_column_size(r.*)), 0) FROM ${table} AS r) AS avg`,
        [table],
      );
      const r = rows[0]!;
      out.push({
        table,
        rows: Number(r.n),
        heapBytes: Number(r.heap),
        totalBytes: Number(r.total),
        avgRowBytes: Math.round(Number(r.avg)),
      });
    }
    return out;
  });
}

export interface TableDigest {
  rows: number;
  /** Order-independent sum of a 64-bit hash of every row's text form. */
  hash: string;
  primaryKey: boolean;
  /** Indexes on the table (the primary key's included), valid and ready. */
  indexes: number;
}

/** Row count, content hash, whether the primary key exists and the index count, per benchmark table. */
export async function tableDigests(url: string): Promise<Map<string, TableDigest>> {
  return withClient(url, async (c) => {
    // The text form of timestamptz depends on TimeZone: pin it so both sides print alike.
    await c.query("SET TimeZone = 'UTC'");
    const out = new Map<string, TableDigest>();
    for (const table of BENCH_TABLES) {
      const { rows } = await c.query<{ n: string; h: string | null; pk: boolean; ix: number }>(
        `SELECT count(*) AS n, sum(hashtextextended("bench row"::text, 0)::numeric)::text AS h,
                EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisprimary) AS pk,
                (SELECT count(*)::int FROM pg_index
                  WHERE indrelid = $1::regclass AND indisvalid AND indisready) AS ix
           FROM ${table} AS "bench row"`,
        [table],
      );
      const r = rows[0]!;
      out.set(table, { rows: Number(r.n), hash: r.h ?? '0', primaryKey: r.pk, indexes: r.ix });
    }
    return out;
  });
}
