// Columns named like pgferry's own: a key column named as a capture log's column (pgferry_seq,
// pgferry_op, …: the log holds the key columns beside its own, which then take other names), and
// table columns named as a staged batch's flag or two-way sync's time column. Captured, replayed
// and, for two-way sync, written on both sides; before, the log could not be created.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { type Cluster, startCluster } from '../support/cluster.js';
import { compareDatabases } from '../support/row-hash.js';

let source: Cluster;
let target: Cluster;
let dir: string;

beforeAll(async () => {
  [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-odd-columns-'));
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const SCHEMA = `
  CREATE TABLE a (pgferry_seq int PRIMARY KEY, pgferry_op text, pgferry_at timestamptz, pgferry_rel text,
                  pgferry_present bool);
  INSERT INTO a SELECT g * 2 + 1, 'op', now(), 'rel', true FROM generate_series(1, 100) g;
  CREATE TABLE b (pgferry_op int, pgferry_at int, pgferry_k int, pgferry_t text, PRIMARY KEY (pgferry_op, pgferry_at));
  INSERT INTO b SELECT g * 2 + 1, g, g, 't' FROM generate_series(1, 100) g;`;

const SOURCE_CHANGES = `
  UPDATE a SET pgferry_op = 'x' WHERE pgferry_seq <= 21; DELETE FROM a WHERE pgferry_seq > 181;
  UPDATE a SET pgferry_seq = 1001 WHERE pgferry_seq = 51; INSERT INTO a VALUES (2001, 'n', now(), 'r', false);
  UPDATE b SET pgferry_t = 'y', pgferry_k = 0 WHERE pgferry_op <= 21; DELETE FROM b WHERE pgferry_op > 181;
  UPDATE b SET pgferry_at = 1000 WHERE pgferry_op = 51;`;

describe.each([
  ['triggers', []],
  ['logical', ['--capture', 'logical']],
  ['two_way', ['--two-way', '--conflict', 'source-wins']],
] as const)('columns named like pgferry internals (%s)', (label, extra) => {
  const db = `odd_${label}`;
  const args = () => [
    'migrate',
    '--source',
    source.url({ db }),
    '--target',
    target.url({ db }),
    '--state',
    path.join(dir, `${label}.sqlite`),
    '--exit-when-synced',
    ...extra,
  ];

  it('captures and replays them', async () => {
    await Promise.all([source.query(`CREATE DATABASE ${db}`), target.query(`CREATE DATABASE ${db}`)]);
    await source.query(SCHEMA, [], db);
    const first = await runCli(args());
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    await source.query(SOURCE_CHANGES, [], db);
    if (label === 'two_way') {
      // Even keys on the target: both sides write, never the same key.
      await target.query(
        `UPDATE a SET pgferry_rel = 'target' WHERE pgferry_seq BETWEEN 101 AND 121; INSERT INTO a VALUES (3000, 't', now(), 't', true);
         UPDATE b SET pgferry_k = 7 WHERE pgferry_op BETWEEN 101 AND 121; DELETE FROM b WHERE pgferry_op = 99;`,
        [],
        db,
      );
    }
    const second = await runCli(args());
    expect(second.code, second.stderr.slice(-2000)).toBe(0);
    const { source: s, target: t } = await compareDatabases(source.url({ db }), target.url({ db }));
    expect(t).toEqual(s);
  }, 120_000);
});
