// `--capture logical` through restarts of the source: the slot's walsender dies with the server,
// the stream is started again from the confirmed position (after an immediate restart, from the
// slot's last checkpointed one, older: applied again, harmlessly), and the target ends equal.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';
import { startWorkload, WORKLOAD_SCHEMA } from '../support/workload.js';

const SCHEMA = `${WORKLOAD_SCHEMA}
CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 150000) g;
ANALYZE big;
`;

const pair = clusterPair({ name: 'logical-outage', db: 'shop', sourceSql: SCHEMA });

interface Status {
  phase: string;
  replay: { at: string; backlog: number } | null;
  outage: { source: unknown; target: unknown } | null;
}

const status = async (api: string) => (await (await fetch(`${api}/status`)).json()) as Status;

function chunksDone(state: string): number {
  const store = CheckpointStore.open(state, { create: false, readonly: true });
  try {
    return store.tables().reduce((a, t) => a + t.chunksDone, 0);
  } finally {
    store.close();
  }
}

describe('--capture logical through restarts of the source', () => {
  it('rides through a fast restart in the copy and fast and immediate ones in replay', {
    timeout: 240_000,
  }, async () => {
    await pair.source.query('ALTER SYSTEM SET synchronous_commit = on');
    await pair.source.query('SELECT pg_reload_conf()');
    const state = path.join(pair.dir, 'state.sqlite');
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const daemon = startCli([
      ...pair.migrate(
        '--capture',
        'logical',
        '--jobs',
        '2',
        '--chunk-size',
        '1MB',
        '--http',
        `127.0.0.1:${port}`,
      ),
    ]);
    const alive = () => {
      if (daemon.child.exitCode !== null)
        throw new Error(
          `the daemon exited (${daemon.child.exitCode}):\n${daemon.output().stderr.slice(-3000)}`,
        );
    };
    const workload = startWorkload(pair.source.url({ db: 'shop' }), 2);
    try {
      await waitFor(
        'the copy under way',
        () => {
          alive();
          return chunksDone(state) >= 3;
        },
        90_000,
        10,
      );
      await pair.source.restart('fast', 1000);
      await waitFor(
        'replication',
        async () => {
          alive();
          return (await status(api)).phase === 'replicating';
        },
        180_000,
        100,
      );
      for (const mode of ['fast', 'immediate'] as const) {
        await new Promise((r) => setTimeout(r, 1500));
        await pair.source.restart(mode, 1000);
      }
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      const ran = await workload.stop();
      expect(ran.operations).toBeGreaterThan(50);
    }
    const stoppedAt = Date.now();
    await waitFor(
      'the backlog drained',
      async () => {
        alive();
        const s = await status(api);
        return s.replay !== null && Date.parse(s.replay.at) > stoppedAt && s.replay.backlog === 0;
      },
      120_000,
      200,
    );
    daemon.child.kill('SIGTERM');
    const res = await daemon.done;
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'shop' }), pair.target.url({ db: 'shop' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
