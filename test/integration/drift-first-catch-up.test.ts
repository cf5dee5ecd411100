// A schema change on the source right after the daemon says replicating, while its first catch-up
// (the changes captured during the copy) still runs: replay pauses for drift as it does later on,
// and resumes once the target matches; the run must not fail (it did: the catch-up's batch refused
// the new column and the error ended the daemon).
import { expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { tableHashes } from '../support/row-hash.js';
import { waitFor } from '../support/wait.js';

const pair = clusterPair({
  name: 'drift-first',
  sourceSql: `CREATE TABLE items (id int PRIMARY KEY, v text);
              INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g;`,
});

it('pauses for drift that comes during the first catch-up, and resumes once the target matches', async () => {
  const port = await freePort();
  // The first catch-up waits a while (random, up to 8 s) before it reads: the change lands in it.
  const daemon = startCli(pair.migrate('--http', `127.0.0.1:${port}`), {
    PGFERRY_TEST_DELAY_AT: 'replay:first-catch-up=8000',
  });
  const status = async (): Promise<{ phase: string; pauseReason: string | null }> => {
    const res = await fetch(`http://127.0.0.1:${port}/status`).catch((err: Error) => {
      throw new Error(`${err.message}: the daemon is gone:\n${daemon.output().stderr.slice(-3000)}`);
    });
    return (await res.json()) as { phase: string; pauseReason: string | null };
  };
  try {
    await waitFor(
      'replicating',
      async () => (await status().catch(() => null))?.phase === 'replicating',
      120_000,
      50,
    );
    await pair.source.query(
      `ALTER TABLE items ADD COLUMN note text;
       UPDATE items SET note = 'n' || id WHERE id <= 20;
       INSERT INTO items VALUES (5001, 'new', 'added during the catch-up');`,
      [],
      pair.db,
    );
    await waitFor(
      'paused for drift',
      async () => {
        const s = await status();
        return s.phase === 'paused' && s.pauseReason === 'drift';
      },
      60_000,
      100,
    );
    await pair.target.query('ALTER TABLE items ADD COLUMN note text', [], pair.db);
    await waitFor(
      'the sides equal',
      async () => {
        const [a, b] = await Promise.all([
          tableHashes(pair.source.url({ db: pair.db }), { schemas: ['public'] }),
          tableHashes(pair.target.url({ db: pair.db }), { schemas: ['public'] }),
        ]);
        return JSON.stringify([...a]) === JSON.stringify([...b]);
      },
      60_000,
      250,
    );
    expect((await status()).phase).toBe('replicating');
  } finally {
    daemon.child.kill('SIGTERM');
  }
  const stopped = await daemon.done;
  expect(stopped.code, `signal ${stopped.signal}: ${stopped.stderr.slice(-3000)}`).toBe(0);
});
