// Drift-check cost (issue 16): what the schema drift checks cost the source, against the number
// of replicated tables. A running migration reads, every DRIFT_INTERVAL_MS (2 s), one catalog
// query per side (the tables' shapes: engine/drift/shape.ts), every NEW_TABLES_EVERY-th check one
// more on the source (tables created there: new-tables.ts), and with --drift additive one index
// query per side (indexes.ts); each replay batch evaluates the columns signature of its table in
// its first statement. This bench times each of them on a throwaway cluster holding N tables
// (ordinary ones and partitioned ones with 4 partitions, 8 columns each), median of `--samples`
// runs, and turns them into the share of one source CPU they take at their cadence (the query
// time is an upper bound of the server's CPU for it: catalog reads in shared buffers).
//
//   npm run bench:drift-cost -- [--tables 100,1000] [--samples 20]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CheckpointStore } from '../checkpoints/store.js';
import { DRIFT_INTERVAL_MS } from '../engine/drift/drift.js';
import { NEW_TABLES_EVERY, recordNewTables } from '../engine/drift/new-tables.js';
import { columnsSigSql, shapeDigest, sourceShapes, targetShapes } from '../engine/drift/shape.js';
import { startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, wholeNumber, withCleanup, writeResults } from './cli.js';
import { median } from './drain.js';

interface Row {
  tables: number;
  digest_source_ms: number;
  digest_target_ms: number;
  shapes_source_ms: number;
  shapes_target_ms: number;
  new_tables_ms: number;
  batch_signature_ms: number;
  /** The checks' interval, seconds. */
  interval_s: number;
  /** Catalog queries per second the checks send the source. */
  source_queries_per_s: number;
  /** Share of one source CPU the periodic checks take (upper bound), in percent. */
  source_cpu_percent: number;
}

async function timed(samples: number, fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  await fn(); // warm the catalog caches and the plan
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return Math.round(median(ms) * 100) / 100;
}

async function createTables(client: pg.Client, n: number): Promise<void> {
  const cols =
    'a int, b text, c numeric(12,2), d timestamptz DEFAULT now(), e jsonb, f boolean NOT NULL DEFAULT false, g bigint';
  const statements: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 10 === 9) {
      statements.push(
        `CREATE TABLE p${i} (id int, k int, ${cols}, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)`,
      );
      for (let j = 0; j < 4; j++)
        statements.push(
          `CREATE TABLE p${i}_${j} PARTITION OF p${i} FOR VALUES FROM (${j * 100}) TO (${(j + 1) * 100})`,
        );
    } else statements.push(`CREATE TABLE t${i} (id bigint PRIMARY KEY, ${cols})`);
  }
  for (let i = 0; i < statements.length; i += 200)
    await client.query(statements.slice(i, i + 200).join(';\n'));
}

export async function driftCostBench(counts: number[], samples: number, say: (m: string) => void) {
  const [source, target] = await Promise.all([startCluster(15), startCluster(15)]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-drift-cost-'));
  return withCleanup(
    say,
    'the drift-cost bench',
    async () => {
      await Promise.all([source.stop(), target.stop()]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
    async () => {
      const rows: Row[] = [];
      for (const n of counts) {
        const db = `d${n}`;
        await source.query(`CREATE DATABASE ${db}`);
        await target.query(`CREATE DATABASE ${db}`);
        const src = new pg.Client({ connectionString: source.url({ db }) });
        const dst = new pg.Client({ connectionString: target.url({ db }) });
        await Promise.all([src.connect(), dst.connect()]);
        try {
          say(`${n} tables: creating them on both sides`);
          await createTables(src, n);
          await createTables(dst, n);
          const { rows: rels } = await src.query<{ oid: number; schema: string; name: string }>(
            `SELECT c.oid::int AS oid, 'public' AS schema, c.relname AS name FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition`,
          );
          // A state file that replicates every table but the last: one new table to report.
          const store = CheckpointStore.open(path.join(dir, `${db}.sqlite`), { create: true });
          store.bindSetup({
            runId: 'bench',
            source: {
              host: 'x',
              port: 1,
              database: db,
              user: 'x',
              systemIdentifier: null,
              databaseOid: 1,
              databaseName: db,
            },
            target: {
              host: 'y',
              port: 1,
              database: db,
              user: 'y',
              systemIdentifier: null,
              databaseOid: 1,
              databaseName: db,
            },
            include: [],
            exclude: [],
            mode: 'replicate',
          });
          for (const r of rels.slice(0, -1))
            store.saveCapture({
              oid: r.oid,
              schema: r.schema,
              name: r.name,
              logTable: `log_${r.oid}`,
              keyColumns: '[]',
              columns: '[]',
              copyFormat: 'binary',
              keyFormat: 'binary',
              partitioned: 0,
            });
          const oids = rels.map((r) => r.oid);
          say(`${n} tables: timing ${samples} checks`);
          const row: Row = {
            tables: n,
            digest_source_ms: await timed(samples, () => shapeDigest(src, 'source', oids)),
            digest_target_ms: await timed(samples, () => shapeDigest(dst, 'target', rels)),
            shapes_source_ms: await timed(samples, () => sourceShapes(src, oids)),
            shapes_target_ms: await timed(samples, () => targetShapes(dst, rels)),
            new_tables_ms: await timed(samples, () => recordNewTables(src, store)),
            batch_signature_ms: await timed(samples, () =>
              src.query(`SELECT ${columnsSigSql(String(oids[0]))}`),
            ),
            interval_s: 0,
            source_queries_per_s: 0,
            source_cpu_percent: 0,
          };
          store.close();
          // The cadence drift.ts keeps: 2 s, or 100 × the source digest's time; a full check a minute.
          const interval = Math.max(DRIFT_INTERVAL_MS, row.digest_source_ms * 100);
          const msPerSecond =
            (row.digest_source_ms + row.new_tables_ms / NEW_TABLES_EVERY) / (interval / 1000) +
            row.shapes_source_ms / 60;
          row.interval_s = Math.round(interval / 100) / 10;
          row.source_queries_per_s =
            Math.round(((1 + 1 / NEW_TABLES_EVERY) / (interval / 1000) + 1 / 60) * 100) / 100;
          row.source_cpu_percent = Math.round((msPerSecond / 1000) * 100 * 100) / 100;
          rows.push(row);
        } finally {
          await Promise.all([src.end(), dst.end()]);
        }
      }
      return rows;
    },
  );
}

export function driftCostMarkdown(rows: Row[]): string {
  return [
    '| replicated tables | digest, source (ms) | digest, target (ms) | shapes, source (ms) | shapes, target (ms) | new tables (ms) | batch signature (ms) | check interval (s) | source catalog queries/s | source CPU, periodic checks |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.tables} | ${r.digest_source_ms} | ${r.digest_target_ms} | ${r.shapes_source_ms} | ${r.shapes_target_ms} | ${r.new_tables_ms} | ${r.batch_signature_ms} | ${r.interval_s} | ${r.source_queries_per_s} | ${r.source_cpu_percent}% of one core |`,
    ),
  ].join('\n');
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { tables: { type: 'string' }, samples: { type: 'string' } } });
  const counts = (values.tables ?? '100,1000').split(',').map((t) => wholeNumber('tables', t, 100));
  const samples = wholeNumber('samples', values.samples, 20);
  const rows = await driftCostBench(counts, samples, (m) => console.error(`[drift-cost] ${m}`));
  const markdown = driftCostMarkdown(rows);
  console.log(markdown);
  const date = new Date().toISOString().slice(0, 10);
  writeResults('drift-cost', date, '', { date, machine: hostFacts(), samples, rows, markdown });
}
