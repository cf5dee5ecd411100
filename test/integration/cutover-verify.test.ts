// The cutover's verification from a verified point (engine/cutover/verified-point.ts): both
// sides are counted before the freeze, and after the drain only the row count changes since are
// compared, as the source's captured changes and the target's applied batches give them.
// - Under the full workload (inserts, deletes, key changes, delete and reinsert, rows moving
//   between partitions, TRUNCATE and refill) the two sides' changes agree for every table
//   without a TRUNCATE: no table is counted again for a mismatch, and the target equals the source.
// - A row the target loses after the verified point (a target trigger swallows an insert the
//   replay applies after the point, as a replay that loses a row would) makes the changes
//   differ: the table is counted in full, the counts differ, and the cutover fails after the
//   freeze and gives the source its writes back.
// - With --verify checksums (the operator's slow, thorough proof) every table is hashed after
//   the drain, as before.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';
import { appGrants, startWorkload, WORKLOAD_SCHEMA } from '../support/workload.js';

const WRITER_PW = 'writer-pw-verify';
const MISMATCH = 'row count changes since the verified point differ';

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-cutover-verify-'));
  await source.query(`CREATE ROLE app_writer LOGIN PASSWORD '${WRITER_PW}' NOSUPERUSER`);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function prepare(db: string) {
  await source.query(`CREATE DATABASE ${db}`);
  await source.query(WORKLOAD_SCHEMA, [], db);
  await source.query(appGrants('app_writer'), [], db);
  await target.query(`CREATE DATABASE ${db}`);
  const base = ['--source', source.url({ db }), '--target', target.url({ db })];
  base.push('--state', path.join(dir, `${db}.sqlite`));
  const synced = await runCli(['migrate', '--exit-when-synced', ...base]);
  expect(synced.code, synced.stderr.slice(-2000)).toBe(0);
  return { base, writer: source.url({ db, user: 'app_writer', password: WRITER_PW }) };
}

describe('the cutover verifies what changed since its verified point', () => {
  it('under the full workload: the changes of both sides agree, the target equals the source', async () => {
    const db = 'verify_workload';
    const { base, writer } = await prepare(db);
    const workload = startWorkload(writer);
    let cut: Awaited<ReturnType<typeof runCli>>;
    try {
      await new Promise((r) => setTimeout(r, 1500));
      cut = await runCli(['cutover', '--json', '--freeze', 'readonly', '--jobs', '2', ...base]);
    } finally {
      await workload.stop();
    }
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    expect(cut.stderr).toContain('verified point taken');
    expect(cut.stderr).not.toContain(MISMATCH);
    const doc = JSON.parse(cut.stdout) as { verify: { equal: boolean; tables: number; counted: number } };
    expect(doc.verify.equal).toBe(true);
    // Only a table truncated since the point (the workload's kv) is counted in full.
    expect(doc.verify.counted).toBeLessThanOrEqual(1);
    expect(doc.verify.tables).toBeGreaterThan(4);
    const cmp = await compareDatabases(source.url({ db }), target.url({ db }));
    expect(cmp.target).toEqual(cmp.source);
  });

  it('with --verify checksums there is no verified point: every row is hashed after the drain', async () => {
    const { base } = await prepare('verify_checksums');
    await source.query(`INSERT INTO kv VALUES ('late', 'x', NULL)`, [], 'verify_checksums');
    const cut = await runCli(['cutover', '--json', '--verify', 'checksums', '--freeze', 'readonly', ...base]);
    expect(cut.code, cut.stderr.slice(-3000)).toBe(0);
    expect(cut.stderr).not.toContain('verified point taken');
    const doc = JSON.parse(cut.stdout) as { verify: { checksums: boolean; tables: number; counted: number } };
    expect(doc.verify.checksums).toBe(true);
    expect(doc.verify.counted).toBe(doc.verify.tables);
  });

  it('a row the target loses after the point fails the cutover after the freeze', async () => {
    const db = 'verify_lost';
    const { base, writer } = await prepare(db);
    // On the target: an insert of a 'lost…' key is swallowed, as by a replay that loses a row.
    await target.query(
      `CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF NEW.k LIKE 'lost%' THEN RETURN NULL; END IF; RETURN NEW; END $$;
       CREATE TRIGGER swallow BEFORE INSERT ON kv FOR EACH ROW EXECUTE FUNCTION swallow();`,
      [],
      db,
    );
    // On the source: the first time pgferry consumes kv's changes (the drain of the verified
    // point's snapshot, which this change pending on kv makes happen), 'lost-1' is inserted in
    // that transaction: a captured change committed after the point, applied after it.
    const [log] = await source.query<{ log: string }>(
      "SELECT log_table AS log FROM pgferry.captured WHERE table_name = 'kv'",
      [],
      db,
    );
    expect(log?.log).toBeTruthy();
    await source.query(
      `CREATE FUNCTION public.insert_lost() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO public.kv VALUES ('lost-1', 'x', NULL) ON CONFLICT DO NOTHING; RETURN NULL; END $$;
       CREATE TRIGGER insert_lost AFTER DELETE ON pgferry.${JSON.stringify(log!.log)}
         FOR EACH STATEMENT EXECUTE FUNCTION public.insert_lost();
       INSERT INTO kv VALUES ('before-the-point', 'x', NULL);`,
      [],
      db,
    );
    const cut = await runCli(['cutover', '--freeze', 'readonly', ...base]);
    expect(cut.code, cut.stderr.slice(-3000)).toBe(1);
    // The point was taken (the counts agreed then), the freeze applied, and the changes since differ.
    expect(cut.stderr).toContain('verified point taken');
    expect(cut.stderr).toContain('writes frozen on the source');
    expect(cut.stderr).toContain(MISMATCH);
    expect(cut.stderr).toContain('PGFERRY_CUTOVER_FAILED');
    expect(cut.stderr).toContain('public.kv');
    const [lost] = await source.query("SELECT 1 FROM kv WHERE k = 'lost-1'", [], db);
    expect(lost).toBeTruthy();
    // The source has its writes back.
    const c = new pg.Client({ connectionString: writer });
    await c.connect();
    await c.query(`INSERT INTO kv VALUES ('after-failed-cutover', 'x', NULL)`);
    await c.end();
  });
});
