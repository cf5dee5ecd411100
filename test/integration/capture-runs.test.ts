// Each run has a capture of its own on the source: two runs from one source into two targets under
// a live workload both end equal to the source; preflight lists the captures already there;
// `cleanup --run` removes one run and leaves the other working; a run started over an abandoned
// capture cuts over without pgferry's triggers reaching the target; and cleanup refuses under a
// live run unless --force, after which that run stops with PGFERRY_CAPTURE_REMOVED, for good.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { type CliResult, runCli, startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';
import { startWorkload, WORKLOAD_SCHEMA } from '../support/workload.js';

const pair = clusterPair({ name: 'capture-runs', db: 'shop', sourceSql: WORKLOAD_SCHEMA });

const sourceUrl = () => pair.source.url({ db: 'shop' });
const statePath = (name: string) => path.join(pair.dir, `${name}.sqlite`);

/** `migrate` from the source into the target database `name`, with its own state file. */
const migrateArgs = (name: string, ...extra: string[]) => [
  'migrate',
  '--source',
  sourceUrl(),
  '--target',
  pair.target.url({ db: name }),
  '--state',
  statePath(name),
  '--jobs',
  '2',
  ...extra,
];

function readState<T>(name: string, f: (s: CheckpointStore) => T): T | undefined {
  if (!fs.existsSync(statePath(name))) return undefined;
  const store = CheckpointStore.open(statePath(name), { create: false, readonly: true });
  try {
    return f(store);
  } finally {
    store.close();
  }
}

const replicating = (name: string) =>
  waitFor(`${name} replicating`, () => readState(name, (s) => s.phase() === 'replicating'));
const runIdOf = (name: string) => readState(name, (s) => s.runId())!;

async function within(run: ReturnType<typeof startCli>, ms: number, what: string): Promise<CliResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      run.done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          run.child.kill('SIGKILL');
          reject(new Error(`${what} did not end in ${ms / 1000}s:\n${run.output().stderr.slice(-3000)}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function expectEqual(name: string): Promise<void> {
  const cmp = await compareDatabases(sourceUrl(), pair.target.url({ db: name }));
  expect(Object.keys(cmp.source).length).toBeGreaterThan(5);
  expect(cmp.target, name).toEqual(cmp.source);
}

/** Triggers on the database's tables that call into the pgferry schema (or carry pgferry's names). */
const pgferryTriggers = async (cluster: typeof pair.source, db: string) =>
  (
    await cluster.query<{ name: string }>(
      `SELECT t.tgname AS name FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE NOT t.tgisinternal AND (n.nspname = 'pgferry' OR t.tgname LIKE 'pgferry%') ORDER BY 1`,
      [],
      db,
    )
  ).map((r) => r.name);

describe('one capture per run', () => {
  it('two runs from one source into two targets under a live workload: both equal the source', async () => {
    await pair.target.query('CREATE DATABASE two_a');
    await pair.target.query('CREATE DATABASE two_b');
    const workload = startWorkload(sourceUrl());
    const a = startCli(migrateArgs('two_a'));
    let b: ReturnType<typeof startCli> | undefined;
    try {
      // The second run starts while the first replicates (and its capture records every write).
      await replicating('two_a');
      b = startCli(migrateArgs('two_b'));
      await replicating('two_b');
      // Both replicate while the application writes.
      await new Promise((r) => setTimeout(r, 4000));
    } finally {
      const done = await workload.stop();
      expect(done.errors).toEqual([]);
      expect(done.operations).toBeGreaterThan(50);
      a.child.kill('SIGTERM');
      b?.child.kill('SIGTERM');
    }
    for (const [run, name] of [
      [a, 'two_a'],
      [b!, 'two_b'],
    ] as const) {
      const res = await within(run, 60_000, name);
      expect(res.code, res.stderr.slice(-2000)).toBe(0);
    }
    expect(runIdOf('two_a')).not.toBe(runIdOf('two_b'));
    // Each run drains its own log.
    for (const name of ['two_a', 'two_b']) {
      const res = await runCli(migrateArgs(name, '--exit-when-synced'));
      expect(res.code, res.stderr.slice(-2000)).toBe(0);
      await expectEqual(name);
    }
    const rows = await pair.source.query<{ run_id: string; n: number }>(
      'SELECT run_id, count(*)::int AS n FROM pgferry.captured GROUP BY 1 ORDER BY 1',
      [],
      'shop',
    );
    expect(rows.map((r) => r.run_id)).toEqual([runIdOf('two_a'), runIdOf('two_b')].sort());
  });

  it('preflight reports the captures already on the source, with their run ids (text and --json)', async () => {
    await pair.target.query('CREATE DATABASE pre');
    const args = ['preflight', '--source', sourceUrl(), '--target', pair.target.url({ db: 'pre' })];
    const text = await runCli(args);
    expect(text.code, text.stderr).toBe(0);
    for (const name of ['two_a', 'two_b']) {
      expect(text.stdout).toContain(`run ${runIdOf(name)}`);
      expect(text.stdout).toContain(statePath(name));
      expect(text.stdout).toContain(`pgferry cleanup --source URL --run ${runIdOf(name)}`);
    }
    const json = await runCli([...args, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as {
      captures: { runId: string; stateFile: string; alive: boolean; tables: number }[];
      warnings: { code: string; object?: string }[];
    };
    expect(report.captures.map((c) => [c.runId, c.stateFile, c.alive]).sort()).toEqual(
      [
        [runIdOf('two_a'), statePath('two_a'), false],
        [runIdOf('two_b'), statePath('two_b'), false],
      ].sort(),
    );
    expect(report.captures.every((c) => c.tables === 6)).toBe(true);
    expect(
      report.warnings
        .filter((w) => w.code === 'capture-abandoned')
        .map((w) => w.object)
        .sort(),
    ).toEqual([runIdOf('two_a'), runIdOf('two_b')].sort());
  });

  it("cleanup --run removes one run's capture and leaves the other's working", async () => {
    const gone = runIdOf('two_a');
    const kept = runIdOf('two_b');
    const res = await runCli(['cleanup', '--source', sourceUrl(), '--run', gone]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain(`run ${gone}`);
    expect(res.stdout).toContain(`trigger pgferry_capture_${gone} on accounts`);
    expect(res.stdout).not.toContain(kept);
    const triggers = await pgferryTriggers(pair.source, 'shop');
    expect(triggers.filter((t) => t.includes(gone))).toEqual([]);
    expect(triggers.filter((t) => t.includes(kept)).length).toBeGreaterThan(0);
    const logs = await pair.source.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'pgferry' AND c.relname LIKE 'log\\_${gone}\\_%'`,
      [],
      'shop',
    );
    expect(logs[0]!.n).toBe(0);

    // The other run replicates what is written after the removal.
    await pair.source.query(
      `UPDATE accounts SET balance = balance + 1 WHERE id % 10 = 0;
       DELETE FROM kv WHERE k LIKE 'k1%';
       INSERT INTO events SELECT g, 'eu', '{}' FROM generate_series(900000001, 900000100) g;`,
      [],
      'shop',
    );
    const b = await runCli(migrateArgs('two_b', '--exit-when-synced'));
    expect(b.code, b.stderr.slice(-2000)).toBe(0);
    expect(b.stdout).toMatch(/[1-9][\d,]* changes replayed/);
    await expectEqual('two_b');

    // The removed run cannot go on, and says so before writing anything.
    const a = await runCli(migrateArgs('two_a', '--exit-when-synced'));
    expect(a.code).toBe(1);
    expect(a.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
    expect(a.stderr).toContain('start afresh with a new --state file');
    expect(a.stderr).not.toContain('run the same command again');
  });

  it('a run started over an abandoned capture cuts over without pgferry triggers on the target', async () => {
    // two_b's capture is on the source, its run stopped: its triggers are in the post-data dump.
    expect((await pgferryTriggers(pair.source, 'shop')).length).toBeGreaterThan(0);
    await pair.target.query('CREATE DATABASE over');
    const res = await runCli(
      migrateArgs('over', '--cutover-when-synced', '--freeze', 'external', '--settle', '1s'),
    );
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    expect(res.stdout).toContain('cutover done');
    expect(await pgferryTriggers(pair.target, 'over')).toEqual([]);
    // The application's own trigger did reach the target.
    const audit = await pair.target.query(
      'SELECT 1 FROM pg_trigger WHERE tgname = $1',
      ['accounts_audit'],
      'over',
    );
    expect(audit).toHaveLength(1);
    await expectEqual('over');
  });

  it("a live run's heartbeat is on the source; a run whose registry row is gone stops with PGFERRY_CAPTURE_REMOVED", async () => {
    await pair.target.query('CREATE DATABASE beat');
    const run = startCli(migrateArgs('beat'));
    try {
      await replicating('beat');
      const id = runIdOf('beat');
      const [row] = await pair.source.query<{ age: number; pid: number; stopped: boolean }>(
        `SELECT extract(epoch FROM now() - heartbeat_at)::float8 AS age, pid, stopped_at IS NOT NULL AS stopped
           FROM pgferry.runs WHERE run_id = $1`,
        [id],
        'shop',
      );
      expect(row!.age).toBeLessThan(15);
      expect(row!.pid).toBe(run.child.pid);
      expect(row!.stopped).toBe(false);
      // The log tables stay: only the heartbeat can notice.
      await pair.source.query('DELETE FROM pgferry.runs WHERE run_id = $1', [id], 'shop');
      const res = await within(run, 40_000, 'the run without its registry row');
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
      expect(res.stderr).toContain(`run ${id}`);
    } finally {
      run.child.kill('SIGKILL');
    }
  });

  it('cleanup refuses under a live run; --force removes it, and the run stops with PGFERRY_CAPTURE_REMOVED', async () => {
    await pair.target.query('CREATE DATABASE live');
    const run = startCli(migrateArgs('live'));
    try {
      await replicating('live');
      const id = runIdOf('live');
      for (const extra of [[], ['--run', id]]) {
        const refused = await runCli(['cleanup', '--source', sourceUrl(), ...extra]);
        expect(refused.code, refused.stdout).toBe(1);
        expect(refused.stderr).toContain('PGFERRY_CLEANUP_REFUSED');
        expect(refused.stderr).toContain(`run ${id}`);
        expect(refused.stderr).toContain(statePath('live'));
        expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      }
      // Nothing was removed: the run still replicates.
      await pair.source.query("UPDATE kv SET v = 'during' WHERE k = 'k5'", [], 'shop');
      await waitFor('the change replicated', async () => {
        const rows = await pair.target.query<{ v: string }>("SELECT v FROM kv WHERE k = 'k5'", [], 'live');
        return rows[0]?.v === 'during';
      });

      const forced = await runCli(['cleanup', '--source', sourceUrl(), '--force']);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toContain(`run ${id}`);
      expect(forced.stdout).toContain('schema pgferry');
      const res = await within(run, 60_000, 'the live run');
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
      expect(res.stderr).toContain('start afresh with a new --state file and an empty target');
      expect(res.stderr).not.toContain('run the same command again');
    } finally {
      run.child.kill('SIGKILL');
    }
    const again = await runCli(migrateArgs('live'));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('PGFERRY_CAPTURE_REMOVED');
    expect(again.stderr).not.toContain('run the same command again');
    expect(await pgferryTriggers(pair.source, 'shop')).toEqual([]);
  });
});
