// The COPY relay (sinks/copy-out.ts reads the source's protocol itself): every byte of every row
// arrives whatever the row sizes and however the socket cuts the stream, messages the server
// interleaves are skipped, and after a failure on either side the error names that side and the
// source's session can still be used (a staged batch that the target refuses is retried on it).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyPipeError, pipeCopy } from '../../sinks/copy-pipe.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { startProxy, type Proxy as TcpProxy } from '../support/proxy.js';

let cluster: Cluster;
let fragmenting: TcpProxy;

const SOURCE_SQL = `
  CREATE TABLE rows (id int PRIMARY KEY, body text, n numeric, b bytea);
  -- Sizes from empty to 200 kB: rows shorter than a header, and rows longer than a socket read.
  INSERT INTO rows
    SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE repeat(md5(g::text), CASE WHEN g % 500 = 0 THEN 6000 ELSE g % 40 END) END,
           g / 7.0, CASE WHEN g % 5 = 0 THEN decode(repeat('00ff', g % 300), 'hex') END
      FROM generate_series(1, 3000) g;
  CREATE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql AS $$
  BEGIN
    IF i % 100 = 0 THEN RAISE NOTICE 'row %', i; END IF;
    RETURN i;
  END $$;`;

const TARGET_SQL = `
  CREATE TABLE rows (id int PRIMARY KEY, body text, n numeric, b bytea);
  CREATE TABLE capped (id int PRIMARY KEY CHECK (id < 2000), body text, n numeric, b bytea);`;

async function session(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

const digest = async (c: pg.Client, table: string) =>
  (
    await c.query<{ d: string; n: string }>(
      `SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS d, count(*) AS n FROM ${table} t`,
    )
  ).rows[0]!;

beforeAll(async () => {
  cluster = await startCluster(15);
  await cluster.query('CREATE DATABASE src');
  await cluster.query('CREATE DATABASE dst');
  await cluster.query(SOURCE_SQL, [], 'src');
  await cluster.query(TARGET_SQL, [], 'dst');
  fragmenting = await startProxy(cluster.port, {
    fragments: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 4096],
  });
}, 120_000);

afterAll(async () => {
  await fragmenting?.close();
  await cluster?.stop();
});

describe('the COPY relay', () => {
  for (const format of ['binary', 'text'] as const) {
    for (const via of ['direct', 'a link that splits every message'] as const) {
      it(`passes every row through (${format}, ${via})`, async () => {
        const srcUrl = cluster.url({ db: 'src' });
        const source = await session(via === 'direct' ? srcUrl : fragmenting.via(srcUrl));
        const target = await session(cluster.url({ db: 'dst' }));
        try {
          await target.query('TRUNCATE rows');
          const opt = format === 'binary' ? ' WITH (FORMAT binary)' : '';
          const res = await pipeCopy({
            source,
            target,
            copyOut: `COPY (SELECT * FROM rows) TO STDOUT${opt}`,
            copyIn: `COPY rows FROM STDIN${opt}`,
          });
          expect(res.rows).toBe(3000);
          expect(await digest(target, 'rows')).toEqual(await digest(source, 'rows'));
        } finally {
          await Promise.all([source.end(), target.end()]);
        }
      }, 60_000);
    }
  }

  it('skips the notices a COPY query raises, and leaves the session usable', async () => {
    const source = await session(cluster.url({ db: 'src' }));
    const target = await session(cluster.url({ db: 'dst' }));
    const notices: string[] = [];
    source.on('notice', (n) => notices.push(n.message ?? ''));
    try {
      await target.query('TRUNCATE rows');
      await pipeCopy({
        source,
        target,
        copyOut: 'COPY (SELECT noisy(id) AS id, body, n, b FROM rows) TO STDOUT WITH (FORMAT binary)',
        copyIn: 'COPY rows FROM STDIN WITH (FORMAT binary)',
      });
      expect(await digest(target, 'rows')).toEqual(await digest(source, 'rows'));
      expect((await source.query('SELECT 41 + 1 AS x')).rows[0].x).toBe(42);
    } finally {
      await Promise.all([source.end(), target.end()]);
    }
    // Dropped from the COPY stream, not passed into the table.
    expect(notices.length).toBeLessThanOrEqual(30);
  }, 60_000);

  it('names the source when its query fails mid-stream, and the session can go on', async () => {
    const source = await session(cluster.url({ db: 'src' }));
    const target = await session(cluster.url({ db: 'dst' }));
    try {
      await target.query('TRUNCATE rows');
      const err = await pipeCopy({
        source,
        target,
        copyOut: 'COPY (SELECT id / (id - 2500) * 0 + id AS id, body, n, b FROM rows ORDER BY id) TO STDOUT',
        copyIn: 'COPY rows FROM STDIN',
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CopyPipeError);
      expect((err as CopyPipeError).side).toBe('source');
      expect((err as CopyPipeError).message).toMatch(/division by zero/);
      // The target's COPY was failed with it: nothing of it is in the table.
      expect((await digest(target, 'rows')).n).toBe('0');
      expect((await source.query('SELECT count(*)::int AS n FROM rows')).rows[0].n).toBe(3000);
      expect((await target.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    } finally {
      await Promise.all([source.end(), target.end()]);
    }
  }, 60_000);

  it('names the target when it refuses a row, and the source session can go on', async () => {
    const source = await session(cluster.url({ db: 'src' }));
    const target = await session(cluster.url({ db: 'dst' }));
    // 60 MB, refused at its 2000th row: most of it is still to come when the target fails.
    const big = (where: string) =>
      `COPY (SELECT g AS id, repeat('x', 1000) AS body, g::numeric AS n, NULL::bytea AS b
               FROM generate_series(1, 60000) g ${where}) TO STDOUT WITH (FORMAT binary)`;
    try {
      const err = await pipeCopy({
        source,
        target,
        copyOut: big(''),
        copyIn: 'COPY capped FROM STDIN WITH (FORMAT binary)',
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CopyPipeError);
      expect((err as CopyPipeError).side).toBe('target');
      expect((err as CopyPipeError).message).toMatch(/check constraint/);
      // The rest of the source's COPY was read and dropped: its session answers the next query.
      expect((await source.query('SELECT count(*)::int AS n FROM rows')).rows[0].n).toBe(3000);
      const again = await pipeCopy({
        source,
        target,
        copyOut: big('WHERE g < 2000'),
        copyIn: 'COPY capped FROM STDIN WITH (FORMAT binary)',
      });
      expect(again.rows).toBe(1999);
    } finally {
      await Promise.all([source.end(), target.end()]);
    }
  }, 60_000);
});
