// Schema drift on a running migration, under a live writer, driven as an operator would: the
// daemon (`migrate --http`) is watched through /status while tables change on the source. Each
// change pauses replay with a readable diff (phase paused, pauseReason drift) while capture goes
// on; the same change on the target resumes it, and what was written meanwhile arrives in the new
// shape: ADD COLUMN, DROP COLUMN, a type change, a column rename, a table rename, a dropped table.
// A new partition never pauses. With --drift additive, a new nullable column and a new defaulted
// one are added to the target by pgferry, without a pause, and so are new indexes. Every case ends with both sides equal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from '../../src/http/api-schemas.js';
import { startCli } from '../support/cli.js';
import { type Cluster, freePort, startCluster } from '../support/cluster.js';
import { tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'drift-test-token-8d2c41f0';

let source: Cluster;
let target: Cluster;
let dir: string;
const daemons: ReturnType<typeof startCli>[] = [];

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, label text);
INSERT INTO items SELECT g, 0, 'item ' || g FROM generate_series(1, 2000) g;
CREATE TABLE gone (id int PRIMARY KEY, v text);
INSERT INTO gone SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE TABLE moved (id int PRIMARY KEY, v text);
INSERT INTO moved SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE TABLE events (id int NOT NULL, region text NOT NULL, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
INSERT INTO events SELECT g, 'eu', g FROM generate_series(1, 500) g;
`;

/**
 * No backlog in replay figures measured after the writer stopped (with a margin for the backlog
 * query itself): figures from a round that started before the writer's last commit can show an
 * empty log that is not.
 */
// biome-ignore lint/suspicious/noExplicitAny: the status answer is checked against its schema
const drainedSince = (s: any, stopped: number): boolean =>
  s.backlog === 0 && s.replay !== null && Date.parse(s.replay.at) > stopped + 100;

/** A writer that keeps updating and inserting rows of `items` until stopped; `extra` sets more columns. */
function startWriter(url: string) {
  let stop = false;
  let extra = '';
  let written = 0;
  let errors = 0;
  const client = new pg.Client({ connectionString: url });
  const done = (async () => {
    await client.connect();
    let next = 100_000;
    while (!stop) {
      try {
        const id = 1 + Math.floor(Math.random() * 2000);
        await client.query(`UPDATE items SET n = n + 1${extra} WHERE id = $1`, [id]);
        await client.query(`INSERT INTO items (id, n) VALUES ($1, 1)`, [next++]);
        written += 2;
      } catch {
        // A statement can meet the DDL's lock timeout or a column renamed under it: go on.
        errors++;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await client.end();
  })();
  return {
    set extra(v: string) {
      extra = v;
    },
    written: () => written,
    errors: () => errors,
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

async function startDaemon(db: string, extra: string[] = []) {
  const port = await freePort();
  const d = startCli(
    [
      'migrate',
      '--source',
      source.url({ db }),
      '--target',
      target.url({ db }),
      '--state',
      path.join(dir, `${db}.sqlite`),
      '--http',
      `127.0.0.1:${port}`,
      '--jobs',
      '2',
      ...extra,
    ],
    { PGFERRY_API_TOKEN: TOKEN },
  );
  daemons.push(d);
  const base = `http://127.0.0.1:${port}`;
  // biome-ignore lint/suspicious/noExplicitAny: the status answer is checked against its schema
  const status = async (): Promise<any> => {
    const res = await fetch(`${base}/status`).catch((err) => {
      // The daemon is gone: its last words say why.
      throw new Error(
        `${err.message}: ${d
          .output()
          .stderr.split('\n')
          .filter((l) => !l.includes('"level":"info"'))
          .slice(-5)
          .join('\n')}`,
      );
    });
    const s = await res.json();
    return Status.parse(s);
  };
  const post = async (route: string) =>
    fetch(`${base}${route}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  await waitFor('replicating', async () => (await status()).phase === 'replicating', 120_000, 200).catch(
    (err) => {
      throw new Error(`${err.message}\n${d.output().stderr.slice(-3000)}`);
    },
  );
  return { d, status, post };
}

const paused = (s: { phase: string; pauseReason: string | null }) =>
  s.phase === 'paused' && s.pauseReason === 'drift';

async function expectEqual(db: string) {
  const [a, b] = await Promise.all([
    tableHashes(source.url({ db }), { schemas: ['public'] }),
    tableHashes(target.url({ db }), { schemas: ['public'] }),
  ]);
  expect([...b.entries()]).toEqual([...a.entries()]);
}

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-drift-'));
  for (const db of ['app', 'additive']) {
    await source.query(`CREATE DATABASE ${db}`);
    await target.query(`CREATE DATABASE ${db}`);
    await source.query(SCHEMA, [], db);
  }
}, 120_000);

afterAll(async () => {
  for (const d of daemons) d.child.kill('SIGKILL');
  if (process.env.PGFERRY_TEST_KEEP_LOGS) {
    for (const [i, d] of daemons.entries())
      fs.writeFileSync(path.join(os.tmpdir(), `pgferry-drift-daemon-${i}.log`), d.output().stderr);
  }
  await Promise.all([source?.stop(), target?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('schema drift', () => {
  it('pauses on each change of the source, resumes when the target matches, and loses nothing', async () => {
    const { status, post } = await startDaemon('app');
    const writer = startWriter(source.url({ db: 'app' }));
    const onBoth = async (sql: string) => {
      await source.query(sql, [], 'app');
      await waitFor('drift pause', async () => paused(await status()), 30_000, 100);
      await target.query(sql, [], 'app');
      await waitFor('resume', async () => (await status()).phase === 'replicating', 30_000, 100);
    };
    try {
      // ADD COLUMN: the pause names the table and the column, source side and target side.
      await source.query('ALTER TABLE items ADD COLUMN note text', [], 'app');
      writer.extra = `, note = 'n' || n`;
      const s = await waitFor(
        'drift pause',
        async () => {
          const s = await status();
          return paused(s) && s;
        },
        30_000,
        100,
      );
      expect(s.drift.differences).toEqual([
        expect.objectContaining({
          table: 'public.items',
          kind: 'column-missing-on-target',
          column: 'note',
          source: 'text',
          target: null,
        }),
      ]);
      expect(s.drift.differences[0].message).toMatch(/public\.items\.note/);
      // Capture goes on while paused: the backlog grows.
      await waitFor('backlog grows', async () => (await status()).backlog > 50, 30_000, 200);
      await target.query('ALTER TABLE items ADD COLUMN note text', [], 'app');
      await waitFor('resume', async () => (await status()).phase === 'replicating', 30_000, 100);
      expect((await status()).drift).toBeNull();

      // DROP COLUMN, a type change, a column rename.
      writer.extra = '';
      await onBoth('ALTER TABLE items DROP COLUMN note');
      await onBoth('ALTER TABLE items ALTER COLUMN n TYPE bigint');
      await onBoth('ALTER TABLE items RENAME COLUMN label TO title');

      // A table renamed, a table dropped.
      await source.query("UPDATE moved SET v = v || '!' WHERE id <= 10", [], 'app');
      await onBoth('ALTER TABLE moved RENAME TO moved_on');
      await source.query("UPDATE moved_on SET v = v || '?' WHERE id <= 20", [], 'app');
      await source.query('DROP TABLE gone', [], 'app');
      const dropped = await waitFor(
        'drop pause',
        async () => {
          const s = await status();
          return paused(s) && s;
        },
        30_000,
        100,
      );
      expect(dropped.drift.differences[0]).toMatchObject({ table: 'public.gone', kind: 'table-dropped' });
      await target.query('DROP TABLE gone', [], 'app');
      await waitFor('resume', async () => (await status()).phase === 'replicating', 30_000, 100);

      // A new partition, written to at once: no pause, its rows arrive.
      await source.query(
        `CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
         INSERT INTO events SELECT g, 'us', g FROM generate_series(1, 300) g;`,
        [],
        'app',
      );
      await waitFor(
        'partition on the target',
        async () => {
          const r = await target
            .query(`SELECT count(*)::text AS n FROM events WHERE region = 'us'`, [], 'app')
            .catch(() => null);
          return r?.[0]?.n === '300';
        },
        30_000,
        200,
      );
      expect((await status()).phase).toBe('replicating');

      // An operator's resume accepts a difference (here a NOT NULL only the source has).
      await source.query('ALTER TABLE moved_on ALTER COLUMN v SET NOT NULL', [], 'app');
      await waitFor('drift pause', async () => paused(await status()), 30_000, 100);
      expect((await post('/resume')).status).toBe(200);
      await source.query(`UPDATE moved_on SET v = v || '+' WHERE id <= 5`, [], 'app');
      await waitFor(
        'accepted',
        async () => {
          const s = await status();
          return s.phase === 'replicating' && s.drift?.accepted === true;
        },
        30_000,
        100,
      );
      await target.query('ALTER TABLE moved_on ALTER COLUMN v SET NOT NULL', [], 'app');
      await waitFor('drift cleared', async () => (await status()).drift === null, 30_000, 100);
    } finally {
      await writer.stop();
    }
    const stopped = Date.now();
    expect(writer.written()).toBeGreaterThan(100);
    await waitFor(
      'drained',
      async () => {
        const s = await status();
        return s.phase === 'replicating' && drainedSince(s, stopped);
      },
      60_000,
      200,
    );
    await expectEqual('app');
  }, 300_000);

  it('--drift additive adds new nullable and defaulted columns and new indexes to the target without pausing', async () => {
    const { status } = await startDaemon('additive', ['--drift', 'additive']);
    const writer = startWriter(source.url({ db: 'additive' }));
    let sawPause = false;
    const watch = setInterval(() => {
      status()
        .then((s) => {
          if (s.phase === 'paused') sawPause = true;
        })
        .catch(() => {});
    }, 50);
    try {
      await source.query(`ALTER TABLE items ADD COLUMN note text`, [], 'additive');
      await source.query(
        `ALTER TABLE items ADD COLUMN born timestamptz NOT NULL DEFAULT now()`,
        [],
        'additive',
      );
      writer.extra = `, note = 'n' || n`;
      await waitFor(
        'columns on the target',
        async () => {
          const r = await target.query(
            `SELECT count(*)::text AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name IN ('note', 'born')`,
            [],
            'additive',
          );
          return r[0]?.n === '2';
        },
        30_000,
        100,
      );
      // New indexes and a unique constraint, on an ordinary and on a partitioned table.
      await source.query(
        `CREATE INDEX items_note ON items (note);
         ALTER TABLE items ADD CONSTRAINT items_born_id UNIQUE (born, id);
         CREATE INDEX events_v ON events (v);`,
        [],
        'additive',
      );
      await waitFor(
        'indexes on the target',
        async () => {
          const r = await target.query(
            `SELECT string_agg(indexname, ' ' ORDER BY indexname) AS names FROM pg_indexes
              WHERE indexname IN ('items_note', 'items_born_id', 'events_v', 'events_eu_v_idx')`,
            [],
            'additive',
          );
          return r[0]?.names === 'events_eu_v_idx events_v items_born_id items_note';
        },
        30_000,
        200,
      );
      const [con] = await target.query(
        `SELECT contype FROM pg_constraint WHERE conname = 'items_born_id'`,
        [],
        'additive',
      );
      expect(con?.contype).toBe('u');
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      clearInterval(watch);
      await writer.stop();
    }
    const stopped = Date.now();
    expect(sawPause).toBe(false);
    await waitFor('drained', async () => drainedSince(await status(), stopped), 60_000, 200);
    await expectEqual('additive');
  }, 180_000);
});
