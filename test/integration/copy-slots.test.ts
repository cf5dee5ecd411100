// A table's indexes are built early, in a worker slot the copy no longer needs: copy workers and
// index builds together never exceed --jobs. With --jobs 1, no build may start before the last
// chunk is in (the old way started one beside the copy, one process more than --jobs asks for).
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const pair = clusterPair({
  name: 'copy-slots',
  sourceSql: `CREATE TABLE big (id int PRIMARY KEY, payload text);
     INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
     CREATE INDEX big_payload ON big (payload);
     CREATE TABLE small (id int PRIMARY KEY, note text);
     INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
     CREATE INDEX small_note ON small (note);
     ANALYZE;`,
});

interface Line {
  msg: string;
  time: number | string;
  seconds?: number;
  table?: string;
}

describe('early index builds', () => {
  it('take a worker slot: with --jobs 1, none starts before the last chunk is copied', async () => {
    // big is copied first (biggest first) in several chunks, then small in one: the old way built
    // big's indexes as soon as its last chunk was in, while small was still being copied.
    const res = await runCli(pair.migrate('--copy-only', '--jobs', '1', '--chunk-size', '1MB'), {
      PGFERRY_LOG_LEVEL: 'debug',
    });
    expect(res.code, res.stderr.slice(-3000)).toBe(0);
    const lines = res.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
    const at = (l: Line) => (typeof l.time === 'number' ? l.time : Date.parse(l.time));
    const chunks = lines.filter((l) => l.msg === 'chunk copied');
    expect(new Set(chunks.map((c) => c.table))).toEqual(new Set(['public.big', 'public.small']));
    expect(chunks.filter((c) => c.table === 'public.big').length).toBeGreaterThan(1);
    const lastChunk = Math.max(...chunks.map(at));
    const builds = lines.filter((l) => / created$/.test(l.msg) && typeof l.seconds === 'number');
    expect(builds.length).toBeGreaterThanOrEqual(4);
    for (const b of builds)
      expect(at(b) - b.seconds! * 1000, JSON.stringify(b)).toBeGreaterThanOrEqual(lastChunk);

    const cmp = await compareDatabases(pair.source.url({ db: 'app' }), pair.target.url({ db: 'app' }));
    expect(cmp.target).toEqual(cmp.source);
    const indexes = await pair.target.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'public'",
      [],
      'app',
    );
    expect(indexes[0]!.n).toBe(4);
  });
});
