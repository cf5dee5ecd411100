// The source is never harmed: every session pgferry opens carries a statement_timeout, a
// lock_timeout and application_name 'pgferry'; a migration uses a bounded number of sessions;
// the copy's snapshot is renewed under capture, so no transaction stays open for long.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { connect, SESSION_KINDS } from '../../engine/shared/db.js';
import { startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';

const pair = clusterPair({
  name: 'safety',
  sourceSql: `CREATE TABLE a (id bigint PRIMARY KEY, v text);
     INSERT INTO a SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g;
     CREATE TABLE b (id bigint PRIMARY KEY, v text);
     INSERT INTO b SELECT g, repeat('y', 200) FROM generate_series(1, 200000) g;
     CREATE TABLE c (id bigint PRIMARY KEY, v text);
     INSERT INTO c SELECT g, 'z' FROM generate_series(1, 1000) g;`,
});

describe('the source is never harmed', () => {
  it('every kind of session has timeouts and says it is pgferry', async () => {
    const conn = new ConnInfo('source', pair.source.url({ db: 'app' }));
    for (const kind of SESSION_KINDS) {
      const c = await connect(conn, kind);
      try {
        const { rows } = await c.query<{ st: string; lt: string; app: string; rs: string }>(
          `SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt,
                  current_setting('application_name') AS app, current_setting('row_security') AS rs`,
        );
        // A logical slot's stream is one command for the run's whole life: no statement bound.
        if (kind === 'replication') expect(rows[0]!.st, kind).toBe('0');
        else expect(rows[0]!.st, kind).not.toBe('0');
        expect(rows[0]!.lt, kind).not.toBe('0');
        expect(rows[0]!.app).toBe('pgferry');
        expect(rows[0]!.rs).toBe('off');
      } finally {
        await c.end();
      }
    }
  });

  it('a migration with --jobs 2 uses a bounded number of source sessions, none in a long transaction', async () => {
    const watcher = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
    await watcher.connect();
    let maxSessions = 0;
    let oldestXactSeconds = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const { rows } = await watcher.query<{ n: number; oldest: number | null }>(
          `SELECT count(*)::int AS n, max(extract(epoch FROM now() - xact_start))::float8 AS oldest
             FROM pg_stat_activity WHERE application_name = 'pgferry'`,
        );
        maxSessions = Math.max(maxSessions, rows[0]!.n);
        oldestXactSeconds = Math.max(oldestXactSeconds, rows[0]!.oldest ?? 0);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const run = startCli(
      pair.migrate('--exit-when-synced', '--jobs', '2', '--chunk-size', '2MB', '--max-snapshot-age', '500ms'),
    );
    const res = await run.done;
    watching = false;
    await watch;
    await watcher.end();
    expect(res.code, res.stderr.slice(-2000)).toBe(0);
    // 2 copy or replay workers + the snapshot holder + one control session, plus a pg_dump.
    expect(maxSessions).toBeGreaterThan(0);
    expect(maxSessions).toBeLessThanOrEqual(6);
    // No pgferry transaction stays open for long (the snapshot is renewed; batches are short).
    expect(oldestXactSeconds).toBeLessThan(5);
  });
});
