// Issue 11, part 2: outages are waited out. One daemon, never restarted, rides through links cut
// mid-COPY and mid-batch on each side and through restarts of each server (immediate and fast)
// during the copy and during replay under a live workload; status shows each outage while it
// lasts; the target ends equal. An outage longer than --retry-for fails, naming the side and the
// time it tried.
import path from 'node:path';

import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { runCli, startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { startProxy } from '../support/proxy.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';
import { startWorkload, WORKLOAD_SCHEMA } from '../support/workload.js';

// The workload's tables, and one big enough that the copy lasts while the test cuts and restarts.
const SCHEMA = `${WORKLOAD_SCHEMA}
CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 400000) g;
ANALYZE big;
`;

const pair = clusterPair({ name: 'outage', db: 'shop', sourceSql: SCHEMA });

interface Status {
  phase: string;
  backlog: number | null;
  replay: { at: string; backlog: number } | null;
  outage: { source: { attempts: number } | null; target: { attempts: number } | null } | null;
}

const direct = (db: string) => ({ source: pair.source.url({ db }), target: pair.target.url({ db }) });

/** `migrate` as a daemon, in small chunks (an outage lands mid-copy), its API on `port`. */
const daemonArgs = (
  urls: { source: string; target: string },
  state: string,
  port: number,
  ...extra: string[]
) => [
  'migrate',
  '--source',
  urls.source,
  '--target',
  urls.target,
  '--state',
  state,
  ...extra,
  '--jobs',
  '2',
  '--chunk-size',
  '2MB',
  '--http',
  `127.0.0.1:${port}`,
];

/** Fails at once when the daemon has exited, instead of waiting out a test's timeout. */
function alive(daemon: ReturnType<typeof startCli>): void {
  if (daemon.child.exitCode !== null) {
    throw new Error(`the daemon exited (${daemon.child.exitCode}):\n${daemon.output().stderr.slice(-3000)}`);
  }
}

async function status(api: string): Promise<Status> {
  return (await (await fetch(`${api}/status`)).json()) as Status;
}

function chunksDone(state: string): number {
  const store = CheckpointStore.open(state, { create: false, readonly: true });
  try {
    return store.tables().reduce((a, t) => a + t.chunksDone, 0);
  } finally {
    store.close();
  }
}

/** Waits until the daemon has copied `n` chunks, failing at once if it exits. */
async function copied(daemon: ReturnType<typeof startCli>, state: string, n: number, what: string) {
  await waitFor(
    what,
    () => {
      alive(daemon);
      return chunksDone(state) >= n;
    },
    90_000,
    10,
  );
}

/** Waits until the daemon's replay has drained what the stopped workload wrote. */
async function drained(api: string, after: number, daemon: ReturnType<typeof startCli>) {
  await waitFor(
    'the backlog to drain',
    async () => {
      alive(daemon);
      const s = await status(api);
      return s.replay !== null && Date.parse(s.replay.at) > after && s.replay.backlog === 0;
    },
    120_000,
    200,
  );
}

async function freshDatabases(db: string) {
  // A restart in immediate mode is a crash: with the harness's synchronous_commit=off, commits
  // acknowledged just before it would be lost on the server itself, whatever pgferry does.
  for (const c of [pair.source, pair.target]) {
    await c.query('ALTER SYSTEM SET synchronous_commit = on');
    await c.query('SELECT pg_reload_conf()');
  }
  await pair.source.query(`CREATE DATABASE ${db} TEMPLATE shop`);
  await pair.target.query(`CREATE DATABASE ${db}`);
}

describe('outages are waited out', () => {
  it('carries on through connections cut mid-COPY and mid-batch on each side', async () => {
    const db = 'cut';
    await freshDatabases(db);
    const proxyS = await startProxy(pair.source.port);
    const proxyT = await startProxy(pair.target.port);
    const state = path.join(pair.dir, `${db}.sqlite`);
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const urls = { source: proxyS.via(pair.source.url({ db })), target: proxyT.via(pair.target.url({ db })) };
    const daemon = startCli(daemonArgs(urls, state, port));
    const workload = startWorkload(pair.source.url({ db }), 2);
    try {
      await waitFor('the copy to be under way', () => chunksDone(state) >= 3, 90_000, 10);
      alive(daemon);
      expect(proxyT.cut()).toBeGreaterThan(0); // target sessions mid-COPY
      await copied(daemon, state, 8, 'more chunks');
      expect(proxyS.cut()).toBeGreaterThan(0); // source sessions mid-COPY
      await waitFor(
        'replication',
        async () => {
          alive(daemon);
          return (await status(api)).phase === 'replicating';
        },
        120_000,
        100,
      );
      for (const proxy of [proxyT, proxyS, proxyT]) {
        await new Promise((r) => setTimeout(r, 700));
        proxy.cut(); // mid-batch, under the workload
      }
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      await workload.stop();
    }
    const stoppedAt = Date.now();
    await drained(api, stoppedAt, daemon);
    expect(daemon.child.exitCode, daemon.output().stderr.slice(-3000)).toBeNull();
    // Every attempt closed its sessions: the source still sees a bounded number (--jobs 2: up to
    // three replay sessions with the one that plans slices, the run's and the replay loop's
    // control sessions, the heartbeat). A leak would add two or three per cut of the target.
    const [sessions] = await pair.source.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgferry' AND datname = $1",
      [db],
    );
    expect(sessions!.n).toBeLessThanOrEqual(8);
    daemon.child.kill('SIGTERM');
    const res = await daemon.done;
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect(res.stderr).toContain('unreachable: retrying');
    await Promise.all([proxyS.close(), proxyT.close()]);
    const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
  }, 240_000);

  // Between them, the two scenarios restart each server in each mode, during the copy (the first
  // restart) and during replay (the others).
  it.each([
    {
      name: 'target immediate in the copy; source fast, target fast, source immediate in replay',
      db: 'restarts_a',
      copy: { side: 'target', mode: 'immediate' },
      replay: [
        { side: 'source', mode: 'fast' },
        { side: 'target', mode: 'fast' },
        { side: 'source', mode: 'immediate' },
      ],
    },
    {
      name: 'source immediate in the copy; target immediate, source fast, target fast in replay',
      db: 'restarts_b',
      copy: { side: 'source', mode: 'immediate' },
      replay: [
        { side: 'target', mode: 'immediate' },
        { side: 'source', mode: 'fast' },
        { side: 'target', mode: 'fast' },
      ],
    },
  ] as const)(
    'rides through restarts ($name) and shows them',
    async ({ db, copy, replay }) => {
      await freshDatabases(db);
      const state = path.join(pair.dir, `${db}.sqlite`);
      const port = await freePort();
      const api = `http://127.0.0.1:${port}`;
      const daemon = startCli(daemonArgs(direct(db), state, port));
      const seen = { source: false, target: false };
      const watch = setInterval(() => {
        status(api)
          .then((s) => {
            if (s.outage?.source) seen.source = true;
            if (s.outage?.target) seen.target = true;
          })
          .catch(() => {});
      }, 50);
      const workload = startWorkload(pair.source.url({ db }), 2);
      try {
        await waitFor('the copy to be under way', () => chunksDone(state) >= 3, 90_000, 10);
        await pair[copy.side].restart(copy.mode, 1500);
        await waitFor('replication', async () => (await status(api)).phase === 'replicating', 180_000, 100);
        for (const r of replay) {
          await pair[r.side].restart(r.mode, 1000);
          await new Promise((resolve) => setTimeout(resolve, 1500));
        }
      } finally {
        await workload.stop();
        clearInterval(watch);
      }
      await drained(api, Date.now(), daemon);
      expect(daemon.child.exitCode, daemon.output().stderr.slice(-3000)).toBeNull();
      expect(seen).toEqual({ source: true, target: true });
      const metrics = await (await fetch(`${api}/metrics`)).text();
      expect(metrics).toMatch(/pgferry_reconnects_total\{side="source"\} [1-9]/);
      expect(metrics).toMatch(/pgferry_reconnects_total\{side="target"\} [1-9]/);
      expect((await status(api)).outage).toBeNull();
      daemon.child.kill('SIGTERM');
      const res = await daemon.done;
      expect(res.code, res.stderr.slice(-3000)).toBe(0);
      const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
      expect(cmp.target).toEqual(cmp.source);
    },
    240_000,
  );

  it('verify starts over after a connection cut mid-comparison', async () => {
    const db = 'vfy';
    await freshDatabases(db);
    const base = ['--source', pair.source.url({ db }), '--target', pair.target.url({ db })];
    const copied = await runCli([
      'migrate',
      '--copy-only',
      ...base,
      '--state',
      path.join(pair.dir, 'vfy.sqlite'),
    ]);
    expect(copied.code, copied.stderr.slice(-2000)).toBe(0);
    const proxyT = await startProxy(pair.target.port);
    const target = proxyT.via(pair.target.url({ db }));
    const run = startCli(['verify', '--checksums', '--source', pair.source.url({ db }), '--target', target]);
    await waitFor('the comparison to be under way', () => proxyT.open() >= 2, 30_000, 5);
    proxyT.cut();
    const res = await run.done;
    expect(res.code, res.stdout + res.stderr.slice(-2000)).toBe(0);
    expect(res.stderr).toContain('verify starts over');
    await proxyT.close();
  });

  it('a cutover waits out a target outage with writes frozen, then completes', async () => {
    const db = 'cutwait';
    await freshDatabases(db);
    const proxyT = await startProxy(pair.target.port);
    const state = path.join(pair.dir, `${db}.sqlite`);
    const target = proxyT.via(pair.target.url({ db }));
    const base = ['--source', pair.source.url({ db }), '--target', target, '--state', state];
    const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
    await pair.source.query("INSERT INTO kv VALUES ('before-cutover', 'x', NULL)", [], db);
    // --freeze external waits 2 s for quiet after the freeze: the target goes away meanwhile.
    const cut = startCli(['cutover', '--freeze', 'external', '--settle', '2s', ...base]);
    await waitFor(
      'the freeze',
      () => cut.output().stderr.includes('writes frozen on the source'),
      60_000,
      10,
    );
    proxyT.down();
    await new Promise((r) => setTimeout(r, 4_000));
    proxyT.up();
    const res = await cut.done;
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect(res.stderr).toContain('unreachable during the cutover: writes stay frozen');
    expect(res.stdout).toContain('cutover done');
    const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
    await proxyT.close();
  });

  // --capture logical: the slot's walsender dies with the server; the stream starts again from
  // the confirmed position (after an immediate restart, from the slot's last checkpointed one,
  // older: applied again, harmlessly).
  it('rides through restarts of the source with --capture logical (fast in the copy; fast, then immediate in replay)', async () => {
    const db = 'restarts_logical';
    await freshDatabases(db);
    const state = path.join(pair.dir, `${db}.sqlite`);
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const daemon = startCli(daemonArgs(direct(db), state, port, '--capture', 'logical'));
    const workload = startWorkload(pair.source.url({ db }), 2);
    try {
      await copied(daemon, state, 3, 'the copy to be under way');
      await pair.source.restart('fast', 1000);
      await waitFor('replication', async () => (await status(api)).phase === 'replicating', 180_000, 100);
      for (const mode of ['fast', 'immediate'] as const) {
        await new Promise((r) => setTimeout(r, 1500));
        await pair.source.restart(mode, 1000);
      }
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      const ran = await workload.stop();
      expect(ran.operations).toBeGreaterThan(50);
    }
    await drained(api, Date.now(), daemon);
    daemon.child.kill('SIGTERM');
    const res = await daemon.done;
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db }), pair.target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
  }, 240_000);

  it('fails an outage longer than --retry-for, naming the side and the time it tried', async () => {
    const db = 'gone';
    await freshDatabases(db);
    const proxyT = await startProxy(pair.target.port);
    const state = path.join(pair.dir, `${db}.sqlite`);
    const target = proxyT.via(pair.target.url({ db }));
    const base = ['--source', pair.source.url({ db }), '--target', target, '--state', state];
    const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
    proxyT.down();
    const c = new pg.Client({ connectionString: pair.source.url({ db }) });
    await c.connect();
    await c.query("INSERT INTO kv VALUES ('during-outage', 'x', NULL)");
    await c.end();
    const started = Date.now();
    const res = await runCli(['migrate', '--exit-when-synced', '--retry-for', '3s', ...base]);
    const took = Date.now() - started;
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('PGFERRY_TARGET_CONNECT');
    expect(res.stderr).toMatch(/the target was unreachable for \d+s \(\d+ attempts, --retry-for 3s\)/);
    expect(took).toBeGreaterThanOrEqual(3000);
    expect(took).toBeLessThan(30_000);
    // Up again: the same command resumes and delivers the row written during the outage.
    proxyT.up();
    const again = await runCli(['migrate', '--exit-when-synced', ...base]);
    expect(again.code, again.stderr.slice(-2000)).toBe(0);
    const rows = await pair.target.query("SELECT 1 FROM kv WHERE k = 'during-outage'", [], db);
    expect(rows).toHaveLength(1);
    await proxyT.close();
  });
});
