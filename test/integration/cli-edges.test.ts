// Issue 12, findings 7, 8 and 9: a chunk size that rounds to nothing is refused before anything
// runs; verify reaches a verdict or exits 2: comparing zero tables, or failing to compare, is an
// error; a damaged state file and three runs started at once on a new one end in one clear line;
// a connection pooler in place of the server is named as such.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';

const pair = clusterPair({
  name: 'cli-edges',
  db: 'app',
  sourceSql: `CREATE TABLE notes (id int PRIMARY KEY, body text);
              INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 100) g;`,
});

/** What pgferry said to the operator on stderr, without its JSON log lines. */
const said = (stderr: string) =>
  stderr
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('{'));

describe('edges of the command line', () => {
  it('refuses a --chunk-size that rounds to nothing (exit 2, one line)', async () => {
    for (const size of ['0.1', '100b']) {
      const res = await runCli(pair.migrate('--copy-only', '--chunk-size', size));
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain('below the smallest size');
      expect(said(res.stderr)).toHaveLength(1);
    }
  });

  it('stops cleanly on a SIGTERM that comes while the CLI is still loading, before touching either side', async () => {
    // Seen as an exit by the signal (no code) when a daemon was stopped right after its start.
    const early = { PGFERRY_TEST_SIGNAL_AT: 'cli:loading' };
    const state = path.join(pair.dir, 'early.sqlite');
    const args = pair.migrate().map((a) => (a.endsWith('state.sqlite') ? state : a));
    const run = await runCli(args, early);
    expect(run.code, `signal ${run.signal}: ${run.stderr}`).toBe(0);
    expect(run.stdout).toContain('stopped');
    expect(fs.existsSync(state)).toBe(false);
    const onTarget = await pair.target.query("SELECT 1 FROM pg_class WHERE relname = 'notes'", [], 'app');
    expect(onTarget).toEqual([]);
    const captured = await pair.source.query(
      "SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'",
      [],
      'app',
    );
    expect(captured).toEqual([]);
    const json = await runCli([...args, '--json'], early);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, outcome: 'stopped', phase: null, runId: null });
    expect(fs.existsSync(state)).toBe(false);
    // A command that does not stop on signals gets the default: ended by it, not held forever.
    const status = await runCli(['status', '--state', state], early);
    expect(status.signal).toBe('SIGTERM');
  });

  it('verify exits 2 when the filter matches nothing, and when a table cannot be compared', async () => {
    const base = [
      'verify',
      '--source',
      pair.source.url({ db: 'app' }),
      '--target',
      pair.target.url({ db: 'app' }),
    ];
    const none = await runCli([...base, '--include', 'public.nothing_like_this']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('nothing to compare');
    // The target lacks the table: no verdict, so not "different" (1) but an error (2).
    const missing = await runCli(base);
    expect(missing.code, missing.stdout + missing.stderr).toBe(2);
    expect(missing.stderr).toContain('PGFERRY_VERIFY_FAILED');
    expect(missing.stderr).toContain('notes');
  });

  it('says in one line that a state file whose setup cannot be read is damaged', async () => {
    const state = path.join(pair.dir, 'damaged.sqlite');
    CheckpointStore.open(state, { create: true }).close();
    const db = new Database(state);
    db.prepare('INSERT INTO meta (key, value) VALUES (\'setup\', \'{"runId": "r1", \')').run();
    db.close();
    for (const args of [
      pair.migrate('--copy-only').map((a) => (a.endsWith('state.sqlite') ? state : a)),
      ['status', '--state', state],
    ]) {
      const res = await runCli(args);
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain('PGFERRY_STATE_INVALID');
      expect(res.stderr).toContain(state);
      expect(res.stderr).not.toMatch(/SyntaxError|\n\s+at /);
      expect(said(res.stderr)).toHaveLength(1);
    }
  });

  it('lets one of three runs started at once on a new state file go on; the others say why in one line', async () => {
    await pair.target.query('CREATE DATABASE race');
    const state = path.join(pair.dir, 'race.sqlite');
    const args = [
      'migrate',
      '--copy-only',
      '--source',
      pair.source.url({ db: 'app' }),
      '--target',
      pair.target.url({ db: 'race' }),
      '--state',
      state,
    ];
    // Each waits a moment between finding the file new and creating its tables, as a slow disk would.
    const slow = { PGFERRY_TEST_DELAY_AT: 'state:create=1500' };
    const runs = await Promise.all([runCli(args, slow), runCli(args, slow), runCli(args, slow)]);
    const won = runs.filter((r) => r.code === 0);
    expect(won, runs.map((r) => r.stderr).join('\n---\n')).toHaveLength(1);
    for (const lost of runs.filter((r) => r.code !== 0)) {
      expect(lost.code, lost.stderr).toBe(2);
      expect(lost.stderr).toContain('PGFERRY_STATE_LOCKED');
      expect(lost.stderr).not.toMatch(/already exists|\n\s+at /);
      expect(said(lost.stderr)).toHaveLength(1);
    }
    const rows = await pair.target.query<{ n: string }>('SELECT count(*) AS n FROM notes', [], 'race');
    expect(Number(rows[0]!.n)).toBe(100);
  });

  it('says that a connection pooler answered, and gives up at once', async () => {
    // A pooler's answer to pgferry's startup packet, as pgbouncer gives it (TLS declined first).
    const pooler = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.once('data', function answer(buf: Buffer) {
        if (buf.length === 8 && buf.readInt32BE(4) === 80877103) {
          sock.write('N');
          sock.once('data', answer);
          return;
        }
        const fields = ['SFATAL', 'VFATAL', 'C08P01', 'Munsupported startup parameter: options'];
        const body = Buffer.from(`${fields.join('\0')}\0\0`);
        const head = Buffer.alloc(5);
        head.write('E', 0);
        head.writeInt32BE(body.length + 4, 1);
        sock.end(Buffer.concat([head, body]));
      });
    });
    await new Promise<void>((r) => pooler.listen(0, '127.0.0.1', r));
    const url = `postgresql://app:pw@127.0.0.1:${(pooler.address() as net.AddressInfo).port}/app`;
    try {
      const started = Date.now();
      const res = await runCli(['migrate', '--source', url, ...pair.migrate('--exit-when-synced').slice(3)]);
      expect(res.code, res.stderr).toBe(2);
      expect(said(res.stderr).join('\n')).toContain('A connection pooler answered');
      expect(said(res.stderr).join('\n')).toContain('DATABASE_CONNECTION_POOL_URL');
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      pooler.close();
    }
  }, 60_000);
});
