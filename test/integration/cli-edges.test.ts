// Issue 12, findings 7 and 8: a chunk size that rounds to nothing is refused before anything runs;
// verify reaches a verdict or exits 2: comparing zero tables, or failing to compare, is an error.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';

const pair = clusterPair({
  name: 'cli-edges',
  db: 'app',
  sourceSql: `CREATE TABLE notes (id int PRIMARY KEY, body text);
              INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 100) g;`,
});

describe('edges of the command line', () => {
  it('refuses a --chunk-size that rounds to nothing (exit 2, one line)', async () => {
    for (const size of ['0.1', '100b']) {
      const res = await runCli(pair.migrate('--copy-only', '--chunk-size', size));
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain('below the smallest size');
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
    }
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
});
