// A standby where pgferry must write: a source that is a Heroku follower or a read replica (the
// capture writes its triggers and logs there), a target that is a read replica. Preflight names
// it and a new run refuses before writing anything anywhere; before, the run failed on its first
// write with the target's schema already created. A --copy-only run reads from a standby.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import type { Cluster } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';

const SCHEMA = `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g;`;

/** Restarts the cluster as a standby (in recovery, read-only) with no primary to follow. */
async function asStandby(c: Cluster, on: boolean): Promise<void> {
  const signal = path.join(c.dataDir, 'standby.signal');
  if (on) fs.writeFileSync(signal, '');
  else fs.rmSync(signal, { force: true });
  await c.restart('fast');
}

const tablesOf = (c: Cluster, db: string) =>
  c.query(
    `SELECT n.nspname || '.' || c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    [],
    db,
  );

describe('a standby where pgferry writes', () => {
  const pair = clusterPair({ name: 'standby', sourceSql: SCHEMA });

  it('a source standby: refused before anything is written, and copied from with --copy-only', async () => {
    await asStandby(pair.source, true);
    const pre = await runCli(['preflight', ...pair.migrate().slice(1, 5), '--json']);
    expect(pre.code).toBe(1);
    expect(JSON.parse(pre.stdout).problems.map((p: { code: string }) => p.code)).toEqual(['source-standby']);

    const run = await runCli(pair.migrate('--exit-when-synced'));
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('PGFERRY_PREFLIGHT_PROBLEMS');
    expect(run.stderr).toContain('--copy-only');
    expect(await tablesOf(pair.target, pair.db)).toEqual([]);

    const copy = await runCli(pair.migrate('--copy-only'));
    expect(copy.code, copy.stderr.slice(-2000)).toBe(0);
    const verify = await runCli(['verify', ...pair.migrate().slice(1, 5), '--checksums']);
    expect(verify.code, verify.stdout).toBe(0);
    await asStandby(pair.source, false);
  }, 120_000);

  it('a target standby: refused before anything is written on either side', async () => {
    await pair.target.query(`DROP DATABASE ${pair.db}`);
    await pair.target.query(`CREATE DATABASE ${pair.db}`);
    await asStandby(pair.target, true);
    const pre = await runCli(['preflight', ...pair.migrate().slice(1, 5), '--json']);
    expect(pre.code).toBe(1);
    expect(JSON.parse(pre.stdout).problems.map((p: { code: string }) => p.code)).toEqual(['target-standby']);

    const run = await runCli([
      ...pair.migrate().slice(0, 5),
      '--state',
      path.join(pair.dir, 'b.sqlite'),
      '--exit-when-synced',
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('PGFERRY_PREFLIGHT_PROBLEMS');
    expect(run.stderr).toContain('standby');
    expect(await tablesOf(pair.source, pair.db)).toEqual([{ t: 'public.t' }]);
  }, 120_000);
});
