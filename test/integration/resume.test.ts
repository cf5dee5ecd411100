// kill -9 during the copy, restart with the same state: finished chunks are not copied again
// (shown from the checkpoint store), a chunk that may have committed unseen is looked up by its
// mark on the target and copied again if it did not, and the target ends equal. Also: one process per state file, and a resume
// with another setup is refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore, type ChunkRecord } from '../../checkpoints/store.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-resume-'));
  await source.query('CREATE DATABASE shop');
  await source.query(
    `CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now());
     INSERT INTO events SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;
     CREATE TABLE notes (k text PRIMARY KEY, body text);
     INSERT INTO notes SELECT 'note-' || g, repeat('x', g % 200) FROM generate_series(1, 60000) g;
     ANALYZE;`,
    [],
    'shop',
  );
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const readChunks = (state: string): ChunkRecord[] => {
  const store = CheckpointStore.open(state, { create: false, readonly: true });
  try {
    return store.chunks();
  } finally {
    store.close();
  }
};

describe('a copy killed with SIGKILL resumes', () => {
  it('keeps finished chunks, recopies unfinished ones and ends equal', async () => {
    await target.query('CREATE DATABASE shop_a');
    const state = path.join(dir, 'a.sqlite');
    const args = [
      'migrate',
      '--copy-only',
      '--source',
      source.url({ db: 'shop' }),
      '--target',
      target.url({ db: 'shop_a' }),
      '--state',
      state,
      '--jobs',
      '1',
      '--chunk-size',
      '1MB',
    ];
    const first = startCli(args);
    const doneBefore = await waitFor('three finished chunks', () => {
      const done = readChunks(state).filter((c) => c.status === 'done');
      return done.length >= 3 ? done : undefined;
    });

    // While it runs, a second process on the same state file is refused.
    const second = await runCli(args);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('PGFERRY_STATE_LOCKED');

    first.child.kill('SIGKILL');
    const killed = await first.done;
    expect(killed.signal).toBe('SIGKILL');

    const atKill = readChunks(state);
    const finished = atKill.filter((c) => c.status === 'done');
    expect(finished.length).toBeGreaterThanOrEqual(doneBefore.length);
    expect(finished.length).toBeLessThan(atKill.length);

    // A chunk whose target transaction committed just before the crash, but was not yet marked
    // done, is indistinguishable from one still copying: pretend the last finished one is such.
    const replayed = finished[finished.length - 1]!;
    const db = new Database(state);
    db.prepare("UPDATE chunks SET status = 'copying' WHERE id = ?").run(replayed.id);
    db.close();

    const resumed = await runCli(args);
    expect(resumed.stderr).not.toContain(SUPERUSER_PASSWORD);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('(resumed)');

    const after = new Map(readChunks(state).map((c) => [c.id, c]));
    for (const c of finished) {
      const now = after.get(c.id)!;
      expect(now.status).toBe('done');
      // Copied once: the resume did not start it again (except the one made to look unfinished).
      expect(now.attempts).toBe(c.id === replayed.id ? 2 : 1);
    }
    expect([...after.values()].every((c) => c.status === 'done')).toBe(true);

    const cmp = await compareDatabases(source.url({ db: 'shop' }), target.url({ db: 'shop_a' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});

describe('the state file belongs to one run', () => {
  it('refuses a resume with another target or filter', async () => {
    await target.query('CREATE DATABASE shop_b');
    await target.query('CREATE DATABASE shop_c');
    const state = path.join(dir, 'b.sqlite');
    const base = ['migrate', '--copy-only', '--source', source.url({ db: 'shop' }), '--state', state];
    const ok = await runCli([...base, '--target', target.url({ db: 'shop_b' }), '--include', 'public.notes']);
    expect(ok.code, ok.stderr).toBe(0);

    const otherTarget = await runCli([
      ...base,
      '--target',
      target.url({ db: 'shop_c' }),
      '--include',
      'public.notes',
    ]);
    expect(otherTarget.code).toBe(2);
    expect(otherTarget.stderr).toContain('PGFERRY_STATE_MISMATCH');
    expect(otherTarget.stderr).toContain('target was postgres@127.0.0.1');
    expect(otherTarget.stderr).not.toContain(SUPERUSER_PASSWORD);

    const otherFilter = await runCli([...base, '--target', target.url({ db: 'shop_b' })]);
    expect(otherFilter.code).toBe(2);
    expect(otherFilter.stderr).toContain('--include was [public.notes]');

    // The same setup again is a resume of a finished run: nothing to do, exit 0.
    const again = await runCli([
      ...base,
      '--target',
      target.url({ db: 'shop_b' }),
      '--include',
      'public.notes',
    ]);
    expect(again.code, again.stderr).toBe(0);
    const rows = await target.query<{ n: string }>('SELECT count(*) AS n FROM notes', [], 'shop_b');
    expect(Number(rows[0]!.n)).toBe(60000);
    const tables = await target.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'",
      [],
      'shop_b',
    );
    expect(Number(tables[0]!.n)).toBe(1);
  });

  it('refuses a new run into a target that is not empty', async () => {
    await target.query('CREATE DATABASE shop_d');
    await target.query('CREATE TABLE leftover (id int)', [], 'shop_d');
    const res = await runCli([
      'migrate',
      '--copy-only',
      '--source',
      source.url({ db: 'shop' }),
      '--target',
      target.url({ db: 'shop_d' }),
      '--state',
      path.join(dir, 'd.sqlite'),
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('PGFERRY_TARGET_NOT_EMPTY');
    expect(res.stderr).toContain('public.leftover');
  });
});
