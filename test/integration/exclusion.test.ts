// Issue 12, finding 4: a batch cut short by its size limit that breaks an exclusion constraint
// (a deferrable one, rotated over more rows than one batch holds) is applied again as the table's
// whole visible set, as a unique violation is, instead of failing at every restart.
import { describe, expect, it } from 'vitest';
import { migrateInProcess } from '../support/in-process.js';
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

// Far fewer log rows per batch than the rotation writes.
const run = () => migrateInProcess(pair, { batchSize: 50 });

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
