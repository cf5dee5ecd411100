// A logical slot PostgreSQL builds unusable (engine/capture/logical/slot-probe.ts): sessions on the
// source drive the slot's creation into the case, step by step, as its walsender waits for them.
// The probe tells that slot from a sound one, and `migrate --capture logical` whose own slot is so
// built creates it again before the copy and ends equal, instead of failing when replay starts.
import pg from 'pg';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { probeSlot } from '../../engine/capture/logical/slot-probe.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { runCli, startCli } from '../support/cli.js';
import type { Cluster } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, v text);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
CREATE TABLE side (id int PRIMARY KEY, v text);
INSERT INTO side SELECT g, 'before' FROM generate_series(1, 50) g;
CREATE TABLE other (id int);
CREATE PUBLICATION probe_pub FOR ALL TABLES;
`;

const pair = clusterPair({ name: 'slot-probe', sourceSql: SCHEMA });
const sourceInfo = () => new ConnInfo('source', pair.source.url({ db: 'app' }));

/** Whether the session creating a slot waits for the transaction with this id. */
async function creatorWaitsFor(source: Cluster, xid: string): Promise<boolean> {
  const [row] = await source.query<{ ok: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                     WHERE a.query LIKE 'CREATE_REPLICATION_SLOT%' AND NOT l.granted
                       AND l.locktype = 'transactionid' AND l.transactionid::text = $1) AS ok`,
    [xid],
  );
  return row!.ok;
}

/**
 * While a slot is created (by `create`, started here, or by someone else): a transaction older
 * than the slot keeps the builder waiting; a younger one starts; TRUNCATE commits meanwhile (the
 * builder does not track it); the oldest ends, and the builder, at its next step, waits for the
 * younger; a transaction then writes into the truncated table, the younger ends, the slot is
 * made, and the writer commits. Decoding the writer needs the TRUNCATE, which its snapshot lacks.
 */
async function createWedged(source: Cluster, create: () => Promise<unknown>): Promise<void> {
  const open = async () => {
    const c = new pg.Client({ connectionString: source.url({ db: 'app' }) });
    await c.connect();
    return c;
  };
  const [oldest, younger, truncater, writer] = await Promise.all([open(), open(), open(), open()]);
  const xid = async (c: pg.Client) =>
    (await c.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0]!.x;
  try {
    await oldest.query('BEGIN');
    await oldest.query('INSERT INTO other VALUES (0)');
    const oldestXid = await xid(oldest);
    const created = create();
    await waitFor('the slot waiting for the oldest transaction', () => creatorWaitsFor(source, oldestXid));
    await younger.query('BEGIN');
    await younger.query('INSERT INTO other VALUES (1)');
    const youngerXid = await xid(younger);
    await truncater.query('TRUNCATE side');
    await oldest.query('COMMIT');
    await waitFor('the slot waiting for the younger transaction', () => creatorWaitsFor(source, youngerXid));
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO side VALUES (1, 'after')`);
    await younger.query('COMMIT');
    await waitFor('the slot created', async () => {
      const [row] = await source.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'CREATE_REPLICATION_SLOT%' AND state = 'active'`,
      );
      return row!.n === '0';
    });
    await writer.query('COMMIT');
    await created;
  } finally {
    await Promise.all([oldest, younger, truncater, writer].map((c) => c.end().catch(() => {})));
  }
}

/** A slot created as pgferry creates its own, on a replication session. */
async function create(slot: string): Promise<void> {
  const rep = new pg.Client({
    connectionString: pair.source.url({ db: 'app' }),
    replication: 'database',
  } as never);
  await rep.connect();
  try {
    await rep.query(`CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput NOEXPORT_SNAPSHOT`);
  } finally {
    await rep.end();
  }
}

describe('a logical slot PostgreSQL built unusable', () => {
  it('is told from a sound one by the probe, which leaves no slot of its own', {
    timeout: 60_000,
  }, async () => {
    const client = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    await client.connect();
    const opts = { log: pino({ level: 'silent' }), tempSlot: 'probe_tmp', source: sourceInfo() };
    try {
      await createWedged(pair.source, () => create('wedged'));
      expect(await probeSlot(client, 'wedged', 'probe_pub', opts)).toMatch(/could not map file/);
      await create('sound');
      await client.query(`INSERT INTO side VALUES (2, 'sound')`);
      expect(await probeSlot(client, 'sound', 'probe_pub', opts)).toBeNull();
      const slots = await client.query<{ slot_name: string }>(
        'SELECT slot_name FROM pg_replication_slots ORDER BY 1',
      );
      expect(slots.rows.map((r) => r.slot_name)).toEqual(['sound', 'wedged']);
    } finally {
      await client
        .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`)
        .catch(() => {});
      await client.end();
    }
  });

  it('is still found when no slot is free for the probe (the server logs the record)', {
    timeout: 90_000,
  }, async () => {
    const client = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    await client.connect();
    try {
      await createWedged(pair.source, () => create('wedged'));
      await client.query(
        `SELECT pg_create_logical_replication_slot('filler_' || g, 'pgoutput')
           FROM generate_series(1, current_setting('max_replication_slots')::int - 1) g`,
      );
      const started = Date.now();
      const found = await probeSlot(client, 'wedged', 'probe_pub', {
        log: pino({ level: 'silent' }),
        tempSlot: 'probe_tmp',
        source: sourceInfo(),
      });
      expect(found).toMatch(/could not map file/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(15_000);
    } finally {
      await client
        .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`)
        .catch(() => {});
      await client.end();
    }
  });

  it('is created again by migrate before its copy, and the run ends equal', {
    timeout: 120_000,
  }, async () => {
    await pair.source.query(
      "TRUNCATE side; INSERT INTO side SELECT g, 'before' FROM generate_series(1, 50) g",
      [],
      'app',
    );
    const state = `${pair.dir}/state.sqlite`;
    let run: Promise<Awaited<ReturnType<typeof runCli>>> | undefined;
    await createWedged(pair.source, async () => {
      run = runCli(pair.migrate('--capture', 'logical', '--exclude', 'public.other', '--exit-when-synced'));
    });
    const done = await run!;
    expect(done.code, done.stderr.slice(-3000)).toBe(0);
    expect(done.stdout).toMatch(/^synced: .*backlog 0/m);
    const store = CheckpointStore.open(state, { create: false, readonly: true });
    const events = store.events(500).map((e) => e.message);
    store.close();
    expect(events.some((m) => /cannot be decoded .*could not map file.*creating it again/.test(m))).toBe(
      true,
    );
    expect(events.some((m) => /created and checked/.test(m))).toBe(true);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }), {
      schemas: ['public'],
    });
    for (const t of ['public.items', 'public.side']) expect(cmp.target[t]).toEqual(cmp.source[t]);
    const after = await pair.target.query<{ v: string }>('SELECT v FROM side WHERE id = 1', [], 'app');
    expect(after[0]?.v).toBe('after');
  });
});

describe('the transactions a new slot waits for', () => {
  it('are named to the operator while the probe waits for them', { timeout: 60_000 }, async () => {
    const client = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    const long = new pg.Client({
      connectionString: pair.source.url({ db: 'app' }),
      application_name: 'nightly-job',
    });
    await Promise.all([client.connect(), long.connect()]);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    try {
      await create('waited');
      await long.query('BEGIN');
      await long.query('INSERT INTO other VALUES (7)');
      const pid = (await long.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const probing = probeSlot(client, 'waited', 'probe_pub', {
        log,
        tempSlot: 'probe_tmp',
        source: sourceInfo(),
      });
      await waitFor('the wait reported', () => lines.some((l) => l.includes(`pid ${pid}`)), 30_000, 100);
      const line = JSON.parse(lines.find((l) => l.includes(`pid ${pid}`))!);
      expect(line.msg).toMatch(
        /^checking the new slot: waiting for the transactions of pid \d+ \(open since .*\) "nightly-job" on the source to end$/,
      );
      await long.query('COMMIT');
      expect(await probing).toBeNull();
    } finally {
      await client
        .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`)
        .catch(() => {});
      await Promise.all([client.end(), long.end()]);
    }
  });

  it('are named while migrate creates its slot, and the run goes on once they end', {
    timeout: 120_000,
  }, async () => {
    await pair.source.query('CREATE DATABASE app2');
    await pair.target.query('CREATE DATABASE app2');
    await pair.source.query(SCHEMA, [], 'app2');
    const long = new pg.Client({
      connectionString: pair.source.url({ db: 'app2' }),
      application_name: 'nightly-job',
    });
    await long.connect();
    try {
      await long.query('BEGIN');
      await long.query('INSERT INTO other VALUES (7)');
      const pid = (await long.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const run = startCli([
        'migrate',
        '--source',
        pair.source.url({ db: 'app2' }),
        '--target',
        pair.target.url({ db: 'app2' }),
        '--state',
        `${pair.dir}/app2.sqlite`,
        '--capture',
        'logical',
        '--exclude',
        'public.other',
        '--exit-when-synced',
      ]);
      await waitFor('the wait reported', () => run.output().stderr.includes(`pid ${pid}`), 30_000, 100).catch(
        (e) => {
          throw new Error(e.message + run.output().stderr.slice(-3000));
        },
      );
      expect(run.output().stderr).toMatch(
        new RegExp(
          `creating slot pgferry_\\w+: waiting for the transactions of pid ${pid} \\(open since [^)]+\\) \\\\"nightly-job\\\\" on the source to end`,
        ),
      );
      await long.query('COMMIT');
      const done = await run.done;
      expect(done.code, done.stderr.slice(-3000)).toBe(0);
    } finally {
      await long.end();
    }
  });
});
