// Tables joining and leaving a running migration, driven as an operator would while the
// application writes: a table created on the source is reported in /status; `pgferry tables add`
// (and POST /tables) copies it and replicates it beside the others, written to all along; a bad
// request (no match, a target table with rows) is refused and leaves nothing on the source;
// `pgferry tables remove` stops replicating one and removes its capture. The cutover then
// verifies exactly the replicated tables, and every replicated table ends equal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from '../../src/http/api-schemas.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'tables-test-token-51c0e9aa';

let source: Cluster;
let target: Cluster;
let dir: string;
let daemon: ReturnType<typeof startCli> | undefined;
const others: ReturnType<typeof startCli>[] = [];

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g, 0 FROM generate_series(1, 1000) g;
CREATE TABLE gone (id int PRIMARY KEY, v text);
INSERT INTO gone SELECT g, 'v' || g FROM generate_series(1, 100) g;
`;

/** Writes to items, and to orders and metrics once they exist, until stopped. */
function startWriter(url: string) {
  let stop = false;
  const counts = { items: 0, orders: 0, metrics: 0, gone: 0 };
  const client = new pg.Client({ connectionString: url });
  const attempt = async (what: keyof typeof counts, sql: string, params: unknown[]) => {
    try {
      await client.query(sql, params);
      counts[what]++;
    } catch {
      // orders or metrics may not exist yet
    }
  };
  const done = (async () => {
    await client.connect();
    for (let i = 0; !stop; i++) {
      const id = 1 + (i % 1000);
      await attempt('items', 'UPDATE items SET n = n + 1 WHERE id = $1', [id]);
      await attempt('orders', `INSERT INTO orders (item, note) VALUES ($1, 'o' || $2)`, [id, `${i}`]);
      await attempt('orders', 'UPDATE orders SET item = item + 1 WHERE id = $1', [1 + (i % 5000)]);
      await attempt('orders', 'DELETE FROM orders WHERE id = $1', [7 + ((i * 13) % 5000)]);
      await attempt(
        'metrics',
        `INSERT INTO metrics VALUES ($1, $2, 1) ON CONFLICT (id, day) DO UPDATE SET v = metrics.v + 1`,
        [i % 300, i % 2 === 0 ? '2026-01-01' : '2026-02-01'],
      );
      await attempt('gone', `UPDATE gone SET v = v || '.' WHERE id = $1`, [1 + (i % 100)]);
      await new Promise((r) => setTimeout(r, 3));
    }
    await client.end();
  })();
  return {
    counts,
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-tables-'));
  await source.query('CREATE DATABASE app');
  await target.query('CREATE DATABASE app');
  await source.query(SCHEMA, [], 'app');
  await source.query('CREATE DATABASE crash');
  await target.query('CREATE DATABASE crash');
  await source.query(SCHEMA, [], 'crash');
}, 120_000);

afterAll(async () => {
  daemon?.child.kill('SIGKILL');
  for (const d of others) d.child.kill('SIGKILL');
  if (process.env.PGFERRY_TEST_KEEP_LOGS && daemon)
    fs.writeFileSync(path.join(os.tmpdir(), 'pgferry-tables-daemon.log'), daemon.output().stderr);
  await Promise.all([source?.stop(), target?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('tables joining and leaving a running migration', () => {
  it('adds a table created on the source, refuses bad requests, removes one, and cuts over on what it replicates', async () => {
    const state = path.join(dir, 'app.sqlite');
    const port = await freePort();
    daemon = startCli(
      [
        'migrate',
        '--source',
        source.url({ db: 'app' }),
        '--target',
        target.url({ db: 'app' }),
        '--state',
        state,
        '--http',
        `127.0.0.1:${port}`,
        '--jobs',
        '2',
        '--max-snapshot-age',
        '1s',
      ],
      { PGFERRY_API_TOKEN: TOKEN },
    );
    const base = `http://127.0.0.1:${port}`;
    // biome-ignore lint/suspicious/noExplicitAny: the answer is parsed with its schema
    const status = async (): Promise<any> => Status.parse(await (await fetch(`${base}/status`)).json());
    const post = (route: string, body: unknown) =>
      fetch(`${base}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    await waitFor(
      'replicating',
      async () => (await status().catch(() => null))?.phase === 'replicating',
      120_000,
      200,
    );

    const writer = startWriter(source.url({ db: 'app' }));
    try {
      // Created on the source during the run: reported, not taken in by itself.
      await source.query(
        `CREATE TABLE orders (id bigserial PRIMARY KEY, item int NOT NULL, note text UNIQUE, at timestamptz DEFAULT now());
         CREATE INDEX orders_item ON orders (item);
         INSERT INTO orders (item, note) SELECT g % 1000, 'seed ' || g FROM generate_series(1, 30000) g;
         CREATE TABLE metrics (id int, day date, v int, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE metrics_jan PARTITION OF metrics FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
         CREATE TABLE metrics_feb PARTITION OF metrics FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
         CREATE TABLE pre (id int PRIMARY KEY);`,
        [],
        'app',
      );
      await target.query('CREATE TABLE pre (id int PRIMARY KEY); INSERT INTO pre VALUES (1);', [], 'app');
      const reported = await waitFor(
        'new tables reported',
        async () => {
          const s = await status();
          const names = s.newTables.map((t: { table: string }) => t.table);
          return names.includes('public.orders') && names.includes('public.metrics') && s;
        },
        30_000,
        500,
      );
      expect(reported.phase).toBe('replicating');
      expect(reported.events.map((e: { message: string }) => e.message).join('\n')).toMatch(
        /public\.orders was created on the source and is not replicated: `pgferry tables add public\.orders`/,
      );

      // Added by the CLI while the writer keeps writing to it.
      const added = await runCli(['tables', 'add', 'public.orders', '--state', state]);
      expect(added.stderr).toMatch(/pgferry process \d+ works on it/);
      expect(added.code, added.stderr).toBe(0);
      expect(added.stdout).toMatch(/public\.orders joined the migration/);
      // Its unique constraint and index were built on the target.
      const idx = await target.query(
        `SELECT indexname FROM pg_indexes WHERE tablename = 'orders' ORDER BY 1`,
        [],
        'app',
      );
      expect(idx.map((r) => r.indexname)).toEqual(['orders_item', 'orders_note_key', 'orders_pkey']);

      // Added through the API: a partitioned table.
      const res = await post('/tables', { action: 'add', pattern: 'public.metrics' });
      expect(res.status).toBe(202);
      const { request } = (await res.json()) as { request: { id: number } };
      await waitFor(
        'metrics joined',
        async () => {
          const r = (await status()).tableRequests.find((x: { id: number }) => x.id === request.id);
          if (r?.state === 'failed') throw new Error(JSON.stringify(r.error));
          return r?.state === 'done';
        },
        60_000,
        300,
      );

      // Refused: nothing matches; a target table that holds rows (and nothing left on the source).
      const none = await runCli(['tables', 'add', 'public.nosuch', '--state', state]);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/PGFERRY_TABLES_REFUSED.*no table on the source matches public\.nosuch/);
      const full = await runCli(['tables', 'add', 'pre', '--state', state, '--json']);
      expect(full.code).toBe(1);
      expect(full.stderr).toMatch(/PGFERRY_TARGET_NOT_EMPTY.*public\.pre already holds rows on the target/);
      expect(JSON.parse(full.stdout).request.state).toBe('failed');
      const leftovers = await source.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.pre'::regclass AND NOT tgisinternal`,
        [],
        'app',
      );
      expect(leftovers).toEqual([]);

      // Failed after capture went on (a type the target lacks): undone; added once the type is there.
      await source.query(
        `CREATE TYPE mood AS ENUM ('ok', 'meh');
         CREATE TABLE feelings (id int PRIMARY KEY, m mood);
         INSERT INTO feelings SELECT g, 'ok' FROM generate_series(1, 50) g;`,
        [],
        'app',
      );
      const typeless = await runCli(['tables', 'add', 'feelings', '--state', state]);
      expect(typeless.code).toBe(1);
      expect(typeless.stderr).toMatch(/PGFERRY_SCHEMA_APPLY_FAILED.*mood/);
      const undone = await source.query(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.feelings'::regclass AND NOT tgisinternal`,
        [],
        'app',
      );
      expect(undone[0]!.n).toBe(0);
      await target.query(`CREATE TYPE mood AS ENUM ('ok', 'meh')`, [], 'app');
      const retried = await runCli(['tables', 'add', 'feelings', '--state', state]);
      expect(retried.code, retried.stderr).toBe(0);

      // Removed: capture gone from the source, the run goes on without it.
      const removed = await runCli(['tables', 'remove', 'public.gone', '--state', state]);
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toMatch(/public\.gone left the migration/);
      const triggers = await source.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.gone'::regclass AND NOT tgisinternal`,
        [],
        'app',
      );
      expect(triggers).toEqual([]);
      const s = await status();
      expect(s.newTables.map((t: { table: string }) => t.table)).not.toContain('public.orders');
      expect(s.tables.map((t: { table: string }) => t.table)).not.toContain('public.gone');
      expect(s.tables.map((t: { table: string }) => t.table)).toContain('public.orders');
      expect(writer.counts.orders).toBeGreaterThan(100);
    } finally {
      await writer.stop();
    }
    expect(writer.counts.metrics).toBeGreaterThan(100);

    // The cutover verifies what the run replicates: gone (removed) and pre (never added) differ.
    const cut = await post('/cutover', { freeze: 'external', settleSeconds: 1, force: true });
    expect(cut.status).toBe(202);
    const { operation } = (await cut.json()) as { operation: { id: string } };
    await waitFor(
      'cutover done',
      async () => {
        const op = (await status()).operations.find((o: { id: string }) => o.id === operation.id);
        if (op?.state === 'failed') throw new Error(JSON.stringify(op.error));
        return op?.state === 'succeeded';
      },
      120_000,
      300,
    );
    const [a, b] = await Promise.all([
      tableHashes(source.url({ db: 'app' }), { schemas: ['public'] }),
      tableHashes(target.url({ db: 'app' }), { schemas: ['public'] }),
    ]);
    for (const t of [
      'public.items',
      'public.orders',
      'public.metrics_jan',
      'public.metrics_feb',
      'public.feelings',
    ]) {
      expect(b.get(t), t).toEqual(a.get(t));
    }
    expect(b.get('public.gone')).not.toEqual(a.get('public.gone'));
    // A run that is over takes no table.
    const late = await runCli(['tables', 'add', 'public.pre', '--state', state]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/PGFERRY_TABLES_REFUSED.*the migration is over/);
    const [seq] = await target.query(`SELECT last_value::text AS v FROM orders_id_seq`, [], 'app');
    const [max] = await source.query(`SELECT max(id)::text AS v FROM orders`, [], 'app');
    expect(Number(seq!.v)).toBeGreaterThanOrEqual(Number(max!.v));
  }, 300_000);

  it('goes on with a join after the daemon is killed at each of its steps, and loses nothing', async () => {
    const state = path.join(dir, 'crash.sqlite');
    const args = [
      'migrate',
      '--source',
      source.url({ db: 'crash' }),
      '--target',
      target.url({ db: 'crash' }),
      '--state',
      state,
      '--chunk-size',
      '256kB',
    ];
    const first = startCli(args);
    others.push(first);
    await waitFor(
      'replicating',
      async () =>
        (await runCli(['status', '--state', state, '--json'])).stdout.includes('"phase": "replicating"'),
      120_000,
      500,
    );
    first.child.kill('SIGTERM');
    await first.done;
    await source.query(
      `CREATE TABLE big (id int PRIMARY KEY, v text, n int);
       INSERT INTO big SELECT g, repeat('x', 50) || g, 0 FROM generate_series(1, 20000) g;`,
      [],
      'crash',
    );
    const queued = await runCli(['tables', 'add', 'big', '--state', state, '--json']);
    expect(queued.code, queued.stderr).toBe(0);
    expect(queued.stderr).toMatch(/no pgferry migrate is running/);
    expect(JSON.parse(queued.stdout).request.state).toBe('pending');

    const writer = new pg.Client({ connectionString: source.url({ db: 'crash' }) });
    await writer.connect();
    let stop = false;
    const writes = (async () => {
      for (let i = 0; !stop; i++) {
        await writer.query('UPDATE big SET n = n + 1 WHERE id = $1', [1 + ((i * 7919) % 20000)]);
        await writer.query('INSERT INTO big VALUES ($1, $2, 0) ON CONFLICT (id) DO NOTHING', [
          100000 + i,
          `w${i}`,
        ]);
        if (i % 10 === 0) await writer.query('DELETE FROM big WHERE id = $1', [1 + ((i * 31) % 20000)]);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    try {
      // Killed after capture went on, after the schema, after the copy, and once replay had the table.
      for (const step of ['captured', 'schema', 'copied', 'replaying']) {
        const d = startCli(args, { PGFERRY_TEST_CRASH_AT: `tables:${step}` });
        others.push(d);
        const end = await d.done;
        expect(end.signal, `killed at tables:${step}\n${end.stderr.slice(-2000)}`).toBe('SIGKILL');
      }
      const last = startCli(args);
      others.push(last);
      await waitFor(
        'big joined',
        async () => {
          const s = JSON.parse((await runCli(['status', '--state', state, '--json'])).stdout);
          const r = s.tableRequests.at(-1);
          if (r?.state === 'failed') throw new Error(JSON.stringify(r.error));
          return r?.state === 'done';
        },
        120_000,
        500,
      );
    } finally {
      stop = true;
      await writes;
      await writer.end();
    }
    await waitFor(
      'drained',
      async () => {
        const [a, b] = await Promise.all([
          tableHashes(source.url({ db: 'crash' }), { schemas: ['public'] }),
          tableHashes(target.url({ db: 'crash' }), { schemas: ['public'] }),
        ]);
        const same = (t: string) => JSON.stringify(a.get(t)) === JSON.stringify(b.get(t));
        return same('public.big') && same('public.items');
      },
      60_000,
      1000,
    ).catch(async (err) => {
      const q = 'SELECT id, v, n FROM big ORDER BY id';
      const [a, b] = await Promise.all([source.query(q, [], 'crash'), target.query(q, [], 'crash')]);
      const key = (r: pg.QueryResultRow) => `${r.id}|${r.v}|${r.n}`;
      const sa = new Set(a.map(key));
      const sb = new Set(b.map(key));
      const onlyA = [...sa].filter((x) => !sb.has(x));
      const onlyB = [...sb].filter((x) => !sa.has(x));
      throw new Error(
        `${err.message}: source ${a.length} rows, target ${b.length}; only source ${onlyA.length} ${onlyA.slice(0, 5)}; only target ${onlyB.length} ${onlyB.slice(0, 5)}\n${others
          .at(-1)!
          .output()
          .stderr.split('\n')
          .filter((l) => !l.includes('"level":30'))
          .slice(-30)
          .join('\n')}`,
      );
    });
    const logs = await source.query(
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.big'::regclass AND NOT tgisinternal`,
      [],
      'crash',
    );
    expect(logs[0]!.n).toBeGreaterThan(0);
    const s = JSON.parse((await runCli(['status', '--state', state, '--json'])).stdout);
    expect(s.tableRequests.at(-1).step).toMatch(/^public\.big joined the migration/);
  }, 300_000);
});
