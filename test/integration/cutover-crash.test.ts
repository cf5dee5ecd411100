// Issue 10, findings 4 to 6: a cutover that no crash or role setup can break.
// - kill -9 at each step of a cutover: status shows the interrupted cutover, a plain migrate
//   refuses to go on, `cutover --abort` gives the writes back exactly as they were, and the cutover
//   run again (a fresh process, whose sessions start after a readonly freeze) completes;
// - --freeze revoke ends the sessions of a group role's members, and waits for a transaction that
//   was writing at the freeze: a write that commits on the source is on the target or was refused.
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { CUTOVER_STEPS } from '../../engine/cutover/freeze-record.js';
import { runCli, startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const WRITER_PW = 'writer-pw-crash';
const MEMBER_PW = 'member-pw-crash';

const SCHEMA = `
CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric NOT NULL DEFAULT 0);
INSERT INTO accounts SELECT g, g FROM generate_series(1, 2000) g;
CREATE TABLE kv (k text PRIMARY KEY, v text);
CREATE TABLE regions (code text PRIMARY KEY);
INSERT INTO regions VALUES ('eu'), ('us');
CREATE TABLE stores (id int PRIMARY KEY, region text NOT NULL REFERENCES regions (code));
INSERT INTO stores SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 20) g;
CREATE SEQUENCE invoice_no START 1000;
CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM accounts;
-- A user trigger: on the target it must exist after the cutover, and never fire during replay.
CREATE TABLE audit (id bigserial PRIMARY KEY, k text NOT NULL);
CREATE FUNCTION audit_kv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (k) VALUES (NEW.k); RETURN NULL; END $$;
CREATE TRIGGER kv_audit AFTER INSERT ON kv FOR EACH ROW EXECUTE FUNCTION audit_kv();
GRANT USAGE ON SCHEMA public TO app_rw;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_rw;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO app_rw;
`;

const pair = clusterPair({ name: 'cutover-crash', db: 'crash_base' });

let prepared = false;
async function prepare(db: string) {
  if (!prepared) {
    // The application logs in as a member of a group role that holds the grants (no grant of its own).
    await pair.source.query(
      `CREATE ROLE app_rw NOLOGIN;
       CREATE ROLE app_writer LOGIN PASSWORD '${WRITER_PW}' IN ROLE app_rw;
       CREATE ROLE app_member LOGIN PASSWORD '${MEMBER_PW}' IN ROLE app_rw;`,
    );
    prepared = true;
  }
  await pair.source.query(`CREATE DATABASE ${db}`);
  await pair.source.query(SCHEMA, [], db);
  await pair.target.query(`CREATE DATABASE ${db}`);
  const state = path.join(pair.dir, `${db}.sqlite`);
  const base = ['--source', pair.source.url({ db }), '--target', pair.target.url({ db }), '--state', state];
  const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
  expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
  return {
    base,
    state,
    writer: pair.source.url({ db, user: 'app_writer', password: WRITER_PW }),
    member: pair.source.url({ db, user: 'app_member', password: MEMBER_PW }),
  };
}

async function canWrite(url: string, key: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    await c.query('INSERT INTO kv VALUES ($1, $2)', [key, 'x']);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? 'error';
  } finally {
    await c.end().catch(() => {});
  }
}

async function statusJson(state: string) {
  const res = await runCli(['status', '--state', state, '--json']);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as {
    phase: string;
    interruptedCutover: { freeze: string; lastStep: string; next: string } | null;
  };
}

describe('kill -9 in the middle of a cutover', () => {
  it.each(
    CUTOVER_STEPS.map((step, i) => ({
      step,
      i,
      freeze: i % 2 === 0 ? 'readonly' : 'revoke',
      abort: i % 3 !== 2,
    })),
  )('after "$step" ($freeze): status, migrate, abort, cutover again', async ({ step, i, freeze, abort }) => {
    const db = `crash_${i}`;
    const { base, state, writer } = await prepare(db);
    expect(await canWrite(writer, 'before')).toBe('ok');
    const crashed = await runCli(['cutover', '--freeze', freeze, ...base], {
      PGFERRY_TEST_CRASH_AT: `cutover:${step}`,
    });
    expect(crashed.signal, crashed.stderr.slice(-2000)).toBe('SIGKILL');

    const status = await statusJson(state);
    expect(status.interruptedCutover?.freeze).toBe(freeze);
    expect(status.interruptedCutover?.lastStep).toBe(step);
    const text = await runCli(['status', '--state', state]);
    expect(text.stdout).toContain('CUTOVER INTERRUPTED');

    // A plain migrate would replicate while the application cannot write: it refuses, naming both ways out.
    const plain = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain('PGFERRY_CUTOVER_INTERRUPTED');
    expect(plain.stderr).toContain('pgferry cutover');

    const pastNoReturn = step === 'target ready';
    if (abort) {
      const undo = await runCli(['cutover', '--abort', ...base]);
      if (pastNoReturn) {
        expect(undo.code).toBe(1);
        expect(undo.stderr).toContain('PGFERRY_CUTOVER_REFUSED');
      } else {
        expect(undo.code, undo.stderr.slice(-2000)).toBe(0);
        expect(undo.stdout).toContain('cutover aborted');
        expect(await canWrite(writer, `after-abort-${i}`)).toBe('ok');
        expect((await statusJson(state)).interruptedCutover).toBeNull();
        // Replication goes on with the write made after the abort.
        const resumed = await runCli(['migrate', '--exit-when-synced', ...base]);
        expect(resumed.code, resumed.stderr.slice(-2000)).toBe(0);
      }
    }
    const finish = await runCli(['cutover', '--freeze', freeze, ...base]);
    expect(finish.code, finish.stderr.slice(-3000)).toBe(0);
    expect(finish.stdout).toContain('cutover done');
    expect((await statusJson(state)).phase).toBe('done');
    expect(await canWrite(writer, 'after-cutover')).toBe(freeze === 'readonly' ? '25006' : '42501');
    const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
    const trigger = await pair.target.query("SELECT 1 FROM pg_trigger WHERE tgname = 'kv_audit'", [], db);
    expect(trigger).toHaveLength(1);
    // The target is the application's now: pgferry's mark is gone.
    const mark = await pair.target.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'", [], db);
    expect(mark).toHaveLength(0);
  });

  it('a cutover started again by migrate --cutover-when-synced completes', async () => {
    const { base, state } = await prepare('crash_migrate');
    const crashed = await runCli(['cutover', '--freeze', 'readonly', ...base], {
      PGFERRY_TEST_CRASH_AT: 'cutover:drained',
    });
    expect(crashed.signal).toBe('SIGKILL');
    const res = await runCli(['migrate', '--cutover-when-synced', ...base]);
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect(res.stdout).toContain('cutover done');
    expect((await statusJson(state)).phase).toBe('done');
    const cmp = await compareDatabases(
      pair.source.url({ db: 'crash_migrate' }),
      pair.target.url({ db: 'crash_migrate' }),
    );
    expect(cmp.target).toEqual(cmp.source);
  });
});

describe('--freeze revoke and group roles', () => {
  it("ends a group role member's session whose transaction wrote before the freeze", async () => {
    const db = 'group_member';
    const { base, member } = await prepare(db);
    const app = new pg.Client({ connectionString: member });
    app.on('error', () => {});
    await app.connect();
    await app.query('BEGIN');
    await app.query("INSERT INTO kv VALUES ('open-at-freeze', 'x')");
    const cut = await runCli(['cutover', '--freeze', 'revoke', ...base]);
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    // Its COMMIT fails (the session was ended), or the row is on the target.
    const committed = await app.query('COMMIT').then(
      () => true,
      () => false,
    );
    await app.end().catch(() => {});
    const onTarget = await pair.target.query("SELECT 1 FROM kv WHERE k = 'open-at-freeze'", [], db);
    expect(onTarget.length).toBe(committed ? 1 : 0);
    const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('waits for a transaction it cannot end that was writing at the freeze, and replays its commit', async () => {
    const db = 'unendable';
    const { base, state } = await prepare(db);
    // pgferry runs as a role that may end the application's sessions but not a superuser's.
    await pair.source.query(
      `CREATE ROLE ferry LOGIN PASSWORD 'ferry-pw';
       GRANT pg_signal_backend TO ferry;
       GRANT app_rw TO ferry;
       ALTER DATABASE ${db} OWNER TO ferry;
       ALTER SCHEMA public OWNER TO ferry;
       ALTER SCHEMA pgferry OWNER TO ferry;
       GRANT ALL ON ALL TABLES IN SCHEMA public, pgferry TO ferry;
       GRANT ALL ON ALL SEQUENCES IN SCHEMA public, pgferry TO ferry;`,
      [],
      db,
    );
    for (const t of ['accounts', 'kv', 'regions', 'stores', 'invoice_no', 'totals', 'audit']) {
      await pair.source.query(`ALTER TABLE ${t} OWNER TO ferry`, [], db);
    }
    const ferryBase = [...base];
    ferryBase[1] = pair.source.url({ db, user: 'ferry', password: 'ferry-pw' });
    // A superuser's transaction writes before the freeze and commits well after it took effect.
    const admin = new pg.Client({ connectionString: pair.source.url({ db }) });
    await admin.connect();
    await admin.query('BEGIN');
    await admin.query("INSERT INTO kv VALUES ('superuser-late-commit', 'x')");
    const cut = startCli(['cutover', '--freeze', 'revoke', ...ferryBase]);
    await waitFor('the revoke', async () => {
      const rows = await pair.source.query<{ ok: boolean }>(
        "SELECT has_table_privilege('app_rw', 'kv', 'INSERT') AS ok",
        [],
        db,
      );
      return rows[0]?.ok === false;
    });
    await new Promise((r) => setTimeout(r, 1500));
    await admin.query('COMMIT');
    await admin.end();
    const res = await cut.done;
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const onTarget = await pair.target.query("SELECT 1 FROM kv WHERE k = 'superuser-late-commit'", [], db);
    expect(onTarget).toHaveLength(1);
    expect((await statusJson(state)).phase).toBe('done');
  });
});
