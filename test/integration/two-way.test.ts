// Two-way sync: `migrate --two-way` refuses key sequences that would give both sides the same
// keys (naming the fix) and starts once they are odd/even; then, for each conflict rule, writers
// on both sides (inserts with each side's keys, updates of the same keys on both sides, a parent
// and its child, deletes cascading to children, a trigger that must fire once per row, a DEFERRABLE
// primary key that cannot arbitrate an upsert) run while the daemon replays each side into the
// other; a key changed on both sides while replay is paused ends as the rule says and is reported
// with its key; afterwards both sides are equal, both logs drain to zero and stay there (no echo).
// And kill -9 in the middle of two-way replay, restart, equal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'two-way-test-token-0123456789abcdef';

const SCHEMA = `
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, qty int NOT NULL DEFAULT 0, note text);
CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL);
CREATE TABLE orders (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), item_id bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE, n int);
CREATE TABLE item_log (id bigserial PRIMARY KEY, item_id bigint NOT NULL, side text DEFAULT current_setting('app.side', true));
CREATE FUNCTION log_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO item_log (item_id) VALUES (NEW.id); RETURN NULL; END $$;
CREATE TRIGGER items_log AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_item();
INSERT INTO items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, 2000) g;
INSERT INTO orders (item_id, n) SELECT g, g FROM generate_series(1, 2000, 3) g;
INSERT INTO kv SELECT 'k' || g, 'v' || g FROM generate_series(1, 500) g;
-- ON CONFLICT refuses a DEFERRABLE key as arbiter (55000): this table is updated, then inserted.
CREATE TABLE dkv (k int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE, v text NOT NULL);
INSERT INTO dkv SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE TABLE "Odd ""Name"" ü" ("Key A" int, "key b" text, val text, PRIMARY KEY ("Key A", "key b"));
CREATE FUNCTION "odd touch"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.val := NEW.val || '+'; RETURN NEW; END $$;
CREATE TRIGGER "Odd ""touch""" BEFORE INSERT OR UPDATE ON "Odd ""Name"" ü" FOR EACH ROW EXECUTE FUNCTION "odd touch"();
INSERT INTO "Odd ""Name"" ü" SELECT g % 7, 'b' || g, 'v' FROM generate_series(1, 300) g;
`;

/** Odd keys on the source (the fix the refusal names): pgferry gives the target the even ones. */
const ODD_SEQUENCES = `
ALTER SEQUENCE items_id_seq INCREMENT BY 2 RESTART WITH 100001;
ALTER SEQUENCE item_log_id_seq INCREMENT BY 2 RESTART WITH 100001;`;

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-two-way-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function prepare(db: string, fixSequences: boolean) {
  await source.query(`CREATE DATABASE ${db}`);
  await source.query(SCHEMA, [], db);
  if (fixSequences) await source.query(ODD_SEQUENCES, [], db);
  await target.query(`CREATE DATABASE ${db}`);
  return { src: source.url({ db }), dst: target.url({ db }) };
}

async function connectWriter(url: string, side: string): Promise<pg.Client | null> {
  const c = new pg.Client({ connectionString: url, options: `-c app.side=${side}` });
  c.on('error', () => {});
  try {
    await c.connect();
    return c;
  } catch {
    return null;
  }
}

/** An application on one side: its own new items, the shared kv keys, orders, deletes. */
function startWriter(url: string, side: 'source' | 'target') {
  let running = true;
  let done = 0;
  const errors = new Set<string>();
  const loop = (async () => {
    let c = await connectWriter(url, side);
    try {
      for (let n = 0; running; n++) {
        if (!c) c = await connectWriter(url, side);
        if (!c) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        try {
          await c.query('BEGIN');
          const { rows } = await c.query<{ id: string }>(
            `INSERT INTO items (name, qty) VALUES ($1, $2) RETURNING id`,
            [`${side} ${n}`, n],
          );
          await c.query('INSERT INTO orders (item_id, n) VALUES ($1, $2)', [rows[0]!.id, n]);
          await c.query('UPDATE kv SET v = $2 WHERE k = $1', [`k${1 + (n % 20)}`, `${side} ${n}`]);
          await c.query('UPDATE dkv SET v = $2 WHERE k = $1', [1 + (n % 50), `${side} ${n}`]);
          await c.query('INSERT INTO dkv VALUES ($1, $2)', [
            (side === 'source' ? 1_000_000 : 2_000_000) + n,
            side,
          ]);
          await c.query('UPDATE items SET qty = qty + 1, note = $2 WHERE id = $1', [1 + (n % 2000), side]);
          // A composite key with odd names, a BEFORE trigger that changes the row: it must run once.
          await c.query(`UPDATE "Odd ""Name"" ü" SET val = $3 WHERE "Key A" = $1 AND "key b" = $2`, [
            (1 + n) % 7,
            `b${1 + (n % 300)}`,
            `${side} ${n}`,
          ]);
          await c.query(`INSERT INTO "Odd ""Name"" ü" VALUES ($1, $2, 'new')`, [n % 7, `${side} ${n}`]);
          if (n % 10 === 0) await c.query('DELETE FROM items WHERE name = $1', [`${side} ${n - 5}`]);
          await c.query('COMMIT');
          done++;
        } catch (err) {
          // A server restarted under the writer ends its session (an error without a SQLSTATE, or
          // 57P01): it reconnects, as an application would. Anything else is the test's failure.
          const code = (err as { code?: string }).code;
          if (code && !code.startsWith('57P')) {
            errors.add((err as Error).message);
            await c.query('ROLLBACK').catch(() => {});
          } else {
            await c.end().catch(() => {});
            c = null;
          }
          // A broken session fails at once: the loop must still let the event loop run.
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    } finally {
      await c?.end().catch(() => {});
    }
  })();
  return {
    done: () => done,
    async stop() {
      running = false;
      await loop;
      return { done, errors: [...errors] };
    },
  };
}

const api = (port: number) => {
  const base = `http://127.0.0.1:${port}`;
  return {
    // biome-ignore lint/suspicious/noExplicitAny: API answers read loosely, checked field by field
    status: async (): Promise<Record<string, any>> => (await fetch(`${base}/status`)).json() as never,
    post: async (what: string) =>
      (
        await fetch(`${base}/${what}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: '{}',
        })
      ).status,
  };
};

/** Rows in every change log of the pgferry schema of one side. */
async function logRows(cluster: Cluster, db: string): Promise<number> {
  const logs = await cluster.query<{ t: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'pgferry' AND c.relname LIKE 'log\\_%' AND c.relkind = 'r'`,
    [],
    db,
  );
  expect(logs.length).toBeGreaterThan(0);
  let n = 0;
  for (const l of logs)
    n += (await cluster.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${l.t}`, [], db))[0]!.n;
  return n;
}

async function expectEqual(db: string) {
  const cmp = await compareDatabases(source.url({ db }), target.url({ db }));
  expect(cmp.target).toEqual(cmp.source);
}

/** Both logs empty, and still empty a while later: nothing echoes back and forth. */
async function expectQuiet(db: string) {
  await waitFor(
    'both logs drained',
    async () => (await logRows(source, db)) + (await logRows(target, db)) === 0,
    90_000,
    200,
  );
  await new Promise((r) => setTimeout(r, 2000));
  expect(await logRows(source, db)).toBe(0);
  expect(await logRows(target, db)).toBe(0);
}

function daemon(db: string, urls: { src: string; dst: string }, rule: string, port: number) {
  return startCli(
    [
      'migrate',
      '--source',
      urls.src,
      '--target',
      urls.dst,
      '--state',
      path.join(dir, `${db}.sqlite`),
      '--jobs',
      '2',
      '--http',
      `127.0.0.1:${port}`,
      '--two-way',
      '--conflict',
      rule,
    ],
    { PGFERRY_API_TOKEN: TOKEN },
  );
}

/** Until two-way has started; the run never says replicating before (the application waits for that). */
async function twoWayRunning(a: ReturnType<typeof api>) {
  await waitFor(
    'two-way running',
    async () => {
      const s = await a.status();
      const started = Boolean(s.reverse?.twoWay?.startedAt);
      if (s.phase === 'replicating' && !started) throw new Error('replicating before two-way started');
      return started && s.phase === 'replicating';
    },
    120_000,
    50,
  );
}

describe('two-way sync', () => {
  it('refuses key sequences that would give both sides the same keys, then starts once they are odd/even', async () => {
    const urls = await prepare('tw_seq', false);
    const state = path.join(dir, 'tw_seq.sqlite');
    const args = [
      'migrate',
      '--source',
      urls.src,
      '--target',
      urls.dst,
      '--state',
      state,
      '--two-way',
      '--exit-when-synced',
    ];
    const refused = await runCli(args);
    expect(refused.code, refused.stderr.slice(-2000)).toBe(1);
    expect(refused.stderr).toMatch(/PGFERRY_PREFLIGHT_PROBLEMS.*public\.items\.id/);
    expect(refused.stderr).toMatch(/INCREMENT BY 2/);
    await source.query(ODD_SEQUENCES, [], 'tw_seq');
    const ok = await runCli(args);
    expect(ok.code, ok.stderr.slice(-2000)).toBe(0);
    await expectEqual('tw_seq');
    // The target's keys are even now, and its trigger fires for the application.
    await target.query(`INSERT INTO items (name) VALUES ('on target')`, [], 'tw_seq');
    const [even] = await target.query<{ id: string }>(
      `SELECT id::text FROM items WHERE name = 'on target'`,
      [],
      'tw_seq',
    );
    expect(Number(even?.id) % 2).toBe(0);
    const logged = await target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM item_log WHERE item_id = (SELECT id FROM items WHERE name = 'on target')`,
      [],
      'tw_seq',
    );
    expect(logged[0]?.n).toBe(1);
    const cleaned = await runCli(['cleanup', '--source', urls.src, '--target', urls.dst]);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    const [def] = await source.query<{ def: string }>(
      `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgname = 'items_log'`,
      [],
      'tw_seq',
    );
    expect(def?.def).not.toMatch(/pgferry/);
  }, 300_000);

  for (const rule of ['source-wins', 'target-wins', 'latest'] as const) {
    it(`writers on both sides, same keys included, --conflict ${rule}: both sides end equal, conflicts reported, no echo`, async () => {
      const db = `tw_${rule.replace('-', '_')}`;
      const urls = await prepare(db, true);
      const port = await freePort();
      const a = api(port);
      const run = daemon(db, urls, rule, port);
      try {
        await twoWayRunning(a);
        const writers = [startWriter(urls.src, 'source'), startWriter(urls.dst, 'target')];
        await waitFor('writes on both sides', async () => writers.every((w) => w.done() > 150), 60_000, 100);
        const results = await Promise.all(writers.map((w) => w.stop()));
        for (const r of results) expect(r.errors).toEqual([]);
        await expectQuiet(db);
        await expectEqual(db);
        // A key changed on both sides while replay is held: the rule decides, the key is reported.
        expect(await a.post('pause')).toBe(200);
        await source.query(`UPDATE kv SET v = 'from source' WHERE k = 'k499'`, [], db);
        await new Promise((r) => setTimeout(r, 50));
        await target.query(`UPDATE kv SET v = 'from target' WHERE k = 'k499'`, [], db);
        expect(await a.post('resume')).toBe(200);
        await expectQuiet(db);
        await expectEqual(db);
        const [kv] = await source.query<{ v: string }>(`SELECT v FROM kv WHERE k = 'k499'`, [], db);
        expect(kv?.v).toBe(rule === 'source-wins' ? 'from source' : 'from target');
        const tw = (await a.status()).reverse.twoWay;
        expect(tw.conflicts.total).toBeGreaterThan(0);
        expect(tw.recent.some((c: { key: string[] }) => c.key[0] === 'k499')).toBe(true);
        // The trigger fired once per item, on the side that wrote it: none logged twice.
        const dup = await source.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM (SELECT item_id FROM item_log GROUP BY item_id HAVING count(*) > 1) d',
          [],
          db,
        );
        expect(dup[0]?.n).toBe(0);
      } catch (err) {
        throw new Error(
          `${(err as Error).message}\n--- daemon stderr ---\n${run.output().stderr.slice(-4000)}`,
        );
      } finally {
        run.child.kill('SIGTERM');
      }
      const done = await run.done;
      expect(done.code, done.stderr.slice(-3000)).toBe(0);
    }, 300_000);
  }

  it('a server restarted under two-way replay is waited out: both sides end equal', async () => {
    const db = 'tw_restart';
    const urls = await prepare(db, true);
    const port = await freePort();
    const a = api(port);
    const run = daemon(db, urls, 'source-wins', port);
    try {
      await twoWayRunning(a);
      const writers = [startWriter(urls.src, 'source'), startWriter(urls.dst, 'target')];
      await waitFor('writes on both sides', async () => writers.every((w) => w.done() > 50), 60_000, 100);
      // fast: the test clusters run with fsync and synchronous_commit off, so a crash could lose
      // commits the servers had confirmed, which no replication survives.
      await target.restart('fast', 1500);
      await waitFor(
        'writes after the restart',
        async () => writers.every((w) => w.done() > 300),
        60_000,
        100,
      );
      await source.restart('fast', 1000);
      await waitFor(
        'writes after the second restart',
        async () => writers.every((w) => w.done() > 500),
        60_000,
        100,
      );
      await Promise.all(writers.map((w) => w.stop()));
      await expectQuiet(db);
      await expectEqual(db);
      expect((await a.status()).phase).toBe('replicating');
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- daemon stderr ---\n${run.output().stderr.slice(-4000)}`,
      );
    } finally {
      run.child.kill('SIGTERM');
    }
    const done = await run.done;
    expect(done.code, done.stderr.slice(-3000)).toBe(0);
  }, 300_000);

  it('kill -9 during two-way replay, restart: both sides end equal', async () => {
    const db = 'tw_kill';
    const urls = await prepare(db, true);
    const port = await freePort();
    const a = api(port);
    let run = daemon(db, urls, 'latest', port);
    await twoWayRunning(a);
    const writers = [startWriter(urls.src, 'source'), startWriter(urls.dst, 'target')];
    try {
      for (let i = 0; i < 3; i++) {
        await waitFor(
          'replay under way',
          async () => ((await a.status()).replay?.appliedTotal ?? 0) > 0,
          60_000,
          100,
        );
        await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
        run.child.kill('SIGKILL');
        await run.done;
        run = daemon(db, urls, 'latest', port);
        await twoWayRunning(a);
      }
      const results = await Promise.all(writers.map((w) => w.stop()));
      for (const r of results) expect(r.errors).toEqual([]);
      await expectQuiet(db);
      await expectEqual(db);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- daemon stderr ---\n${run.output().stderr.slice(-4000)}`,
      );
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      run.child.kill('SIGTERM');
      await run.done;
    }
  }, 300_000);
});
