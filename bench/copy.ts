// Copy benchmark: pgferry's `migrate --copy-only` against psql COPY pipes (binary and text) on the
// same data, same parallelism, same pair of throwaway clusters. Each round runs all three, in an
// order rotated from round to round so that none always goes first; the table shows medians.
// Prints a markdown table and writes bench/results/copy-<date>.json.
//
//   npm run bench:copy -- [--rows N] [--quick] [--rounds N]
//
// Needs `npm run build` first: pgferry runs as its built CLI, the way users run it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type Cluster, SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { type CopyBenchResult, markdown } from './copy-report.js';
import { BENCH_TABLES, loadDataset, type TableDigest, tableDigests, tableSizes } from './dataset.js';
import { type PgferryRun, runPgferry } from './pgferry-run.js';
import {
  bash,
  type Endpoint,
  type PipeRun,
  pipeScript,
  runPipes,
  schemaScript,
  streamBytes,
} from './pipe.js';

const DEFAULT_ROWS = 3_000_000;
const QUICK_ROWS = 100_000;
const JOBS = 2;
const HERE = path.dirname(fileURLToPath(import.meta.url));

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string' },
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
  },
});
const accountsRows = flags.rows ? Number(flags.rows) : flags.quick ? QUICK_ROWS : DEFAULT_ROWS;
const rounds = flags.rounds ? Number(flags.rounds) : flags.quick ? 1 : 3;
if (!Number.isInteger(accountsRows) || accountsRows < 10) {
  console.error(`--rows must be a whole number of at least 10, not "${flags.rows}"`);
  process.exit(2);
}
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds must be a whole number of at least 1, not "${flags.rounds}"`);
  process.exit(2);
}
if (!fs.existsSync(path.join(HERE, '../dist/src/cli.js'))) {
  console.error('dist/ is missing: run `npm run build` first (the bench runs the built CLI)');
  process.exit(2);
}

const say = (msg: string) => console.error(`[bench] ${msg}`);
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-'));
const clusters: Cluster[] = [];
let cleaned: Promise<void> | undefined;
const cleanup = () => {
  cleaned ??= (async () => {
    await Promise.all(clusters.map((c) => c.stop().catch(() => {})));
    fs.rmSync(workDir, { recursive: true, force: true });
  })();
  return cleaned;
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping the clusters`);
    void cleanup().then(() => process.exit(130));
  });
}

async function sql(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

/**
 * Before a timed run: CHECKPOINT, then sync(1) (the clusters run with fsync off, so the kernel's
 * dirty pages are what is left), so that no run pays for the writeback of the previous one's data.
 */
async function settle(...urls: string[]): Promise<void> {
  await Promise.all(urls.map((u) => sql(u, 'CHECKPOINT')));
  execFileSync('sync');
}

/** Never report figures for a broken copy. */
function assertEqual(source: Map<string, TableDigest>, target: Map<string, TableDigest>): void {
  for (const table of BENCH_TABLES) {
    const s = source.get(table)!;
    const t = target.get(table);
    if (!t || t.rows !== s.rows || t.hash !== s.hash || !t.primaryKey) {
      throw new Error(
        `pgferry's copy of ${table} differs: source ${JSON.stringify(s)}, target ${JSON.stringify(t)}`,
      );
    }
  }
}

const RUNS = ['binary', 'text', 'pgferry'] as const;
type RunKind = (typeof RUNS)[number];

async function main(): Promise<void> {
  say(`starting two PostgreSQL 15 clusters in ${os.tmpdir()}`);
  const [src, dst] = await Promise.all([startCluster(15), startCluster(15)]);
  clusters.push(src, dst);
  await Promise.all([src.query('CREATE DATABASE bench'), dst.query('CREATE DATABASE bench_pipe')]);
  const srcUrl = src.url({ db: 'bench' });
  const dstUrl = dst.url({ db: 'bench' });
  const pipeUrl = dst.url({ db: 'bench_pipe' });

  say(`loading ${accountsRows.toLocaleString('en-US')} accounts and ~${accountsRows / 5} wide rows`);
  const t0 = performance.now();
  await loadDataset(srcUrl, accountsRows);
  const sizes = await tableSizes(srcUrl);
  const sourceDigests = await tableDigests(srcUrl);
  say(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s:`);
  for (const t of sizes) {
    say(
      `  ${t.table}: ${t.rows.toLocaleString('en-US')} rows, heap ${(t.heapBytes / 1e6).toFixed(1)} MB, ` +
        `with indexes ${(t.totalBytes / 1e6).toFixed(1)} MB, ~${t.avgRowBytes} B/row`,
    );
  }

  // The pipes' target: pre-data only (no primary key, no index), like pgferry's during its copy.
  const passwords = { SRC_PW: SUPERUSER_PASSWORD, DST_PW: SUPERUSER_PASSWORD };
  const srcEnd: Endpoint = { port: src.port, user: 'postgres', db: 'bench', passwordVar: 'SRC_PW' };
  const pipeEnd: Endpoint = { port: dst.port, user: 'postgres', db: 'bench_pipe', passwordVar: 'DST_PW' };
  await bash(schemaScript(srcEnd, pipeEnd), passwords);
  const emptyPipeTarget = () => sql(pipeUrl, `TRUNCATE ${BENCH_TABLES.join(', ')}`);

  const expected = new Map(sizes.map((t) => [t.table, t.rows]));
  const pipeRuns: Record<'binary' | 'text', PipeRun[]> = { binary: [], text: [] };
  const pgferryRuns: PgferryRun[] = [];
  const loadAverages: number[] = [];

  for (let round = 0; round < rounds; round++) {
    const order: RunKind[] = RUNS.map((_, i) => RUNS[(i + round) % RUNS.length]!);
    for (const kind of order) {
      const tag = `round ${round + 1}/${rounds}`;
      if (kind === 'pgferry') {
        await dst.query('DROP DATABASE IF EXISTS bench');
        await dst.query('CREATE DATABASE bench');
        await settle(srcUrl, dstUrl);
        loadAverages.push(os.loadavg()[0]!);
        say(`${tag}: pgferry migrate --copy-only --jobs ${JOBS}`);
        const run = await runPgferry({
          sourceUrl: srcUrl,
          targetUrl: dstUrl,
          stateFile: path.join(workDir, `state-${round}.sqlite`),
          jobs: JOBS,
          workDir,
        });
        say(`  copy ${run.phases.copy.toFixed(2)} s, whole clone ${run.wallSeconds.toFixed(2)} s; verifying`);
        assertEqual(sourceDigests, await tableDigests(dstUrl));
        pgferryRuns.push(run);
      } else {
        await settle(srcUrl, pipeUrl);
        loadAverages.push(os.loadavg()[0]!);
        say(`${tag}: psql pipe, ${kind}: ${BENCH_TABLES.length} tables at once`);
        const run = await runPipes(BENCH_TABLES, kind, srcEnd, pipeEnd, passwords);
        for (const t of run.tables) {
          if (t.rows !== expected.get(t.table)) {
            throw new Error(
              `${kind} pipe wrote ${t.rows} rows into ${t.table}, expected ${expected.get(t.table)}`,
            );
          }
        }
        say(`  ${run.seconds.toFixed(2)} s`);
        await emptyPipeTarget();
        pipeRuns[kind].push(run);
      }
    }
  }
  await dst.query('DROP DATABASE bench_pipe');

  say('counting the bytes of each COPY stream (untimed)');
  const pipes: CopyBenchResult['pipes'] = [];
  for (const format of ['binary', 'text'] as const) {
    const bytesPerTable = await streamBytes(BENCH_TABLES, format, srcEnd, passwords);
    pipes.push({
      format,
      runs: pipeRuns[format],
      bytes: Object.values(bytesPerTable).reduce((a, b) => a + b, 0),
      bytesPerTable,
      commandLines: BENCH_TABLES.map((t) => pipeScript(t, format, srcEnd, pipeEnd)),
    });
  }

  const last = pgferryRuns[pgferryRuns.length - 1]!;
  const sameFormat = last.tables.map((t) => {
    const pipe = pipes.find((p) => p.format === t.format)!;
    return `${t.table} ${t.format}: pgferry ${t.bytes} vs pipe ${pipe.bytesPerTable[t.table]}`;
  });
  const [ver] = (await sql(srcUrl, 'SHOW server_version')).rows as { server_version: string }[];
  const date = new Date().toISOString().slice(0, 10);
  const result: CopyBenchResult = {
    date,
    scale: { accountsRows, wideRows: Math.floor(accountsRows / 5), quick: flags.quick ?? false },
    rounds,
    machine: {
      cpus: os.cpus().length,
      memoryGB: Math.round(os.totalmem() / 1024 ** 3),
      node: process.version,
      postgres: ver?.server_version ?? '?',
      loadAverage1mBeforeRuns: loadAverages,
    },
    jobs: JOBS,
    tables: sizes,
    pgferry: {
      runs: pgferryRuns,
      commandLine:
        `PGFERRY_SOURCE_URL=… PGFERRY_TARGET_URL=… ` +
        `${last.rssSource === 'gnu-time' ? '/usr/bin/time -v -o <tmp>/gnu-time.txt ' : ''}` +
        `node bin/pgferry.js ${last.args.join(' ').replace(workDir, '<tmp>')}`,
    },
    pipes,
    bytesNote:
      'Bytes: pgferry\'s from its "copy finished" log line; the pipes\' from a separate, untimed ' +
      '`COPY … TO STDOUT | wc -c` of each table in that format (pgferry sends one COPY per chunk, so each ' +
      `binary chunk adds its own 21-byte header and trailer): ${sameFormat.join('; ')}.`,
    verified:
      `Verified after every pgferry run: row count, an order-independent hash of every row's text form ` +
      `and the primary key are equal on both sides for ${BENCH_TABLES.join(', ')}; every pipe's COPY row ` +
      'counts were checked.',
  };
  const md = markdown(result);
  console.log(md);

  const suffix =
    accountsRows === DEFAULT_ROWS ? '' : flags.quick && !flags.rows ? '-quick' : `-${accountsRows}rows`;
  const out = path.join(HERE, 'results', `copy-${date}${suffix}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({ ...result, markdown: md }, null, 2)}\n`);
  say(`results written to ${path.relative(process.cwd(), out)}`);
}

try {
  await main();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
