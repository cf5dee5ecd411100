// `migrate --json` and `cutover --json`: stdout carries exactly one JSON document, the run's
// outcome (copy-only, synced, cut over, stopped) with its figures, or the error in the shape every
// command uses ({ok: false, error}); logs stay on stderr.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CUTOVER_STEPS } from '../../engine/cutover/freeze-record.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { waitFor } from '../support/wait.js';

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3000) g;
CREATE SEQUENCE invoice_no START 500;
SELECT nextval('invoice_no');
CREATE MATERIALIZED VIEW item_count AS SELECT count(*) AS n FROM items;
`;

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-json-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A database of this name on both sides, the source's filled; the flags of a run between them. */
async function prepare(db: string): Promise<string[]> {
  await Promise.all([source.query(`CREATE DATABASE ${db}`), target.query(`CREATE DATABASE ${db}`)]);
  await source.query(SCHEMA, [], db);
  return [
    '--source',
    source.url({ db }),
    '--target',
    target.url({ db }),
    '--state',
    path.join(dir, `${db}.sqlite`),
  ];
}

/** stdout is one JSON document and nothing else; every stderr line is a JSON log line. */
function parseOnly(res: { stdout: string; stderr: string }): Record<string, unknown> {
  const doc = JSON.parse(res.stdout) as Record<string, unknown>;
  expect(typeof doc).toBe('object');
  for (const line of res.stderr.trim().split('\n').filter(Boolean)) {
    expect((JSON.parse(line) as { level: string }).level).toMatch(/^(info|warn|error)$/);
  }
  return doc;
}

const RUN_ID = /^[0-9a-f]{10}$/;

describe('migrate --json', () => {
  it('--copy-only prints the outcome, phase, copy totals, run id and state', async () => {
    const flags = await prepare('json_copy');
    const res = await runCli(['migrate', '--copy-only', '--json', ...flags]);
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const doc = parseOnly(res);
    expect(doc).toMatchObject({
      ok: true,
      outcome: 'copy-only',
      mode: 'copy-only',
      phase: 'done',
      state: flags[5],
      resumed: false,
      copy: { tables: 1, rows: 3000 },
      sequences: 1,
      replay: null,
      cutover: null,
    });
    expect(doc.runId).toMatch(RUN_ID);
    expect((doc.copy as { bytes: number }).bytes).toBeGreaterThan(0);
    expect(doc.seconds).toBeGreaterThan(0);
  });

  it('--exit-when-synced prints the replay totals; then `pgferry cutover --json` the cutover', async () => {
    const flags = await prepare('json_sync');
    const res = await runCli(['migrate', '--exit-when-synced', '--json', ...flags]);
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const doc = parseOnly(res);
    expect(doc).toMatchObject({
      ok: true,
      outcome: 'exit-when-synced',
      mode: 'exit-when-synced',
      phase: 'replicating',
      copy: { tables: 1, rows: 3000 },
      sequences: null,
      cutover: null,
    });
    expect(doc.runId).toMatch(RUN_ID);
    expect(doc.replay).toMatchObject({ backlog: 0, appliedTotal: expect.any(Number) });

    await source.query(
      `INSERT INTO items VALUES (5000, 'late'); SELECT nextval('invoice_no')`,
      [],
      'json_sync',
    );
    const cut = await runCli(['cutover', '--json', '--freeze', 'readonly', ...flags]);
    expect(cut.code, cut.stderr.slice(-2000)).toBe(0);
    const c = parseOnly(cut);
    expect(c).toMatchObject({
      ok: true,
      runId: doc.runId,
      state: flags[5],
      phase: 'done',
      freeze: 'readonly',
      changesDrained: expect.any(Number),
      sequences: 1,
      materializedViews: 1,
      verify: { checksums: false, equal: true, tables: 1 },
      completedInterrupted: false,
    });
    expect(c.downtimeSeconds).toBeGreaterThan(0);
    expect(Date.parse(c.frozenAt as string)).not.toBeNaN();
    expect((c.steps as { step: string }[]).map((s) => s.step)).toEqual([...CUTOVER_STEPS]);
    const late = await target.query('SELECT name FROM items WHERE id = 5000', [], 'json_sync');
    expect(late).toEqual([{ name: 'late' }]);
  });

  it('--cutover-when-synced carries the cutover and its downtime', async () => {
    const flags = await prepare('json_cut');
    const res = await runCli([
      'migrate',
      '--cutover-when-synced',
      '--freeze',
      'readonly',
      '--json',
      ...flags,
    ]);
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const doc = parseOnly(res);
    expect(doc).toMatchObject({
      ok: true,
      outcome: 'cutover-when-synced',
      phase: 'done',
      cutover: {
        freeze: 'readonly',
        sequences: 1,
        materializedViews: 1,
        verify: { equal: true },
      },
    });
    const cutover = doc.cutover as { downtimeSeconds: number; steps: { step: string }[] };
    expect(cutover.downtimeSeconds).toBeGreaterThan(0);
    expect(cutover.steps.at(-1)?.step).toBe('target ready');
  });

  it('a replicating run stopped by SIGTERM says stopped, exit 0', async () => {
    const flags = await prepare('json_stop');
    const run = startCli(['migrate', '--json', ...flags]);
    await Promise.race([
      waitFor('replicating', () => run.output().stderr.includes('replicating started')),
      run.done.then((r) => {
        throw new Error(`migrate exited (${r.code}) before replicating: ${r.stderr.slice(-2000)}`);
      }),
    ]);
    run.child.kill('SIGTERM');
    const res = await run.done;
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    const doc = parseOnly(res);
    expect(doc).toMatchObject({ ok: true, outcome: 'stopped', mode: 'run', phase: 'replicating' });
    expect(doc.runId).toMatch(RUN_ID);
  });

  it('a failing run prints the JSON error on stdout and exits 2', async () => {
    await source.query('CREATE DATABASE json_fail');
    const res = await runCli([
      'migrate',
      '--copy-only',
      '--json',
      '--source',
      source.url({ db: 'json_fail' }),
      '--target',
      'postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2',
      '--state',
      path.join(dir, 'json_fail.sqlite'),
    ]);
    expect(res.code).toBe(2);
    const doc = JSON.parse(res.stdout) as { ok: boolean; error: { code: string; side: string } };
    expect(doc.ok).toBe(false);
    expect(doc.error.code).toMatch(/^PGFERRY_/);
    expect(doc.error.side).toBe('target');
    expect(res.stderr).toContain(doc.error.code);
  });
});
