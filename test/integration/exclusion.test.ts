// Issue 12, finding 4: a batch cut short by its size limit that breaks an exclusion constraint
// (a deferrable one, rotated over more rows than one batch holds) is applied again as the table's
// whole visible set, as a unique violation is, instead of failing at every restart.
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { migrate } from '../../engine/migrate.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'exclusion',
  db: 'app',
  sourceSql: `
    CREATE TABLE bookings (
      id int PRIMARY KEY,
      during int4range NOT NULL,
      EXCLUDE USING gist (during WITH &&) DEFERRABLE INITIALLY DEFERRED
    );
    INSERT INTO bookings SELECT g, int4range(g * 10, g * 10 + 10) FROM generate_series(1, 300) g;`,
});

const run = () =>
  migrate({
    source: new ConnInfo('source', pair.source.url({ db: 'app' })),
    target: new ConnInfo('target', pair.target.url({ db: 'app' })),
    statePath: path.join(pair.dir, 'state.sqlite'),
    jobs: 2,
    filter: { include: [], exclude: [] },
    mode: 'exit-when-synced',
    chunkBytes: 128 * 1024 * 1024,
    maxSnapshotAgeMs: 600_000,
    // Far fewer log rows per batch than the rotation writes.
    batchSize: 50,
    log: pino({ level: 'silent' }),
    signal: new AbortController().signal,
  });

describe('exclusion constraints under replay', () => {
  it('applies a rotation larger than a batch as one whole set', async () => {
    await run();
    // Every booking takes the next one's slot, in one transaction: legal at commit only.
    await pair.source.query(
      `UPDATE bookings SET during = int4range((id % 300 + 1) * 10, (id % 300 + 1) * 10 + 10)`,
      [],
      'app',
    );
    const result = await run();
    expect(result.replay?.backlog).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
