// Reverse replication and rollback: a daemon started with --reverse-after-cutover is cut over
// through its API while the application writes on the source, then the application writes on the
// new side (inserts, updates that fire a user trigger, a parent and its child in one transaction)
// while the daemon replays those writes into the old source; POST /rollback under that live load
// freezes the new side, and afterwards the old source equals the new one, takes writes again with
// its foreign key and trigger back, and the run replicates forward again. Also: the same with the
// daemon stopped (`migrate --cutover-when-synced --reverse-after-cutover`, then `pgferry
// rollback`), `pgferry reverse` refusing a run whose new side took writes before its capture, and
// cleanup removing the capture from both sides.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';
import { appGrants, WORKLOAD_SCHEMA } from '../support/workload.js';

const OWNER_PW = 'owner-pw-rev';
const WRITER_PW = 'writer-pw-rev';
const TOKEN = 'reverse-test-token-0123456789abcdef';

const EXTRA_SCHEMA = `
CREATE TABLE regions (code text PRIMARY KEY);
INSERT INTO regions VALUES ('eu'), ('us');
CREATE TABLE stores (id int PRIMARY KEY, region text NOT NULL REFERENCES regions (code));
INSERT INTO stores SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 50) g;
-- Fires on the rows replay writes (it deletes and inserts): must not fire twice for one store.
CREATE TABLE store_log (id bigserial PRIMARY KEY, store int NOT NULL);
CREATE FUNCTION log_store() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO store_log (store) VALUES (NEW.id); RETURN NULL; END $$;
CREATE TRIGGER stores_log AFTER INSERT ON stores FOR EACH ROW EXECUTE FUNCTION log_store();
`;

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-reverse-'));
  await source.query(
    `CREATE ROLE app_owner LOGIN PASSWORD '${OWNER_PW}' NOSUPERUSER;
     CREATE ROLE app_writer LOGIN PASSWORD '${WRITER_PW}' NOSUPERUSER;
     GRANT pg_signal_backend TO app_owner;`,
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function prepare(db: string) {
  await source.query(`CREATE DATABASE ${db} OWNER app_owner`);
  await source.query('ALTER SCHEMA public OWNER TO app_owner', [], db);
  const owner = source.url({ db, user: 'app_owner', password: OWNER_PW });
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
    newSide: target.url({ db }),
  };
}

/** An application writing until stopped, reconnecting after a refusal (a freeze) as an application would. */
function startWriter(url: string, tag: string) {
  let running = true;
  let accepted = 0;
  let n = 0;
  const loop = (async () => {
    while (running) {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      try {
        await c.connect();
        while (running) {
          n++;
          await c.query('BEGIN');
          await c.query(`INSERT INTO kv VALUES ($1, 'w', NULL)`, [`${tag}${n}`]);
          // Fires accounts_audit: the trigger's row is replicated, and must not be written twice.
          await c.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [1 + (n % 5000)]);
          // A parent and its child: the reverse replay applies tables in any order.
          await c.query(`INSERT INTO regions VALUES ($1)`, [`${tag}r${n}`]);
          await c.query(`INSERT INTO stores VALUES ($1, $2)`, [
            100_000 + n * 10 + (tag === 'n' ? 1 : 2),
            `${tag}r${n}`,
          ]);
          await c.query('DELETE FROM kv WHERE k = $1', [`k${n}`]);
          await c.query('COMMIT');
          accepted++;
        }
      } catch {
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
      return accepted;
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: API answers read loosely, checked field by field
type Json = Record<string, any>;

const api = (port: number) => {
  const base = `http://127.0.0.1:${port}`;
  return {
    status: async () => (await (await fetch(`${base}/status`)).json()) as Json,
    metrics: async () => (await fetch(`${base}/metrics`)).text(),
    post: async (what: string, body: unknown = {}) => {
      const res = await fetch(`${base}/${what}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Json };
    },
    operation: async (id: string) =>
      (
        (await (
          await fetch(`${base}/operations/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })
        ).json()) as { operation: Json }
      ).operation,
  };
};

async function settled(a: ReturnType<typeof api>, id: string) {
  let op: Json = {};
  await waitFor(
    `operation ${id}`,
    async () => {
      op = await a.operation(id);
      return op.state !== 'running';
    },
    180_000,
  );
  return op;
}

async function expectEqual(db: string) {
  const cmp = await compareDatabases(source.url({ db }), target.url({ db }));
  expect(cmp.target).toEqual(cmp.source);
}

/** Rows in the run's forward change logs on the source. */
async function forwardLogRows(db: string): Promise<number> {
  const logs = await source.query<{ t: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'pgferry' AND c.relname LIKE 'log\\_%' AND c.relkind = 'r'`,
    [],
    db,
  );
  expect(logs.length).toBeGreaterThan(0);
  let n = 0;
  for (const l of logs)
    n += Number((await source.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${l.t}`, [], db))[0]?.n);
  return n;
}

describe('reverse replication and rollback', () => {
  it('a daemon cut over with --reverse-after-cutover keeps the old source current and rolls back under load', async () => {
    const { owner, writer, newSide } = await prepare('rev_daemon');
    const state = path.join(dir, 'daemon.sqlite');
    const port = await freePort();
    const a = api(port);
    const daemon = startCli(
      [
        'migrate',
        '--source',
        owner,
        '--target',
        newSide,
        '--state',
        state,
        '--http',
        `127.0.0.1:${port}`,
        '--jobs',
        '2',
        '--reverse-after-cutover',
      ],
      { PGFERRY_API_TOKEN: TOKEN },
    );
    const oldApp = startWriter(writer, 'o');
    try {
      await waitFor(
        'replicating',
        async () => (await a.status().catch(() => ({}) as Json)).phase === 'replicating',
        120_000,
      );
      // 409 until the replay loop runs (after the first catch-up).
      const cut = await waitFor(
        'cutover accepted',
        async () => {
          const r = await a.post('cutover', { freeze: 'readonly' });
          return r.status === 202 && r;
        },
        120_000,
        200,
      );
      const cutover = await settled(a, cut.body.operation.id);
      expect(cutover.error).toBeNull();
      expect(cutover.state).toBe('succeeded');
      await oldApp.stop();
      const afterCutover = await a.status();
      expect(afterCutover.phase).toBe('done');
      expect(afterCutover.reverse.installedAt).not.toBeNull();

      // The application moves to the new side; the daemon replays its writes into the old source.
      const newApp = startWriter(newSide, 'n');
      await waitFor('new-side writes', async () => newApp.accepted() > 200, 60_000);
      await waitFor(
        'reverse replay',
        async () => ((await a.status()).reverse?.replay?.appliedTotal ?? 0) > 100,
        60_000,
      );
      expect(await a.metrics()).toMatch(/^pgferry_reverse_lag_seconds \d/m);
      expect(await a.metrics()).toMatch(/^pgferry_reverse_backlog_changes \d/m);
      // The old source is still frozen for the application.
      await expect(
        source.query(`INSERT INTO kv VALUES ('refused', 'x', NULL)`, [], 'rev_daemon'),
      ).rejects.toThrow(/read-only/);

      // Roll back while the application still writes on the new side.
      const rb = await a.post('rollback', {});
      expect(rb.status).toBe(202);
      const rolled = await settled(a, rb.body.operation.id);
      expect(rolled.error).toBeNull();
      expect(rolled.result.downtimeSeconds).toBeGreaterThan(0);
      expect(rolled.result.verify.equal).toBe(true);
      const accepted = await newApp.stop();
      expect(accepted).toBeGreaterThan(200);

      await expectEqual('rev_daemon');
      // The old source takes writes again, with its foreign key and trigger back and valid.
      const c = new pg.Client({ connectionString: writer });
      await c.connect();
      await c.query(`INSERT INTO kv VALUES ('back-on-old', 'x', NULL)`);
      await expect(c.query(`INSERT INTO stores VALUES (999999, 'nowhere')`)).rejects.toThrow(/foreign key/);
      await c.end();
      const [trigger] = await source.query<{ enabled: string }>(
        `SELECT tgenabled::text AS enabled FROM pg_trigger WHERE tgname = 'stores_log'`,
        [],
        'rev_daemon',
      );
      expect(trigger?.enabled).toBe('O');
      const [fk] = await source.query<{ valid: boolean }>(
        `SELECT convalidated AS valid FROM pg_constraint WHERE conrelid = 'stores'::regclass AND contype = 'f'`,
        [],
        'rev_daemon',
      );
      expect(fk?.valid).toBe(true);
      // The new side is frozen for the application now.
      await expect(
        target.query(`INSERT INTO kv VALUES ('refused-new', 'x', NULL)`, [], 'rev_daemon'),
      ).rejects.toThrow(/read-only/);
      // And the run goes forward again: a write on the old source reaches the new side.
      await waitFor('forward again', async () => (await a.status()).phase === 'replicating', 60_000);
      await waitFor(
        'forward replay of a write made after the rollback',
        async () =>
          (await target.query(`SELECT 1 FROM kv WHERE k = 'back-on-old'`, [], 'rev_daemon')).length === 1,
        60_000,
      );
      // The new side's reverse capture is gone, its run mark back.
      const objects = await target.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'pgferry\\_%'`,
        [],
        'rev_daemon',
      );
      expect(objects[0]?.n).toBe(0);
      expect((await a.status()).reverse.rollback.step).toBe('done');
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- daemon stderr ---\n${daemon.output().stderr.slice(-4000)}`,
      );
    } finally {
      await oldApp.stop();
      daemon.child.kill('SIGTERM');
    }
    const done = await daemon.done;
    expect(done.code, done.stderr.slice(-3000)).toBe(0);
    const cleaned = await runCli(['cleanup', '--source', owner, '--target', newSide]);
    expect(cleaned.code, cleaned.stderr).toBe(0);
  }, 300_000);

  it('with the daemon stopped: migrate --cutover-when-synced --reverse-after-cutover, writes on the new side, pgferry rollback', async () => {
    const { owner, writer, newSide } = await prepare('rev_cli');
    const state = path.join(dir, 'cli.sqlite');
    const oldApp = startWriter(writer, 'o');
    const cut = await runCli([
      'migrate',
      '--source',
      owner,
      '--target',
      newSide,
      '--state',
      state,
      '--jobs',
      '2',
      '--cutover-when-synced',
      '--reverse-after-cutover',
      '--json',
    ]);
    await oldApp.stop();
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    // Writes on the new side with nothing replaying them: the rollback drains them all.
    const newApp = startWriter(newSide, 'n');
    await waitFor('new-side writes', async () => newApp.accepted() > 100, 60_000);
    const status = await runCli(['status', '--state', state, '--json']);
    expect(JSON.parse(status.stdout).reverse.installedAt).not.toBeNull();
    // A rollback with --freeze revoke is refused before anything is frozen.
    const revoke = await runCli([
      'rollback',
      '--source',
      owner,
      '--target',
      newSide,
      '--state',
      state,
      '--freeze',
      'revoke',
    ]);
    expect(revoke.code).toBe(1);
    expect(revoke.stderr).toMatch(/PGFERRY_ROLLBACK_REFUSED/);
    // Killed after the drain, then after the old source took its writes back: each run again completes it.
    // No --force: the backlog waiting since the cutover is caught up before the lag is checked.
    const rollbackArgs = ['rollback', '--source', owner, '--target', newSide, '--state', state];
    for (const step of ['drained', 'source ready']) {
      // PGFERRY_FREEZE=revoke is the cutover's: without --freeze, the rollback freezes readonly.
      const crashed = await runCli(rollbackArgs, {
        PGFERRY_TEST_CRASH_AT: `rollback:${step}`,
        PGFERRY_FREEZE: 'revoke',
      });
      expect(crashed.code, crashed.stderr.slice(-2000)).not.toBe(0);
      const st = JSON.parse((await runCli(['status', '--state', state, '--json'])).stdout);
      expect(st.reverse.rollback.step).toBe(step);
    }
    // The old source has its writes back: a restarted daemon must not replay into it meanwhile.
    const daemon = await runCli(['reverse', '--source', owner, '--target', newSide, '--state', state]);
    expect(daemon.code).toBe(1);
    expect(daemon.stderr).toMatch(/PGFERRY_ROLLBACK_REFUSED.*interrupted/);
    const rb = await runCli([...rollbackArgs, '--json']);
    await newApp.stop();
    expect(rb.code, rb.stderr.slice(-3000)).toBe(0);
    const result = JSON.parse(rb.stdout).rollback;
    expect(result.completedInterrupted).toBe(true);
    await expectEqual('rev_cli');
    // No echo: what the reverse replay wrote into the old source is not in its forward log.
    expect(await forwardLogRows('rev_cli')).toBe(0);
    // The run replicates forward again, then cuts over again (the new side gets its writes back).
    const c = new pg.Client({ connectionString: writer });
    await c.connect();
    await c.query(`INSERT INTO kv VALUES ('second-round', 'x', NULL)`);
    await c.end();
    const again = await runCli([
      'migrate',
      '--source',
      owner,
      '--target',
      newSide,
      '--state',
      state,
      '--jobs',
      '2',
      '--cutover-when-synced',
    ]);
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    await expectEqual('rev_cli');
    await target.query(`INSERT INTO kv VALUES ('new-side-writable-again', 'x', NULL)`, [], 'rev_cli');
  }, 300_000);

  it('pgferry reverse refuses a run whose new side took writes before its capture, and leaves nothing there', async () => {
    const { owner, newSide } = await prepare('rev_late');
    const state = path.join(dir, 'late.sqlite');
    const cut = await runCli([
      'migrate',
      '--source',
      owner,
      '--target',
      newSide,
      '--state',
      state,
      '--jobs',
      '2',
      '--cutover-when-synced',
    ]);
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    const early = await runCli(['rollback', '--source', owner, '--target', newSide, '--state', state]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/PGFERRY_ROLLBACK_REFUSED.*no reverse replication/);
    await target.query(`UPDATE accounts SET balance = balance + 1 WHERE id = 7`, [], 'rev_late');
    const reverse = await runCli(['reverse', '--source', owner, '--target', newSide, '--state', state]);
    expect(reverse.code).toBe(1);
    expect(reverse.stderr).toMatch(/PGFERRY_ROLLBACK_REFUSED.*public\.accounts/);
    const left = await target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'pgferry\\_%'`,
      [],
      'rev_late',
    );
    expect(left[0]?.n).toBe(0);
    // The old source got its foreign key and trigger back.
    const [fk] = await source.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = 'stores'::regclass AND contype = 'f'`,
      [],
      'rev_late',
    );
    expect(fk?.n).toBe(1);
  }, 300_000);
});
