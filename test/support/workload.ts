// A live application workload for replay tests, written by an unprivileged application role:
// inserts, updates, deletes, key changes, delete-and-reinsert in one transaction, truncate and
// refill, rolled-back transactions, two rows swapping a UNIQUE value, bulk updates, rows moving
// between partitions, TOASTed values updated and left alone, NULL vs empty string, and one long
// transaction that takes early ids and commits last.
import pg from 'pg';

export const WORKLOAD_SCHEMA = `
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  balance numeric(14,2) NOT NULL DEFAULT 0,
  note text,
  tags text[],
  updated timestamptz DEFAULT now()
);
CREATE TABLE ledger (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL,
  amount numeric NOT NULL,
  doubled numeric GENERATED ALWAYS AS (amount * 2) STORED,
  memo text
);
CREATE TABLE kv (k text PRIMARY KEY, v text, payload jsonb);
CREATE TABLE "Odd ""Name"" ü" ("Key A" int, "key b" uuid, val bytea, PRIMARY KEY ("Key A", "key b"));
CREATE TABLE events (id bigint NOT NULL, region text NOT NULL, payload jsonb, PRIMARY KEY (id, region))
  PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
CREATE TABLE events_other PARTITION OF events DEFAULT;
CREATE TABLE audit (id bigserial PRIMARY KEY, account_id bigint, at timestamptz DEFAULT now());
CREATE FUNCTION audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (account_id) VALUES (NEW.id); RETURN NULL; END $$;
CREATE TRIGGER accounts_audit AFTER UPDATE OF balance ON accounts FOR EACH ROW EXECUTE FUNCTION audit_account();

INSERT INTO accounts (email, balance, note, tags)
  SELECT 'user' || g || '@example.com', g, CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE 'note ' || g END,
         ARRAY['t' || (g % 5), NULL]
    FROM generate_series(1, 20000) g;
INSERT INTO ledger (account_id, amount, memo)
  SELECT g % 20000 + 1, g / 7.0, CASE WHEN g % 500 = 0 THEN repeat(md5(g::text), 4000) ELSE 'm' || g END
    FROM generate_series(1, 30000) g;
INSERT INTO kv SELECT 'k' || g, 'v' || g, jsonb_build_object('g', g, 'z', 'x') FROM generate_series(1, 2000) g;
INSERT INTO "Odd ""Name"" ü" SELECT g % 50, md5(g::text)::uuid, decode(md5(g::text), 'hex') || '\\x00'::bytea
  FROM generate_series(1, 3000) g;
INSERT INTO events SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], jsonb_build_object('n', g) FROM generate_series(1, 9000) g;
ANALYZE;
`;

/** Grants an application role what a web app has: DML on every table and its sequences. */
export const appGrants = (role: string) => `
GRANT USAGE ON SCHEMA public TO ${role};
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO ${role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role};
`;

export interface Workload {
  /** Opens the long transaction (after capture is on: it would block CREATE TRIGGER otherwise). */
  startLong(): void;
  /** Stops the loops, commits the long transaction last, and reports what ran. */
  stop(): Promise<{ operations: number; errors: string[] }>;
}

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const rnd = (n: number) => 1 + Math.floor(Math.random() * n);

const OPERATIONS: ((c: pg.PoolClient) => Promise<void>)[] = [
  (c) =>
    c
      .query(
        `INSERT INTO accounts (email, balance, note) VALUES ('new' || gen_random_uuid() || '@x.org', 1, $1)`,
        [pick([null, '', 'hi'])],
      )
      .then(() => {}),
  (c) =>
    c
      .query('UPDATE accounts SET balance = balance + 1, updated = now() WHERE id = $1', [rnd(20000)])
      .then(() => {}),
  (c) => c.query('DELETE FROM accounts WHERE id = $1', [rnd(20000)]).then(() => {}),
  // A key change: the old key must disappear on the target, the new one appear.
  (c) => c.query('UPDATE accounts SET id = id + 1000000 WHERE id = $1', [rnd(20000)]).then(() => {}),
  async (c) => {
    // Delete and reinsert the same key in one transaction.
    const k = `k${rnd(2000)}`;
    await c.query('BEGIN');
    await c.query('DELETE FROM kv WHERE k = $1', [k]);
    await c.query(`INSERT INTO kv VALUES ($1, 'reborn', '{"r": true}') ON CONFLICT (k) DO NOTHING`, [k]);
    await c.query('COMMIT');
  },
  async (c) => {
    // A rolled-back transaction leaves nothing to replay.
    await c.query('BEGIN');
    await c.query(`UPDATE accounts SET note = 'rolled back' WHERE id = $1`, [rnd(20000)]);
    await c.query(`INSERT INTO kv VALUES ('rb' || random(), 'x', NULL)`);
    await c.query('ROLLBACK');
  },
  async (c) => {
    // Two rows swap a value under a UNIQUE constraint.
    const a = rnd(20000);
    const b = rnd(20000);
    if (a === b) return;
    await c.query('BEGIN');
    const { rows } = await c.query<{ id: string; email: string }>(
      'SELECT id, email FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE',
      [a, b],
    );
    if (rows.length === 2) {
      await c.query(`UPDATE accounts SET email = 'swap-' || id WHERE id = $1`, [rows[0]!.id]);
      await c.query('UPDATE accounts SET email = $1 WHERE id = $2', [rows[0]!.email, rows[1]!.id]);
      await c.query('UPDATE accounts SET email = $1 WHERE id = $2', [rows[1]!.email, rows[0]!.id]);
    }
    await c.query('COMMIT');
  },
  // A bulk update of many rows in one statement.
  (c) => c.query('UPDATE accounts SET balance = balance * 1.01 WHERE id % 97 = $1', [rnd(96)]).then(() => {}),
  // TOAST: an updated large value, and a row whose large value is left as it is.
  (c) =>
    c
      .query(`UPDATE ledger SET memo = repeat(md5(random()::text), 3000) WHERE id = $1`, [rnd(30000)])
      .then(() => {}),
  (c) => c.query('UPDATE ledger SET amount = amount + 1 WHERE id = $1', [500 * rnd(60)]).then(() => {}),
  (c) =>
    c
      .query('INSERT INTO ledger (account_id, amount, memo) VALUES ($1, 3.5, NULL)', [rnd(20000)])
      .then(() => {}),
  // A row moving between partitions.
  (c) =>
    c
      .query(`UPDATE events SET region = $2 WHERE id = $1`, [rnd(9000), pick(['eu', 'us', 'ap', 'sa'])])
      .then(() => {}),
  (c) =>
    c
      .query(`INSERT INTO events VALUES ($1, 'eu', '{}') ON CONFLICT DO NOTHING`, [9000 + rnd(100000)])
      .then(() => {}),
  (c) => c.query(`UPDATE "Odd ""Name"" ü" SET val = NULL WHERE "Key A" = $1`, [rnd(49)]).then(() => {}),
];

async function truncateAndRefill(c: pg.PoolClient): Promise<void> {
  await c.query("SET lock_timeout = '2s'");
  await c.query('BEGIN');
  await c.query('TRUNCATE kv');
  await c.query(`INSERT INTO kv SELECT 'k' || g, 'refill', NULL FROM generate_series(1, 1500) g`);
  await c.query('COMMIT');
}

/** Runs `loops` concurrent writers as the given URL's role until stop(). */
export function startWorkload(url: string, loops = 3): Workload {
  const pool = new pg.Pool({ connectionString: url, max: loops + 2 });
  pool.on('error', () => {});
  let running = true;
  let operations = 0;
  const errors: string[] = [];
  const ignorable = new Set(['23505', '40P01', '55P03', '40001']);
  const guarded = new WeakSet<pg.PoolClient>();

  // The long transaction: takes ids first, commits after everything else.
  let long: Promise<pg.PoolClient> | undefined;
  const startLong = () => {
    long ??= (async () => {
      const c = await pool.connect();
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO accounts (email, balance, note) SELECT 'early' || g || '@x.org', 7, 'early' FROM generate_series(1, 5) g`,
      );
      return c;
    })();
  };

  const loop = async (i: number) => {
    let n = 0;
    let failed = false;
    while (running) {
      let c: pg.PoolClient;
      try {
        c = await pool.connect();
        if (!guarded.has(c)) {
          // A checked-out client whose server goes away emits 'error': the query reports it.
          c.on('error', () => {});
          guarded.add(c);
        }
      } catch {
        // The server restarts (outage tests): an application retries.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      try {
        if (i === 0 && n % 150 === 149) await truncateAndRefill(c);
        else await pick(OPERATIONS)(c);
        operations++;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        const code = (err as { code?: string }).code ?? '';
        if (!ignorable.has(code)) errors.push(`${code} ${(err as Error).message}`);
        failed = true;
      } finally {
        // A session that failed may be dead (a restarted server): never back into the pool.
        c.release(failed);
        failed = false;
      }
      n++;
    }
  };
  const loopsDone = Promise.all(Array.from({ length: loops }, (_, i) => loop(i)));

  return {
    startLong,
    async stop() {
      running = false;
      await loopsDone;
      if (long) {
        const c = await long;
        await c.query('COMMIT');
        c.release();
      }
      await pool.end();
      return { operations, errors };
    },
  };
}
