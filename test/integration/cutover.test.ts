// Cutover under a live workload with each freeze method: writes are refused on the source during
// the freeze; afterwards the target equals the source row for row, every sequence on the target
// is at least the source's (one owned by no column, one advanced by rolled-back nextval calls),
// materialized views are populated, foreign keys and triggers exist and are valid, and the write
// downtime is a positive number of seconds. A failure after the freeze gives the source its
// writes back and replication goes on.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { appGrants, WORKLOAD_SCHEMA } from '../support/workload.js';

const OWNER_PW = 'owner-pw-cut';
const WRITER_PW = 'writer-pw-cut';

const EXTRA_SCHEMA = `
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE regions (code text PRIMARY KEY);
INSERT INTO regions VALUES ('eu'), ('us');
CREATE TABLE stores (id int PRIMARY KEY, region text NOT NULL REFERENCES regions (code));
INSERT INTO stores SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 50) g;
CREATE MATERIALIZED VIEW balances AS SELECT count(*) AS n, sum(balance) AS total FROM accounts;
CREATE UNIQUE INDEX balances_n ON balances (n);
`;

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-cutover-'));
  await source.query(
    `CREATE ROLE app_owner LOGIN PASSWORD '${OWNER_PW}' NOSUPERUSER REPLICATION;
     CREATE ROLE app_writer LOGIN PASSWORD '${WRITER_PW}' NOSUPERUSER;
     -- --freeze readonly ends the application's sessions: with an application role other than
     -- pgferry's, that takes pg_signal_backend (on Heroku both usually share one role).
     GRANT pg_signal_backend TO app_owner;
     CREATE ROLE plain_owner LOGIN PASSWORD '${OWNER_PW}' NOSUPERUSER;`,
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function prepare(
  db: string,
  ownerRole = 'app_owner',
): Promise<{ owner: string; writer: string; targetUrl: string }> {
  await source.query(`CREATE DATABASE ${db} OWNER ${ownerRole}`);
  await source.query(`ALTER SCHEMA public OWNER TO ${ownerRole}`, [], db);
  const owner = source.url({ db, user: ownerRole, password: OWNER_PW });
  const c = new pg.Client({ connectionString: owner });
  await c.connect();
  await c.query(WORKLOAD_SCHEMA);
  await c.query(EXTRA_SCHEMA);
  await c.query(appGrants('app_writer'));
  await c.end();
  await target.query(`CREATE DATABASE ${db}`);
  return {
    owner,
    writer: source.url({ db, user: 'app_writer', password: WRITER_PW }),
    targetUrl: target.url({ db }),
  };
}

/** An application that writes until it is refused, reconnecting as an application would. */
function startWriter(url: string) {
  let running = true;
  let accepted = 0;
  let refused = 0;
  const codes = new Set<string>();
  const loop = (async () => {
    while (running) {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      try {
        await c.connect();
        while (running) {
          await c.query('BEGIN');
          await c.query(`INSERT INTO kv VALUES ('w' || gen_random_uuid(), 'w', NULL)`);
          await c.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [
            1 + Math.floor(Math.random() * 20000),
          ]);
          await c.query("SELECT nextval('invoice_no')");
          await c.query('COMMIT');
          accepted++;
        }
      } catch (err) {
        refused++;
        codes.add((err as { code?: string }).code ?? 'connection');
        await new Promise((r) => setTimeout(r, 20));
      } finally {
        await c.end().catch(() => {});
      }
    }
  })();
  return {
    accepted: () => accepted,
    async stop() {
      running = false;
      await loop;
      return { accepted, refused, codes: [...codes] };
    },
  };
}

async function checkTarget(db: string, targetUrl: string) {
  const cmp = await compareDatabases(source.url({ db }), targetUrl);
  expect(cmp.target).toEqual(cmp.source);
  // Every sequence at least the source's position.
  const seqs = await source.query<{ name: string; last_value: string }>(
    "SELECT schemaname || '.' || sequencename AS name, coalesce(last_value, 0)::text AS last_value FROM pg_sequences WHERE schemaname <> 'pgferry' ORDER BY 1",
    [],
    db,
  );
  const onTarget = new Map(
    (
      await target.query<{ name: string; last_value: string }>(
        "SELECT schemaname || '.' || sequencename AS name, coalesce(last_value, 0)::text AS last_value FROM pg_sequences",
        [],
        db,
      )
    ).map((r) => [r.name, BigInt(r.last_value)]),
  );
  expect(seqs.map((s) => s.name)).toContain('public.invoice_no');
  for (const s of seqs) expect(onTarget.get(s.name)! >= BigInt(s.last_value), s.name).toBe(true);
  const [mv] = await target.query<{ populated: boolean }>(
    "SELECT ispopulated AS populated FROM pg_matviews WHERE matviewname = 'balances'",
    [],
    db,
  );
  expect(mv?.populated).toBe(true);
  const fks = await target.query<{ name: string; valid: boolean }>(
    "SELECT conname AS name, convalidated AS valid FROM pg_constraint WHERE contype = 'f'",
    [],
    db,
  );
  expect(fks).toEqual([{ name: 'stores_region_fkey', valid: true }]);
  const trg = await target.query('SELECT 1 FROM pg_trigger WHERE tgname = $1', ['accounts_audit'], db);
  expect(trg).toHaveLength(1);
}

describe.each([
  ['readonly', 'triggers'],
  ['revoke', 'triggers'],
  ['external', 'triggers'],
  ['readonly', 'logical'],
] as const)('cutover with --freeze %s (--capture %s)', (freeze, capture) => {
  it('freezes, drains, finishes the target and reports the downtime', async () => {
    const db = `cut_${freeze}_${capture}`;
    const { owner, writer, targetUrl } = await prepare(db);
    await source.query("BEGIN; SELECT nextval('invoice_no') FROM generate_series(1, 25); ROLLBACK;", [], db);
    const app = startWriter(writer);
    const state = path.join(dir, `${db}.sqlite`);
    const run = startCli([
      'migrate',
      '--cutover-when-synced',
      '--freeze',
      freeze,
      '--capture',
      capture,
      '--settle',
      '1s',
      '--source',
      owner,
      '--target',
      targetUrl,
      '--state',
      state,
      '--jobs',
      '2',
    ]);
    let appResult: Awaited<ReturnType<typeof app.stop>> | undefined;
    if (freeze === 'external') {
      // The operator stops the application once the cutover begins.
      const deadline = Date.now() + 90_000;
      while (!run.output().stderr.includes('writes frozen on the source') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      appResult = await app.stop();
    }
    const res = await Promise.race([
      run.done,
      new Promise<never>((_, reject) =>
        setTimeout(() => {
          run.child.kill('SIGKILL');
          reject(new Error(`cutover did not finish in 60s:\n${run.output().stderr.slice(-4000)}`));
        }, 60_000),
      ),
    ]);
    appResult ??= await app.stop();
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const m = /cutover done: write downtime (\d+\.\d+)s/.exec(res.stdout);
    expect(m, res.stdout).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(appResult.accepted).toBeGreaterThan(10);
    if (freeze !== 'external') {
      // Writes were refused once frozen, and still are.
      expect(appResult.refused).toBeGreaterThan(0);
      const probe = new pg.Client({ connectionString: writer });
      await probe.connect();
      await expect(probe.query(`INSERT INTO kv VALUES ('after', 'x', NULL)`)).rejects.toMatchObject({
        code: freeze === 'readonly' ? '25006' : '42501',
      });
      await probe.end();
    }
    await checkTarget(db, targetUrl);
    const store = CheckpointStore.open(state, { create: false, readonly: true });
    try {
      expect(store.phase()).toBe('done');
      expect(Number(store.getMeta('cutover_downtime_seconds'))).toBeGreaterThan(0);
    } finally {
      store.close();
    }
  });
});

describe('a cutover that fails after the freeze', () => {
  it('names application sessions it could not end, and gives the writes back', async () => {
    const db = 'cut_noend';
    const { owner, writer, targetUrl } = await prepare(db, 'plain_owner');
    const state = path.join(dir, `${db}.sqlite`);
    const base = ['--source', owner, '--target', targetUrl, '--state', state];
    const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
    // The application writes as another role, which plain_owner may not signal.
    const app = new pg.Client({ connectionString: writer });
    await app.connect();
    try {
      const cut = await runCli(['cutover', '--freeze', 'readonly', ...base]);
      expect(cut.code).toBe(1);
      expect(cut.stderr).toContain('PGFERRY_CUTOVER_FAILED');
      expect(cut.stderr).toContain('app_writer');
      // The database is writable again, for new sessions too.
      await app.query(`INSERT INTO kv VALUES ('still-writable', 'x', NULL)`);
      const fresh = new pg.Client({ connectionString: writer });
      await fresh.connect();
      await fresh.query(`INSERT INTO kv VALUES ('new-session', 'x', NULL)`);
      await fresh.end();
    } finally {
      await app.end();
    }
  });

  it('gives the source its writes back and replication goes on', async () => {
    const db = 'cut_fail';
    const { owner, writer, targetUrl } = await prepare(db);
    const state = path.join(dir, `${db}.sqlite`);
    const base = ['--source', owner, '--target', targetUrl, '--state', state];
    const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
    // Something wrote to the target behind pgferry's back: verification after the freeze fails.
    await target.query(`INSERT INTO regions VALUES ('only-on-target')`, [], db);
    const cut = await runCli(['cutover', '--freeze', 'revoke', ...base]);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain('PGFERRY_CUTOVER_FAILED');
    expect(cut.stderr).toContain('public.regions');
    // The source takes writes again.
    const c = new pg.Client({ connectionString: writer });
    await c.connect();
    await c.query(`INSERT INTO kv VALUES ('after-failed-cutover', 'x', NULL)`);
    await c.end();
    // And replication goes on.
    await target.query(`DELETE FROM regions WHERE code = 'only-on-target'`, [], db);
    const again = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(again.code, again.stderr.slice(-2000)).toBe(0);
    const rows = await target.query("SELECT 1 FROM kv WHERE k = 'after-failed-cutover'", [], db);
    expect(rows).toHaveLength(1);
  });
});
