// `--exit-when-synced` under writers that never stop: the log is never seen empty, so the run must
// end by draining the backlog as of some moment after it started (a last whole round), not wait
// for a quiet instant that never comes. Every change committed before the run started must be on
// the target when it exits, and nothing is lost once the writers stop.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { clusterPair } from '../support/pair.js';
import { compareDatabases } from '../support/row-hash.js';

const TABLES = `CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
  INSERT INTO items SELECT g, 0 FROM generate_series(1, 5000) g;
  CREATE TABLE marks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());`;

const pair = clusterPair({ name: 'synced-load', sourceSql: TABLES });

const url = (side: 'source' | 'target', db: string) => pair[side].url({ db });

/** `migrate --exit-when-synced` on `db`; killed (and failed) if it has not exited within 60 s. */
async function synced(db: string, capture: string) {
  const run = startCli([
    'migrate',
    '--source',
    url('source', db),
    '--target',
    url('target', db),
    '--state',
    `${pair.dir}/${db}.sqlite`,
    '--capture',
    capture,
    '--exit-when-synced',
  ]);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), 60_000);
  const r = await run.done;
  clearTimeout(timer);
  expect(r.signal, `still running after 60 s: ${r.stderr.slice(-1500)}`).toBeNull();
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
}

let stop: (() => Promise<number>) | undefined;

/** Two writers, each committing as fast as it can: an update of a random item and a new mark. */
function writers(db: string): () => Promise<number> {
  let writing = true;
  let writes = 0;
  const loops = [1, 2].map(async () => {
    const c = new pg.Client({ connectionString: url('source', db) });
    await c.connect();
    try {
      while (writing) {
        await c.query(
          `UPDATE items SET v = v + 1 WHERE id = 1 + (random() * 4999)::int; INSERT INTO marks DEFAULT VALUES;`,
        );
        writes++;
      }
    } finally {
      await c.end();
    }
  });
  return async () => {
    writing = false;
    await Promise.all(loops);
    return writes;
  };
}

afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe('--exit-when-synced under writers that never stop', () => {
  for (const [capture, db] of [
    ['triggers', 'app'],
    ['logical', 'app2'],
  ] as const) {
    it(`exits with every change committed before it on the target (--capture ${capture})`, async () => {
      if (db !== 'app') {
        await pair.source.query(`CREATE DATABASE ${db}`);
        await pair.target.query(`CREATE DATABASE ${db}`);
        await pair.source.query(TABLES, [], db);
      }
      await synced(db, capture);
      stop = writers(db);
      const max = async () =>
        Number((await pair.source.query<{ n: string }>('SELECT max(id) AS n FROM marks', [], db))[0]!.n ?? 0);
      while ((await max()) < 200) await new Promise((r) => setTimeout(r, 50));
      const before = await max();
      await synced(db, capture);
      const onTarget = await pair.target.query<{ n: string }>(
        'SELECT count(*) AS n FROM marks WHERE id <= $1',
        [before],
        db,
      );
      expect(Number(onTarget[0]!.n)).toBe(before);
      // The writers went on during the whole run.
      expect(await max()).toBeGreaterThan(before + 50);
      expect(await stop()).toBeGreaterThan(250);
      stop = undefined;
      await synced(db, capture);
      const cmp = await compareDatabases(url('source', db), url('target', db));
      expect(cmp.target).toEqual(cmp.source);
    });
  }
});
