import { describe, expect, it } from 'vitest';
import { copyInSql, copyOutSql, rangePredicate } from '../../engine/copy/chunk-sql.js';
import { chunkCount } from '../../engine/copy/planner.js';

const key = [
  { name: 'tenant', type: 'integer' },
  { name: 'Code "x"', type: 'text' },
];

describe('chunk SQL', () => {
  it('open ends are left out of the range', () => {
    expect(rangePredicate(null, null, null)).toBe('true');
    expect(rangePredicate([key[0]!], null, ['10'])).toBe(`"tenant" < '10'::integer`);
    expect(rangePredicate([key[0]!], ['10'], null)).toBe(`"tenant" >= '10'::integer`);
  });

  it('a composite key compares as a row, each literal cast to its column type', () => {
    expect(rangePredicate(key, ['1', "o'neil"], ['2', 'a'])).toBe(
      `("tenant", "Code ""x""") >= ('1'::integer, 'o''neil'::text) AND ("tenant", "Code ""x""") < ('2'::integer, 'a'::text)`,
    );
  });

  it('copies the listed columns from ONLY the table, binary when asked', () => {
    const t = {
      schema: 'My Schema',
      name: 't"1',
      columns: ['a', 'B'],
      key: [key[0]!],
      format: 'binary' as const,
    };
    expect(copyOutSql(t, ['1'], ['5'])).toBe(
      `COPY (SELECT "a", "B" FROM ONLY "My Schema"."t""1" WHERE "tenant" >= '1'::integer AND "tenant" < '5'::integer) TO STDOUT WITH (FORMAT binary)`,
    );
    expect(copyInSql(t)).toBe(`COPY "My Schema"."t""1" ("a", "B") FROM STDIN WITH (FORMAT binary)`);
    expect(copyInSql({ ...t, format: 'text' })).toBe(`COPY "My Schema"."t""1" ("a", "B") FROM STDIN`);
  });
});

describe('chunk count', () => {
  const opts = { chunkBytes: 128 * 1024 * 1024, jobs: 4 };
  it('splits by size: a table smaller than a chunk stays whole', () => {
    expect(chunkCount(1024, opts)).toBe(1);
    expect(chunkCount(10 * 1024 * 1024, { chunkBytes: 1024 * 1024, jobs: 4 })).toBe(10);
  });
  it('splits a big table into at least one chunk per worker', () => {
    expect(chunkCount(64 * 1024 * 1024, opts)).toBe(4);
    expect(chunkCount(10 * 1024 * 1024 * 1024, opts)).toBe(80);
  });
});
