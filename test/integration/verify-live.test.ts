// verify while replication runs: POST /verify stops replay between batches, applies every change
// visible in a fresh source snapshot, compares the target with the source read in that snapshot,
// and resumes (an operation: 202 at once, the report its result). Under a writer that never stops,
// the answer is still "equal".
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startCli } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import { clusterPair } from '../support/pair.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'verify-live-token';

const pair = clusterPair({
  name: 'verify-live',
  sourceSql: `CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, note text);
     INSERT INTO counters SELECT g, 0, 'c' || g FROM generate_series(1, 20000) g;
     CREATE TABLE events (id bigserial PRIMARY KEY, counter int, at timestamptz DEFAULT now());`,
});

describe('verify while replication runs', () => {
  it('compares at a drained point: equal under a writer that never stops', async () => {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const daemon = startCli(pair.migrate('--http', `127.0.0.1:${port}`), { PGFERRY_API_TOKEN: TOKEN });
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      const c = new pg.Client({ connectionString: pair.source.url({ db: 'app' }) });
      await c.connect();
      while (writing) {
        const id = 1 + Math.floor(Math.random() * 20000);
        await c.query('UPDATE counters SET n = n + 1 WHERE id = $1', [id]);
        await c.query('INSERT INTO events (counter) VALUES ($1)', [id]);
        writes++;
      }
      await c.end();
    })();
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const s = await fetch(`${api}/status`)
          .then((r) => r.json() as Promise<{ phase: string; backlog: number | null }>)
          .catch(() => null);
        if (s?.phase === 'replicating' && s.backlog !== null) break;
        if (Date.now() > deadline)
          throw new Error(`not replicating:\n${daemon.output().stderr.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      for (let round = 0; round < 3; round++) {
        const before = writes;
        const res = await fetch(`${api}/verify`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ checksums: true }),
        });
        // The call answers at once (202) with an operation; the report is its result.
        expect(res.status).toBe(202);
        const location = res.headers.get('location')!;
        type Report = { equal: boolean; tables: { table: string; equal: boolean }[] };
        const report = await waitFor(
          'the verification',
          async () => {
            const poll = await fetch(`${api}${location}`, { headers: { authorization: `Bearer ${TOKEN}` } });
            const { operation } = (await poll.json()) as { operation: { state: string; result: Report } };
            if (operation.state === 'failed') throw new Error(JSON.stringify(operation));
            return operation.state === 'succeeded' && operation.result;
          },
          120_000,
          100,
        );
        expect(report.tables.map((t) => [t.table, t.equal])).toEqual([
          ['public.counters', true],
          ['public.events', true],
        ]);
        expect(report.equal).toBe(true);
        expect(writes).toBeGreaterThan(before);
      }
    } finally {
      writing = false;
      await writer;
      daemon.child.kill('SIGTERM');
      const done = await daemon.done;
      expect(done.code, done.stderr.slice(-2000)).toBe(0);
    }
  });
});
