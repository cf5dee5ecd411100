// The copy's snapshot renewed after every chunk (--max-snapshot-age 1ms): a worker that has just
// been handed the current snapshot must still be able to join it when another worker renews it a
// moment later, so the copy never fails with "invalid snapshot identifier" and ends equal. The
// pool reports the age of the oldest snapshot it holds (a metric: vacuum on the source waits for it).
import { describe, expect, it } from 'vitest';
import { SnapshotPool } from '../../engine/copy/snapshot.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'snapshot-renewal',
  sourceSql: `CREATE TABLE a (id int PRIMARY KEY, payload text);
     INSERT INTO a SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;
     CREATE TABLE b (k text PRIMARY KEY, payload text);
     INSERT INTO b SELECT 'k' || g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g;
     ANALYZE;`,
});

describe('snapshot renewal', () => {
  it('renews the snapshot between chunks without a worker losing the one it joins', async () => {
    const res = await runCli(
      pair.migrate('--exit-when-synced', '--jobs', '4', '--chunk-size', '64kB', '--max-snapshot-age', '1ms'),
      // Every worker waits a moment between being handed the snapshot and joining it, which is when
      // another worker renews it.
      { PGFERRY_TEST_DELAY_AT: 'copy:join-snapshot=150' },
    );
    expect(res.stderr).not.toMatch(/invalid snapshot identifier|was lost with the session/);
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const renewals = res.stderr.split('\n').filter((l) => l.includes('snapshot renewed')).length;
    expect(renewals).toBeGreaterThan(10);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('reports the age of the oldest snapshot it holds: an old one while a worker is still in it', async () => {
    const pool = new SnapshotPool(new ConnInfo('source', pair.source.url({ db: 'app' })), 200);
    expect(pool.oldestAgeMs()).toBeNull();
    const first = await pool.acquire();
    await new Promise((r) => setTimeout(r, 300));
    // Older than 200 ms: the next worker gets a fresh one, the first is kept while in use.
    const second = await pool.acquire();
    expect(second).not.toBe(first);
    expect(pool.oldestAgeMs()).toBeGreaterThanOrEqual(first.ageMs() - 5);
    expect(pool.oldestAgeMs()).toBeGreaterThanOrEqual(300);
    await pool.leave(first);
    expect(pool.oldestAgeMs()).toBeLessThan(first.ageMs());
    await pool.leave(second);
    await pool.close();
    expect(pool.oldestAgeMs()).toBeNull();
  });
});
