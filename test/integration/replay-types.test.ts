// The type and identifier families of the copy survive replay too: every row of every table is
// updated (so every row travels again through the replay path, binary and text), TOASTed values
// are updated and left unchanged, NULL and empty strings are swapped, rows are deleted and
// re-inserted, and after the drain the target equals the source row for row.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../checkpoints/store.js';
import { runCli, startCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-replay-types-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function phase(state: string): string | null {
  if (!fs.existsSync(state)) return null;
  try {
    const store = CheckpointStore.open(state, { create: false, readonly: true });
    try {
      return store.phase();
    } finally {
      store.close();
    }
  } catch {
    return null; // still being created
  }
}

async function until(what: string, probe: () => boolean, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Touches every row of every table with a primary key: each one is logged and replayed. */
const TOUCH_EVERY_ROW = `
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS tbl, (SELECT quote_ident(a.attname) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = '' AND a.attidentity = ''
               AND a.attnum <> ALL (i.indkey::int2[]) ORDER BY a.attnum LIMIT 1) AS col
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
  LOOP
    IF r.col IS NOT NULL THEN
      EXECUTE format('UPDATE %s SET %s = %s', r.tbl, r.col, r.col);
    END IF;
  END LOOP;
END $$;
`;

describe.each([
  ['types.sql', ['no_key', 'car']],
  ['identifiers.sql', [] as string[]],
])('replay of %s', (file, exclude) => {
  it('keeps every value exact through replay', async () => {
    const db = file.replace('.sql', '').replace(/\W/g, '_');
    await source.query(`CREATE DATABASE ${db}`);
    await target.query(`CREATE DATABASE ${db}`);
    await source.query(fs.readFileSync(path.join(FIXTURES, file), 'utf8'), [], db);
    const state = path.join(dir, `${db}.sqlite`);
    const args = [
      'migrate',
      '--source',
      source.url({ db }),
      '--target',
      target.url({ db }),
      '--state',
      state,
    ];
    for (const t of exclude) args.push('--exclude', t);
    const run = startCli(args);
    await until('replication', () => phase(state) === 'replicating').catch((err) => {
      throw new Error(`${err.message}:\n${run.output().stderr.slice(-3000)}`);
    });

    await source.query(TOUCH_EVERY_ROW, [], db);
    if (file === 'types.sql') {
      await source.query(
        `UPDATE toasted SET body = body || 'changed' WHERE id = (SELECT min(id) FROM toasted);
         UPDATE toasted SET m = m;
         UPDATE builtin_scalars SET t = CASE WHEN t = '' THEN NULL WHEN t IS NULL THEN '' ELSE t END WHERE id % 3 = 0;
         DELETE FROM builtin_scalars WHERE id % 1000 = 1;
         INSERT INTO builtin_scalars SELECT * FROM builtin_scalars WHERE false;`,
        [],
        db,
      );
    }
    run.child.kill('SIGTERM');
    const stopped = await run.done;
    expect(stopped.code, stopped.stderr.slice(-3000)).toBe(0);

    const final = await runCli([...args, '--exit-when-synced']);
    expect(final.code, final.stderr.slice(-3000)).toBe(0);
    const replayed = /(\d[\d,]*) changes replayed/.exec(final.stdout)?.[1];
    expect(Number(replayed?.replace(/,/g, ''))).toBeGreaterThan(1000);

    const cmp = await compareDatabases(source.url({ db }), target.url({ db }));
    for (const t of exclude) {
      delete cmp.source[`public.${t}`];
      delete cmp.target[`public.${t}`];
    }
    expect(cmp.target).toEqual(cmp.source);
  });
});
