// `--capture bucardo` (issue 19): pgferry reads Bucardo 5's delta and track tables as one more
// Bucardo target, beside an ordinary Bucardo sync. Under a live workload replayed batch by batch the
// target ends equal to the source and Bucardo's sync still delivers; Bucardo's purge keeps what
// pgferry has not applied; a consume lost after the target's commit is read again; a txntime shared
// with an open transaction is not tracked; TRUNCATE; uninstall, cleanup and preflight.
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deltaTableName } from '../../engine/capture/bucardo/bucardo-objects.js';
import { BucardoSource } from '../../engine/capture/bucardo/bucardo-source.js';
import { removeBucardoConsumers } from '../../engine/capture/bucardo/cleanup.js';
import { bucardoProblems } from '../../engine/capture/bucardo/preflight.js';
import type { ChangeSource } from '../../engine/capture/change-source.js';
import { retriedTableBatch } from '../../engine/replay/batch-retry.js';
import { SessionPool } from '../../engine/replay/sessions.js';
import { UNSLICED } from '../../engine/replay/table-batch.js';
import { listTables, type TableInfo } from '../../engine/shared/catalog.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { connect } from '../../engine/shared/db.js';
import { qualified } from '../../lib/sql.js';
import type { ApplyTable } from '../../sinks/batch-applier.js';
import { pipeCopy } from '../../sinks/copy-pipe.js';
import {
  type Bucardo,
  bucardoAvailable,
  installBucardo,
  LONG,
  PAIRS,
  SCHEMA,
  startWorkload,
  syncShop,
} from '../support/bucardo.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases, tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const applyTableOf = (t: TableInfo): ApplyTable => ({
  schema: t.schema,
  name: t.name,
  oid: t.oid,
  key: t.primaryKey!.map((k) => ({ name: k.name, type: k.type })),
  columns: t.columns.filter((c) => !c.generated).map((c) => c.name),
  format: 'text',
  keyFormat: 'text',
  partitioned: false,
});

describe.skipIf(!bucardoAvailable())('Bucardo delta and track tables as a change source', () => {
  let source: Cluster;
  let target: Cluster;
  let bucardo: Bucardo;
  let control: pg.Client;
  let pool: SessionPool;
  let tables: TableInfo[];
  const runId = 'b0cad0';
  const changes = new BucardoSource(runId, []);
  const opts = { log: pino({ level: 'silent' }), signal: new AbortController().signal };
  const me = `pgferry_${runId}`;
  const shop = () => source.url({ db: 'shop' });

  /** One batch of a table through replay's own retries (a partial batch's UNIQUE fallback). */
  const batch = async (t: TableInfo, whole = false, through: ChangeSource = changes) => {
    const ctx = { changes: through, source: new ConnInfo('source', shop()), sessions: pool, ...opts };
    const sets = { batchSize: 1000, unsliceable: new Set<ApplyTable>(), unstaged: new Set<ApplyTable>() };
    const out = await retriedTableBatch({ ...ctx, ...sets }, applyTableOf(t), whole);
    if (out === UNSLICED) throw new Error('a Bucardo source reads no slices');
    return out;
  };
  const backlog = async () => changes.backlog(control, tables.map(applyTableOf));
  const drain = async () => {
    for (let round = 0; round < 50; round++) {
      if ((await backlog()).every((b) => b.changes === 0)) return;
      for (const t of tables) await batch(t, true);
    }
    throw new Error('the backlog did not drain');
  };
  const sql = <T extends pg.QueryResultRow>(text: string, params: unknown[] = []) =>
    source.query<T>(text, params, 'shop');
  const count = async (text: string, params: unknown[] = []) =>
    (await sql<{ n: number }>(`SELECT (${text})::int AS n`, params))[0]!.n;
  const pendingIn = async (t: TableInfo) => (await changes.backlog(control, [applyTableOf(t)]))[0]!;
  const deltaRows = (t: string) => count(`SELECT count(*) FROM bucardo."${deltaTableName('public', t)}"`);
  const purge = () => sql(`SELECT bucardo.bucardo_purge_delta('0 seconds')`);
  const byName = (name: string) => tables.find((t) => t.name === name)!;

  /** Capture on for every table, the copy in one snapshot taken after, then replay for a while. */
  const installCopyReplay = async (): Promise<number> => {
    await changes.prepare(control, path.join(os.tmpdir(), `pgferry-${runId}.sqlite`)); // only recorded
    for (const t of tables) {
      const c = await changes.install(control, t, [], opts);
      expect(c.logTable).toBe(deltaTableName('public', t.name));
    }
    expect(await changes.installed(control)).toEqual(new Set(tables.map((t) => t.oid)));
    expect(changes.describe().relations).toContain(qualified('bucardo', `track_public_${PAIRS}`));

    // The copy, in one snapshot taken after every install, while the workload writes.
    const snap = await connect(new ConnInfo('source', shop()), 'copy');
    const into = new pg.Client({ connectionString: target.url({ db: 'shop' }) });
    await into.connect();
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    for (const t of tables) {
      const name = qualified(t.schema, t.name);
      await pipeCopy({
        source: snap,
        target: into,
        copyOut: `COPY ${name} TO STDOUT`,
        copyIn: `COPY ${name} FROM STDIN`,
      });
    }
    await snap.query('COMMIT');
    await Promise.all([snap.end(), into.end()]);

    // Replay in small batches while the workload goes on.
    const until = Date.now() + 6_000;
    let applied = 0;
    while (Date.now() < until) for (const t of tables) applied += (await batch(t))?.changes ?? 0;
    return applied;
  };

  beforeAll(async () => {
    [source, target, bucardo] = await Promise.all([startCluster(15), startCluster(15), installBucardo()]);
    await Promise.all([source, target].map((c) => c.query('CREATE DATABASE shop')));
    await target.query(SCHEMA, [], 'shop');
    await syncShop(bucardo, source, 'shop');
    const sourceConn = new ConnInfo('source', shop());
    control = await connect(sourceConn, 'control');
    pool = new SessionPool(sourceConn, new ConnInfo('target', target.url({ db: 'shop' })));
    tables = (await listTables(control, 'source', { include: ['public.*'], exclude: [] })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }, 180_000);

  afterAll(async () => {
    await pool?.close();
    await control?.end();
    await Promise.all([bucardo?.close(), source?.stop(), target?.stop()]);
  });

  it('replays a live workload beside Bucardo sync, and both targets end equal to the source', async () => {
    // Bucardo's delta tables are named as pgferry computes them, the long one shortened.
    const deltas = await sql<{ relname: string }>(
      `SELECT relname FROM pg_class WHERE relnamespace = 'bucardo'::regnamespace AND relname LIKE 'delta\\_%' ORDER BY 1`,
    );
    expect(deltas.map((d) => d.relname)).toEqual(tables.map((t) => deltaTableName('public', t.name)).sort());
    expect(deltaTableName('public', LONG)).toMatch(
      /^delta_public_shipments_awaiting_customs_clearance_at![0-9a-f]{10}$/,
    );

    const workload = startWorkload(shop());
    let applied = 0;
    try {
      await new Promise((r) => setTimeout(r, 500));
      applied = await installCopyReplay();
    } finally {
      await workload.stop();
    }
    const ran = await workload.stop();
    expect(ran.errors).toEqual([]);
    expect(ran.operations).toBeGreaterThan(200);
    expect(applied).toBeGreaterThan(100);
    await drain();
    expect(await backlog()).toEqual(tables.map(() => ({ changes: 0, lagSeconds: null })));
    const cmp = await compareDatabases(shop(), target.url({ db: 'shop' }), { schemas: ['public'] });
    expect(Object.keys(cmp.source)).toHaveLength(4);
    expect(cmp.target).toEqual(cmp.source);

    // Bucardo's own sync still delivers, and once it has tracked everything too, its purge
    // empties the delta tables.
    const want = await tableHashes(shop(), { schemas: ['public'] });
    await waitFor('Bucardo sync to deliver', async () => {
      const got = await tableHashes(bucardo.url('mirror'), { schemas: ['public'] });
      return JSON.stringify([...got]) === JSON.stringify([...want]);
    }).catch((err) => {
      throw new Error(`${err.message}\n${bucardo.log().slice(-3000)}`);
    });
    await waitFor('the purge to empty the delta tables', async () => {
      await purge();
      for (const t of tables) if ((await deltaRows(t.name)) > 0) return false;
      return true;
    });
    expect(await count('SELECT count(*) FROM bucardo.bucardo_delta_targets WHERE target = $1', [me])).toBe(4);
    // The workload's truncates went through Bucardo's truncate log, and pgferry applied them.
    expect(
      await count('SELECT count(*) FROM bucardo.bucardo_truncate_trigger_log WHERE target = $1', [me]),
    ).toBeGreaterThan(0);
    expect((await changes.logSize(control)).bytes).toBeGreaterThan(0);
  }, 300_000);

  it("Bucardo's purge keeps what pgferry has not applied; a consume lost after the target's commit is read again", async () => {
    const accounts = byName('accounts');
    await sql(`INSERT INTO accounts SELECT 5000000 + g, 'new' || g, 0, NULL FROM generate_series(1, 10) g`);
    await sql(`UPDATE accounts SET note = 'later' WHERE id BETWEEN 5000001 AND 5000003`);
    // Bucardo's sync applies and tracks both transactions; its purge must wait for pgferry.
    await bucardo.cli('kick', 's1');
    await waitFor('Bucardo sync to track the changes', async () => {
      const [r] = await sql<{
        done: boolean;
      }>(`SELECT NOT EXISTS (SELECT 1 FROM bucardo.delta_public_accounts d WHERE NOT EXISTS (
           SELECT 1 FROM bucardo.track_public_accounts t WHERE t.txntime = d.txntime AND t.target = 'dbgroup s1')) AS done`);
      return r?.done;
    });
    await purge();
    expect(await deltaRows('accounts')).toBe(13);
    const pending = await pendingIn(accounts);
    expect(pending.changes).toBe(13);
    expect(pending.lagSeconds).toBeGreaterThan(0);

    // The target commits, then the process dies before the source's consume.
    const crashing = new Proxy(changes, {
      get: (src, p) =>
        p === 'consume'
          ? async () => {
              throw new Error('killed after the target committed');
            }
          : (Reflect.get(src, p) as (...a: unknown[]) => unknown).bind(src),
    });
    await expect(batch(accounts, true, crashing)).rejects.toThrow('killed after the target committed');
    expect((await pendingIn(accounts)).changes).toBe(13);
    expect((await batch(accounts, true))?.changes).toBe(13);
    expect((await pendingIn(accounts)).changes).toBe(0);
    await purge();
    expect(await deltaRows('accounts')).toBe(0);
    const cmp = await compareDatabases(shop(), target.url({ db: 'shop' }), { schemas: ['public'] });
    expect(cmp.target).toEqual(cmp.source);
  });

  it('a txntime shared with a transaction still open is applied but not tracked until it ends', async () => {
    const accounts = byName('accounts');
    const y = new pg.Client({ connectionString: shop() });
    await y.connect();
    try {
      await y.query('BEGIN');
      await y.query(`UPDATE accounts SET note = 'y' WHERE id = 5000004`);
      const start = (await y.query<{ t: string }>('SELECT now()::text AS t')).rows[0]!.t;
      // Another transaction that started in the same microsecond commits first: its change is
      // written as Bucardo's trigger would have (the trigger itself held off by replica mode).
      await sql(`BEGIN; SET LOCAL session_replication_role = replica;
         UPDATE accounts SET note = 'x' WHERE id = 5000005;
         INSERT INTO bucardo.delta_public_accounts (id, txntime) VALUES (5000005, '${start}'); COMMIT`);
      expect((await batch(accounts, true))?.changes).toBe(1);
      // Applied, yet not tracked: tracking it would hide the open transaction's row for good.
      expect((await pendingIn(accounts)).changes).toBe(1);
      await y.query('COMMIT');
    } finally {
      await y.end();
    }
    expect((await batch(accounts, true))?.changes).toBe(2);
    expect((await pendingIn(accounts)).changes).toBe(0);
    const rows = await target.query(
      'SELECT id, note FROM accounts WHERE id IN (5000004, 5000005) ORDER BY id',
      [],
      'shop',
    );
    expect(rows).toEqual([
      { id: '5000004', note: 'y' },
      { id: '5000005', note: 'x' },
    ]);
  });

  it('a TRUNCATE is read from Bucardo, applied first, and once', async () => {
    const kv = byName('kv');
    await sql(`TRUNCATE kv; INSERT INTO kv VALUES ('after', 'truncate', NULL)`);
    const s = await pool.take();
    const read = await changes.readBatch(s.src, applyTableOf(kv), { limit: 100 });
    expect(read).toMatchObject({ changes: 2, truncates: ['public.kv'] });
    await changes.abandon(s.src);
    pool.give(s);
    expect((await batch(kv))?.changes).toBe(2);
    await sql(`INSERT INTO kv VALUES ('later', 'row', NULL)`);
    expect((await batch(kv))?.changes).toBe(1);
    expect(await target.query('SELECT k FROM kv ORDER BY k', [], 'shop')).toEqual([
      { k: 'after' },
      { k: 'later' },
    ]);
    expect(
      await count('SELECT count(*) FROM bucardo.bucardo_truncate_trigger_log WHERE target = $1', [me]),
    ).toBeGreaterThan(0);
  });

  it("uninstall and cleanup take pgferry's rows out of Bucardo's tables, and leave Bucardo's", async () => {
    const kv = byName('kv');
    const ours = (table: string) =>
      count(
        `(SELECT count(*) FROM bucardo.bucardo_delta_targets WHERE tablename = '${table}'::regclass AND target = $1)
         + (SELECT count(*) FROM bucardo.track_public_${table} WHERE target = $1)
         + (SELECT count(*) FROM bucardo.bucardo_truncate_trigger_log WHERE tablename = '${table}'::regclass AND target = $1)
         + (SELECT count(*) FROM pgferry.captured WHERE relid = '${table}'::regclass)`,
        [me],
      );
    expect(await ours('kv')).toBeGreaterThan(0);
    await changes.uninstall(control, changes.installedAs(kv), opts);
    expect(await ours('kv')).toBe(0);
    expect(await changes.removed(control)).toBeNull();

    await control.query('BEGIN');
    const removed = await removeBucardoConsumers(control, runId);
    await control.query('COMMIT');
    expect(removed.filter((r) => r.kind === 'bucardo target').map((r) => r.name)).toHaveLength(3);
    expect(await ours('accounts')).toBe(1); // its pgferry.captured row: the run's registry is cleanup's
    const theirs = await sql(
      `SELECT target, count(*)::int AS n FROM bucardo.bucardo_delta_targets GROUP BY 1`,
    );
    expect(theirs).toEqual([{ target: 'dbgroup s1', n: 4 }]);
    expect((await changes.removed(control))?.code).toBe('PGFERRY_CAPTURE_REMOVED');
    const elsewhere = await connect(new ConnInfo('source', target.url({ db: 'shop' })), 'control');
    await expect(removeBucardoConsumers(elsewhere, undefined)).resolves.toEqual([]);
    await elsewhere.end();
  });

  it('preflight names the tables Bucardo does not track, partitioned ones, and missing grants (its own are never listed)', async () => {
    await sql(`CREATE TABLE loose (id int PRIMARY KEY);
       CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
       CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
       CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT USAGE ON SCHEMA bucardo TO reader;`);
    const all = await listTables(control, 'source', { include: [], exclude: [] });
    const found = await bucardoProblems(control, all);
    expect(all.some((t) => t.schema === 'bucardo')).toBe(false);
    expect(found.map((f) => f.object)).toEqual(['public.loose', 'public.parted']);
    expect(found[0]?.fix).toContain('bucardo add table public.loose');
    // install refuses such a table the same way, naming it.
    const loose = all.find((t) => t.name === 'loose')!;
    await expect(changes.install(control, loose, [], opts)).rejects.toMatchObject({
      code: 'PGFERRY_PREFLIGHT_PROBLEMS',
      object: 'public.loose',
    });
    const reader = await connect(
      new ConnInfo('source', source.url({ db: 'shop', user: 'reader', password: 'reader-pw' })),
      'control',
    );
    try {
      const denied = await bucardoProblems(reader, tables);
      expect(denied).toHaveLength(1);
      expect(denied[0]?.message).toMatch(
        /^role reader lacks membership in pg_read_all_stats, SELECT on bucardo\.delta_public_accounts, /,
      );
      expect(denied[0]?.fix).toContain('GRANT pg_read_all_stats TO "reader"');
    } finally {
      await reader.end();
    }
    const bare = await connect(new ConnInfo('source', target.url({ db: 'shop' })), 'control');
    expect((await bucardoProblems(bare, tables)).map((f) => f.message)).toEqual([
      'the source database has no bucardo schema: Bucardo does not replicate from it',
    ]);
    await bare.end();
  });
});
