// A chunk whose target session dies mid-COPY is copied again (its transaction left nothing, and
// it left no mark), the table ends complete, the retry names the target as the side that failed, and it is
// counted in pgferry_errors_total by code.
import { describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const pair = clusterPair({
  name: 'copy-retry',
  sourceSql: `CREATE TABLE big (id int PRIMARY KEY, payload text);
     INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;`,
});

describe('copy retries', () => {
  it('copies a chunk again after its target session is terminated, and counts it', async () => {
    const port = await freePort();
    const daemon = startCli(
      pair.migrate('--http', `127.0.0.1:${port}`, '--jobs', '2', '--chunk-size', '8MB'),
    );
    try {
      // The first COPY into the target that is under way: its backend is terminated.
      const killed = await waitFor(
        'a chunk COPY on the target',
        async () => {
          const rows = await pair.target.query<{ ok: boolean }>(
            `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
              WHERE datname = 'app' AND application_name = 'pgferry' AND query LIKE 'COPY %big% FROM STDIN%'
              LIMIT 1`,
          );
          return rows[0]?.ok === true;
        },
        60_000,
        5,
      );
      expect(killed).toBe(true);
      const metrics = await waitFor('replicating', async () => {
        const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { phase: string };
        if (status.phase !== 'replicating') return undefined;
        return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      }).catch((err: Error) => {
        throw new Error(`${err.message}\npgferry said:\n${daemon.output().stderr.slice(-3000)}`);
      });
      expect(metrics).toMatch(/^pgferry_errors_total\{code="PGFERRY_[A-Z_]+"\} [1-9]/m);
      // The target's session died: the retry says so (not the source, whose stream fails after).
      const retries = daemon
        .output()
        .stderr.split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; side?: string })
        .filter((l) => l.msg === 'chunk failed, retrying');
      expect(retries.length).toBeGreaterThan(0);
      expect(retries[0]!.side).toBe('target');
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.done;
    }
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
