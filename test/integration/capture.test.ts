// Capture installs each trigger under a short lock_timeout and retries: a table locked for a
// moment is captured once the lock goes; a table that stays locked is reported by name.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-capture-'));
  await source.query('CREATE DATABASE app');
  await source.query(
    `CREATE TABLE busy (id int PRIMARY KEY, v text);
     INSERT INTO busy SELECT g, 'v' FROM generate_series(1, 100) g;`,
    [],
    'app',
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A session that writes to the table and keeps its transaction open: it holds ROW EXCLUSIVE. */
async function holdWriterLock(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: source.url({ db: 'app' }) });
  await c.connect();
  await c.query('BEGIN');
  await c.query("UPDATE busy SET v = 'held' WHERE id = 1");
  return c;
}

describe('capture install on a locked table', () => {
  it('reports a table that stays locked, by name, without queueing the application for long', async () => {
    await target.query('CREATE DATABASE t1');
    const holder = await holdWriterLock();
    try {
      const started = Date.now();
      const res = await runCli([
        'migrate',
        '--exit-when-synced',
        '--source',
        source.url({ db: 'app' }),
        '--target',
        target.url({ db: 't1' }),
        '--state',
        path.join(dir, 't1.sqlite'),
        '--capture-lock-wait',
        '3s',
      ]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('PGFERRY_CAPTURE_LOCKED');
      expect(res.stderr).toContain('public.busy');
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    const triggers = await source.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'pgferry%'",
      [],
      'app',
    );
    expect(Number(triggers[0]!.n)).toBe(0);
  });

  it('retries until a short lock is gone, then captures', async () => {
    await target.query('CREATE DATABASE t2');
    const holder = await holdWriterLock();
    const release = setTimeout(() => {
      void holder.query('COMMIT').then(() => holder.end());
    }, 5000);
    try {
      const res = await runCli([
        'migrate',
        '--exit-when-synced',
        '--source',
        source.url({ db: 'app' }),
        '--target',
        target.url({ db: 't2' }),
        '--state',
        path.join(dir, 't2.sqlite'),
      ]);
      expect(res.code, res.stderr.slice(-2000)).toBe(0);
      expect(res.stderr).toContain('retrying the capture install');
    } finally {
      clearTimeout(release);
    }
    const rows = await target.query<{ v: string }>('SELECT v FROM busy WHERE id = 1', [], 't2');
    expect(rows[0]!.v).toBe('held');
  });
});
