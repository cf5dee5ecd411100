// Issue 12, finding 6: a key column whose name holds "$pgferry$" (with a quote and a backslash for
// good measure) is captured and replayed like any other; before, it ended the capture function's
// dollar-quoted body.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'hostile-key',
  db: 'app',
  sourceSql: `
    CREATE TABLE odd ("k$pgferry$ RETURN NULL; END $pgferry$; --'\\" int PRIMARY KEY, v text);
    INSERT INTO odd SELECT g, 'v' || g FROM generate_series(1, 100) g;`,
});

describe('hostile key names', () => {
  it("captures and replays a key named with the capture body's old quote tag", async () => {
    const args = pair.migrate('--exit-when-synced');
    const first = await runCli(args);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await pair.source.query(
      `UPDATE odd SET v = 'changed' WHERE "k$pgferry$ RETURN NULL; END $pgferry$; --'\\" <= 10;
       DELETE FROM odd WHERE "k$pgferry$ RETURN NULL; END $pgferry$; --'\\" > 90;
       UPDATE odd SET "k$pgferry$ RETURN NULL; END $pgferry$; --'\\" = 1000 WHERE "k$pgferry$ RETURN NULL; END $pgferry$; --'\\" = 50;`,
      [],
      'app',
    );
    const second = await runCli(args);
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
  });
});
