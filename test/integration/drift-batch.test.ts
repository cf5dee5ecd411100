// A replay batch never applies rows read with columns other than the ones replay writes: a table
// whose columns changed on both sides between two drift checks is caught by the batch itself (the
// columns signature in its snapshot), which applies nothing; after the next check, the batch
// writes the new column, and the values set meanwhile arrive.
import path from 'node:path';
import pino from 'pino';
import { expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { DriftWatch } from '../../engine/drift/drift.js';
import { Replayer } from '../../engine/replay/replay.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { migrateInProcess } from '../support/in-process.js';
import { clusterPair } from '../support/pair.js';
import { tableHashes } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'drift-batch',
  sourceSql: `CREATE TABLE items (id int PRIMARY KEY, n int);
              INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g;`,
});

it('a batch whose table changed columns since the last drift check applies nothing', async () => {
  await migrateInProcess(pair, { batchSize: 50_000 });
  const source = new ConnInfo('source', pair.source.url({ db: pair.db }));
  const target = new ConnInfo('target', pair.target.url({ db: pair.db }));
  const store = CheckpointStore.open(path.join(pair.dir, 'state.sqlite'), { create: false });
  const log = pino({ level: 'silent' });
  const signal = new AbortController().signal;
  const drift = new DriftWatch({ source, target, store, log, mode: 'pause', intervalMs: 60_000 });
  const replayer = new Replayer({ source, target, store, log, jobs: 1, signal, drift });
  try {
    await pair.source.query('UPDATE items SET n = n + 1 WHERE id <= 10', [], pair.db);
    // The first catch-up checks the shapes (and records the columns signature).
    expect(await replayer.catchUp()).toBe(10);
    // The same column added on both sides, and set on the source, before the next check is due.
    for (const side of [pair.source, pair.target])
      await side.query('ALTER TABLE items ADD COLUMN note text', [], pair.db);
    await pair.source.query(`UPDATE items SET note = 'set ' || id WHERE id <= 100`, [], pair.db);
    await expect(replayer.catchUp()).rejects.toMatchObject({ code: 'PGFERRY_SCHEMA_DRIFT' });
    const stale = await pair.target.query(
      'SELECT count(*)::int AS n FROM items WHERE note IS NOT NULL',
      [],
      pair.db,
    );
    expect(stale[0]?.n).toBe(0);
    // The next check finds both sides alike with the new column: replay takes it.
    const next = new Replayer({
      source,
      target,
      store,
      log,
      jobs: 1,
      signal,
      drift: new DriftWatch({ source, target, store, log, mode: 'pause' }),
    });
    expect(await next.catchUp()).toBe(100);
    await next.close();
    const [a, b] = await Promise.all([
      tableHashes(pair.source.url({ db: pair.db }), { schemas: ['public'] }),
      tableHashes(pair.target.url({ db: pair.db }), { schemas: ['public'] }),
    ]);
    expect([...b.entries()]).toEqual([...a.entries()]);
  } finally {
    await replayer.close();
    store.close();
  }
}, 120_000);
