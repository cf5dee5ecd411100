// A hash of every row of every user table, to compare source and target. Rows are hashed from
// their text form and ordered by that hash, so tables without a key compare too. The whole-row
// reference uses an alias no column can have (a column named like the alias would shadow it).
import pg from 'pg';

export interface TableHash {
  rows: number;
  hash: string;
}

export async function tableHashes(
  url: string,
  opts: { schemas?: string[] } = {},
): Promise<Map<string, TableHash>> {
  // Fixed output formats: the text form of a row must not depend on the database's settings.
  const client = new pg.Client({
    connectionString: url,
    options: '-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC',
  });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ schema: string; name: string; kind: string }>(
      `SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname !~ '^pg_'
          AND ($1::text[] IS NULL OR n.nspname = ANY($1))
        ORDER BY 1, 2`,
      [opts.schemas ?? null],
    );
    const out = new Map<string, TableHash>();
    for (const t of tables) {
      const name = `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)}`;
      const { rows } = await client.query<{ n: string; h: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(h, '' ORDER BY h)) AS h
           FROM (SELECT md5("pgferry whole row"::text) AS h FROM ${t.kind === 'p' ? '' : 'ONLY '}${name} AS "pgferry whole row") s`,
      );
      out.set(`${t.schema}.${t.name}`, { rows: Number(rows[0]!.n), hash: rows[0]!.h ?? 'empty' });
    }
    return out;
  } finally {
    await client.end();
  }
}

/** Source and target hashes as plain objects, for one readable `expect(...).toEqual(...)`. */
export async function compareDatabases(
  sourceUrl: string,
  targetUrl: string,
  opts: { schemas?: string[] } = {},
) {
  const [s, t] = await Promise.all([tableHashes(sourceUrl, opts), tableHashes(targetUrl, opts)]);
  return { source: Object.fromEntries(s), target: Object.fromEntries(t) };
}
