// `migrate --copy-only` copies everything exactly: every built-in type family, quoted identifiers,
// keys of every shape (text keys in a collation other than the database's, split into chunks at
// sampled boundaries), generated and identity columns, partitions, materialized views, from a
// non-superuser table owner, and from PostgreSQL 14 to 17. Each scenario loads a fixture from
// test/fixtures/ into its own database, copies it with the CLI, compares a hash of every row of
// every table, and checks what a hash cannot see (sequences, partitions, matviews) by query.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
const fixture = (name: string): string => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

let stateDir: string;

beforeAll(() => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-copy-types-'));
});

afterAll(() => {
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

/** Runs SQL (one statement or a whole fixture) on a URL and returns the last result's rows. */
async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  text: string,
  params?: unknown[],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const res = await client.query<T>(text, params);
    const last = Array.isArray(res) ? (res[res.length - 1] as pg.QueryResult<T>) : res;
    return last?.rows ?? [];
  } finally {
    await client.end();
  }
}

/** Runs the same query on source and target and expects the same rows; returns them. */
async function expectSame(src: string, dst: string, text: string): Promise<pg.QueryResultRow[]> {
  const [a, b] = await Promise.all([sql(src, text), sql(dst, text)]);
  expect(b, text).toEqual(a);
  return a;
}

const outputTail = (res: CliResult): string =>
  `exit ${res.code} (${res.signal ?? 'no signal'})\n${(res.stdout + res.stderr).slice(-6000)}`;

/** `pgferry migrate --copy-only` with 2 jobs and 1 MB chunks; expects exit 0. Returns the state file. */
async function copyOnly(src: string, dst: string, name: string): Promise<string> {
  const state = path.join(stateDir, `${name}.sqlite`);
  const res = await runCli([
    'migrate',
    '--copy-only',
    '--source',
    src,
    '--target',
    dst,
    '--state',
    state,
    '--jobs',
    '2',
    '--chunk-size',
    '1MB',
  ]);
  expect(res.code, outputTail(res)).toBe(0);
  return state;
}

/** chunksTotal per table, from `pgferry status --json`. */
async function chunksPerTable(state: string): Promise<Record<string, number>> {
  const res = await runCli(['status', '--state', state, '--json']);
  expect(res.code, outputTail(res)).toBe(0);
  const report = JSON.parse(res.stdout) as {
    phase: string;
    tables: { table: string; chunksTotal: number }[];
  };
  expect(report.phase).toBe('done');
  return Object.fromEntries(report.tables.map((t) => [t.table, t.chunksTotal]));
}

/** Every row of every table hashed on both sides: the maps must be equal and hold the tables named. */
async function expectEqualRows(src: string, dst: string, tables: Record<string, number>): Promise<void> {
  const { source, target } = await compareDatabases(src, dst);
  expect(target).toEqual(source);
  for (const [table, rows] of Object.entries(tables)) expect(source[table]?.rows, table).toBe(rows);
}

/** Column names, types, collations, defaults and generation expressions of every user table. */
const COLUMNS_SQL = `
  SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
         format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
         co.collname AS collation, a.attidentity AS identity, a.attgenerated AS generated,
         pg_get_expr(d.adbin, d.adrelid) AS default
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
   ORDER BY 1, 2, a.attnum`;

/** The checks of types.sql, shared by the same-version, non-superuser and cross-version runs. */
async function expectTypesCopied(src: string, dst: string, state: string): Promise<void> {
  await expectEqualRows(src, dst, {
    'public.builtin_scalars': 50_007,
    'public.user_types': 2_003,
    'public.toasted': 3,
    'public.no_key': 4,
    'public.vehicle': 1, // its own rows: the hash reads ONLY the table, car's rows count for car
    'public.car': 2,
    'public.cache_entries': 100,
  });
  await expectSame(src, dst, COLUMNS_SQL);

  // The big table went through several chunks (its key ranges met at boundaries).
  const chunks = await chunksPerTable(state);
  expect(chunks['public.builtin_scalars']).toBeGreaterThan(1);

  // NULL and '' stay apart, through binary COPY (builtin_scalars) and text COPY (user_types).
  const nullsAndEmpties = (table: string, col: string) =>
    `SELECT id::int, ${col} IS NULL AS is_null, ${col} = '' AS is_empty FROM ${table} WHERE id IN (1, 2) ORDER BY id`;
  for (const [table, col] of [
    ['builtin_scalars', 't'],
    ['builtin_scalars', 'vc'],
    ['user_types', 't'],
    ['user_types', 'ct'],
    ['toasted', 'body'],
  ] as const) {
    const text = nullsAndEmpties(table, col);
    const expected =
      table === 'toasted'
        ? [
            { id: 1, is_null: false, is_empty: false },
            { id: 2, is_null: false, is_empty: true },
          ]
        : [
            { id: 1, is_null: true, is_empty: null },
            { id: 2, is_null: false, is_empty: true },
          ];
    expect(await sql(dst, text), text).toEqual(expected);
  }
  const counts = await expectSame(
    src,
    dst,
    `SELECT (SELECT count(*)::int FROM builtin_scalars WHERE t = '') AS scalar_empty,
            (SELECT count(*)::int FROM builtin_scalars WHERE t IS NULL) AS scalar_null,
            (SELECT count(*)::int FROM user_types WHERE ct = '') AS user_empty,
            (SELECT count(*)::int FROM user_types WHERE ct IS NULL) AS user_null`,
  );
  expect(counts[0]).toEqual({ scalar_empty: 5_001, scalar_null: 5_005, user_empty: 201, user_null: 201 });

  // The values a text round trip would most likely bend, read back on the target.
  const [edge] = await sql(
    dst,
    `SELECT f4::text AS f4, f8::text AS f8, num::text AS num, d::text AS d, ts::text AS ts, tstz::text AS tstz,
            js::text AS js, jb::text AS jb, encode(by, 'hex') AS by, ta::text AS ta, ia::text AS ia, fa::text AS fa
       FROM builtin_scalars WHERE id = 3`,
  );
  expect(edge).toEqual({
    f4: '-0',
    f8: '-0',
    num: 'NaN',
    d: 'infinity',
    ts: 'infinity',
    tstz: '-infinity',
    js: '{"b": 1, "a": 2, "a": 3,   "z": [1, 2.50, null]}',
    jb: 'null',
    by: '0000ff00deadbeef00',
    ta: '{NULL,"NULL","","a,b","{}","\\\\","quo\\"te"," padded "}',
    ia: '[0:2]={1,NULL,3}',
    fa: '{NaN,Infinity,-Infinity,-0,0,1.5e-300}',
  });
  const [infinities] = await sql(
    dst,
    `SELECT f4::text AS f4, f8::text AS f8, num::text AS num, m2::text AS m2,
            (SELECT length(num::text) FROM builtin_scalars WHERE id = 6) AS long_numeric
       FROM builtin_scalars WHERE id = 4`,
  );
  expect(infinities).toEqual({
    f4: 'Infinity',
    f8: 'Infinity',
    num: 'Infinity',
    m2: '[-3:-2][5:7]={{1,2,3},{4,5,6}}',
    long_numeric: 1000 + 1 + 16383,
  });
  await expectSame(
    src,
    dst,
    `SELECT id, m, ma, doma, em, pr, pra, ns, fr, i4mr, fmr, h, ha, cta FROM user_types WHERE id IN (2, 3, 100) ORDER BY id`,
  );
  // Extension types still behave as such on the target (citext compares without case, hstore looks up).
  expect(
    await sql(
      dst,
      `SELECT ct = 'CITEXT 105' AS citext, h -> 'k105' AS hstore FROM user_types WHERE id = 105`,
    ),
  ).toEqual([{ citext: true, hstore: '105' }]);

  // The 10 MB value, byte for byte.
  const toast = await expectSame(
    src,
    dst,
    `SELECT length(body) AS len, md5(body) AS md5, octet_length(blob) AS blob_len, md5(blob) AS blob_md5
       FROM toasted WHERE id = 1`,
  );
  expect(toast[0]?.len).toBeGreaterThanOrEqual(10 * 1024 * 1024);
  expect(toast[0]?.blob_len).toBe(1_048_578);
}

describe('migrate --copy-only, PostgreSQL 15 to 15', () => {
  let source: Cluster;
  let target: Cluster;
  /** Creates the database on both sides; returns superuser URLs. */
  const databases = async (db: string, owner?: string) => {
    await Promise.all([
      source.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}${owner ? ` OWNER ${owner}` : ''}`),
      target.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}`),
    ]);
    return { src: source.url({ db }), dst: target.url({ db }) };
  };

  beforeAll(async () => {
    [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  });

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('copies every built-in type family exactly, the big table in several chunks', async () => {
    const { src, dst } = await databases('types');
    await sql(src, fixture('types.sql'));
    const state = await copyOnly(src, dst, 'types-15');
    await expectTypesCopied(src, dst, state);
  });

  it('copies quoted identifiers and text keys in an ICU collation without losing rows at chunk boundaries', async () => {
    const { src, dst } = await databases('identifiers');
    await sql(src, fixture('identifiers.sql'));
    // The keys' order really differs between the column's collation and the database's.
    const [order] = await sql(
      src,
      `SELECT array_agg(v ORDER BY v COLLATE "en-x-icu")::text AS icu, array_agg(v ORDER BY v COLLATE "C")::text AS c
         FROM unnest(ARRAY['a', 'B', 'b', 'A', '_x', 'é']) v`,
    );
    expect(order).toEqual({ icu: '{_x,a,A,b,B,é}', c: '{A,B,_x,a,b,é}' });

    const state = await copyOnly(src, dst, 'identifiers');
    const collated = 'Ünïcode "Schema" Ø.Collated Keys "🚢"';
    await expectEqualRows(src, dst, {
      [collated]: 100_000,
      'sales.Order Lines': 100_000,
      'sales.customers': 2_000,
      'UPPER.MixedCase': 3_000,
      'public.t': 500,
      'public.x': 500,
      'public.r': 500,
      'public.order': 3,
      'public.a_table_name_that_is_exactly_sixty_three_bytes_long_0123456789a': 10,
    });
    await expectSame(src, dst, COLUMNS_SQL);
    const chunks = await chunksPerTable(state);
    expect(chunks[collated]).toBeGreaterThan(1);
    expect(chunks['sales.Order Lines']).toBeGreaterThan(1);

    // Every key once, in the key's own collation on the target too.
    expect(
      await sql(
        dst,
        `SELECT count(*)::int AS n, count(DISTINCT "Schlüssel")::int AS keys,
                (SELECT count(*)::int FROM sales."Order Lines") AS lines
           FROM "Ünïcode ""Schema"" Ø"."Collated Keys ""🚢"""`,
      ),
    ).toEqual([{ n: 100_000, keys: 100_000, lines: 100_000 }]);
    await expectSame(
      src,
      dst,
      `SELECT conrelid::regclass::text AS table, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE contype = 'p' ORDER BY 1`,
    );
  });

  it('recomputes generated columns, keeps identity values exactly and continues the sequences', async () => {
    const { src, dst } = await databases('generated');
    await sql(src, fixture('generated.sql'));
    await copyOnly(src, dst, 'generated');
    await expectEqualRows(src, dst, {
      'public.invoice_lines': 3_336,
      'audit.Log Entries': 60,
      'public.squares': 11,
    });
    await expectSame(src, dst, COLUMNS_SQL);
    const sequences = await expectSame(
      src,
      dst,
      `SELECT schemaname, sequencename, last_value::text, increment_by::text
         FROM pg_sequences ORDER BY 1, 2`,
    );
    expect(sequences).toHaveLength(3);

    // A row inserted on the target without a value takes the source's next value, after its max.
    const [max] = await sql<{ max: string }>(src, 'SELECT max(id)::text AS max FROM invoice_lines');
    const [inserted] = await sql<{ id: string; total: string; label_upper: string }>(
      dst,
      `INSERT INTO invoice_lines (price, qty, label, created) VALUES (2.5, 4, 'new', '2025-01-01')
       RETURNING id::text, total::text, label_upper`,
    );
    expect(BigInt(inserted!.id)).toBe(BigInt(max!.max) + 7n);
    expect(inserted).toMatchObject({ total: '10.00', label_upper: 'NEW' });
    const [audit] = await sql(
      dst,
      `INSERT INTO audit."Log Entries" ("Key", a, b) VALUES ('new', 1, 2) RETURNING seq, n, "a+b", summary`,
    );
    expect(audit).toEqual({ seq: -77, n: 61, 'a+b': 3, summary: 'new:1' });
  });

  it('copies partitioned tables, every row into the same partition', async () => {
    const { src, dst } = await databases('partitions');
    await sql(src, fixture('partitions.sql'));
    await copyOnly(src, dst, 'partitions');
    await expectEqualRows(src, dst, { 'billing.events': 20_000, 'public.accounts': 5_000 });
    await expectSame(
      src,
      dst,
      `SELECT c.oid::regclass::text AS partition, pg_get_expr(c.relpartbound, c.oid) AS bound
         FROM pg_class c WHERE c.relispartition AND c.relkind IN ('r', 'p') ORDER BY 1`,
    );
    const parts = await expectSame(
      src,
      dst,
      `SELECT tableoid::regclass::text AS partition, count(*)::int AS n,
              md5(string_agg(id::text || '/' || happened || '/' || kind, ',' ORDER BY id)) AS hash
         FROM billing.events GROUP BY 1
       UNION ALL
       SELECT tableoid::regclass::text, count(*)::int, md5(string_agg(region || '/' || id, ',' ORDER BY id))
         FROM public.accounts GROUP BY 1
       ORDER BY 1`,
    );
    expect(parts.map((p) => p.partition)).toEqual([
      'accounts_eu',
      'accounts_us',
      'archive.accounts_other',
      'archive.events_old',
      'billing."Events Default"',
      'billing."events_2024 other"',
      'billing.events_2023',
      'billing.events_2024_click',
    ]);
    // The keys declared on the partitioned tables exist on the target and hold.
    await expectSame(
      src,
      dst,
      `SELECT conrelid::regclass::text AS table, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE contype = 'p' AND conrelid IN ('billing.events'::regclass, 'accounts'::regclass)
        ORDER BY 1`,
    );
    await expect(sql(dst, `INSERT INTO public.accounts VALUES ('apac', 3, 'again')`)).rejects.toMatchObject({
      code: '23505',
    });
  });

  it('leaves materialized views populated on the target', async () => {
    const { src, dst } = await databases('matviews');
    await sql(src, fixture('matviews.sql'));
    await copyOnly(src, dst, 'matviews');
    await expectEqualRows(src, dst, { 'public.sales': 20_000 });
    expect(
      await sql(dst, `SELECT relname, relispopulated FROM pg_class WHERE relkind = 'm' ORDER BY relname`),
    ).toEqual([
      { relname: 'Monthly Totals', relispopulated: true },
      { relname: 'sales_by_region', relispopulated: true },
      { relname: 'top_region', relispopulated: true },
    ]);
    const byRegion = await expectSame(src, dst, 'SELECT * FROM sales_by_region ORDER BY region');
    expect(byRegion).toHaveLength(4);
    await expectSame(src, dst, 'SELECT * FROM top_region');
    await expectSame(src, dst, 'SELECT * FROM "Reports"."Monthly Totals" ORDER BY month');
  });

  it('copies from a non-superuser table owner (as on Heroku)', async () => {
    await source.query(`CREATE ROLE app_owner LOGIN PASSWORD 'x' NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    const { dst } = await databases('owned', 'app_owner');
    const src = source.url({ db: 'owned', user: 'app_owner', password: 'x' });
    // The owner creates the (trusted) extensions and every table itself.
    await sql(src, fixture('types.sql'));
    expect(
      await sql(
        src,
        `SELECT r.rolsuper, r.rolreplication, r.rolbypassrls,
                (SELECT array_agg(DISTINCT tableowner::text) FROM pg_tables WHERE schemaname = 'public') AS owners
           FROM pg_roles r WHERE r.rolname = current_user`,
      ),
    ).toEqual([{ rolsuper: false, rolreplication: false, rolbypassrls: false, owners: ['app_owner'] }]);
    const state = await copyOnly(src, dst, 'owned');
    await expectTypesCopied(src, dst, state);
  });
  it('refuses to copy a table whose rows row-level security hides from the source role', async () => {
    await source.query(`CREATE ROLE tenant_owner LOGIN PASSWORD 'y' NOSUPERUSER`);
    const { dst } = await databases('rls', 'tenant_owner');
    const src = source.url({ db: 'rls', user: 'tenant_owner', password: 'y' });
    await sql(
      src,
      `CREATE TABLE tenant_rows (id integer PRIMARY KEY, tenant text NOT NULL);
       INSERT INTO tenant_rows SELECT g, 't' || g % 3 FROM generate_series(1, 300) g;
       ALTER TABLE tenant_rows ENABLE ROW LEVEL SECURITY;
       ALTER TABLE tenant_rows FORCE ROW LEVEL SECURITY;
       CREATE POLICY only_t0 ON tenant_rows USING (tenant = 't0');`,
    );
    const res = await runCli([
      'migrate',
      '--copy-only',
      '--source',
      src,
      '--target',
      dst,
      '--state',
      path.join(stateDir, 'rls.sqlite'),
    ]);
    // FORCE ROW LEVEL SECURITY applies to the owner too: the role sees 100 of the 300 rows. Exit 0
    // with those would be a silent loss; pgferry must stop and say why.
    expect(res.code, outputTail(res)).not.toBe(0);
    expect(res.stderr).toMatch(/row-level security/);
    expect(res.stderr).toContain('tenant_rows');
  });

  it('copies dates, intervals and floats exactly whatever output styles the databases set', async () => {
    const { src, dst } = await databases('styles');
    await sql(src, fixture('styles.sql'));
    await source.query(
      `ALTER DATABASE styles SET DateStyle = 'SQL, DMY';
       ALTER DATABASE styles SET IntervalStyle = 'sql_standard';
       ALTER DATABASE styles SET TimeZone = 'Pacific/Chatham';
       ALTER DATABASE styles SET extra_float_digits = -3;
       ALTER DATABASE styles SET bytea_output = 'escape';`,
    );
    await target.query(
      `ALTER DATABASE styles SET DateStyle = 'Postgres, MDY';
       ALTER DATABASE styles SET TimeZone = 'America/St_Johns';`,
    );
    await copyOnly(src, dst, 'styles');
    // Compared under the servers' defaults: the values, not how each database prints them.
    await Promise.all([
      source.query('ALTER DATABASE styles RESET ALL'),
      target.query('ALTER DATABASE styles RESET ALL'),
    ]);
    const values = await expectSame(
      src,
      dst,
      `SELECT id, d::text, ts::text, iv::text, f8::text, f4::text, dr::text FROM styled_text
        WHERE id IN (1, 3) ORDER BY id`,
    );
    expect(values[0]).toMatchObject({ d: '2024-01-02', iv: '-1 days -00:00:37.5' });
    expect(values[1]).toMatchObject({ f8: '0.3333333333333333', f4: '0.33333334' });
    await expectEqualRows(src, dst, { 'public.styled_text': 1_000, 'public.styled_binary': 1_000 });
  });
});

describe('migrate --copy-only, PostgreSQL 14 to 17', () => {
  let source: Cluster;
  let target: Cluster;

  beforeAll(async () => {
    [source, target] = await Promise.all([startCluster(14), startCluster(17)]);
  });

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  it('copies every built-in type family exactly across major versions', async () => {
    await Promise.all([source.query('CREATE DATABASE types'), target.query('CREATE DATABASE types')]);
    const src = source.url({ db: 'types' });
    const dst = target.url({ db: 'types' });
    await sql(src, fixture('types.sql'));
    const state = await copyOnly(src, dst, 'types-14-17');
    await expectTypesCopied(src, dst, state);
  });
});
