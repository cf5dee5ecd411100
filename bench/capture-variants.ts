// What the capture trigger costs the application, by variant of the trigger: pgbench (`-c 4 -j 2`)
// on one cluster with capture installed on its three keyed tables and nothing replaying, as the
// source-cost bench's "triggers" mode, but with the trigger swapped between runs:
//   none:              no capture;
//   pinned:            pgferry's capture as it installs it (engine/capture/triggers/triggers.ts):
//                      SECURITY DEFINER with `SET search_path = pg_catalog, pg_temp`;
//   unpinned:          the same log and trigger, the function SECURITY DEFINER without the SET
//                      clause, its body free of any lookup through the caller's search_path (the
//                      log qualified, `OPERATOR(pg_catalog.=)`, `pg_catalog.record_image_eq` for the
//                      key change): a proposal, not what pgferry installs (DESIGN.md pins the path);
//   unpinned-noindex:  the same without the log's index on the position: that index's share.
// Rounds interleave the variants; medians reported. The capture's cost of a run is its client
// backends' CPU per transaction less none's in the same round. Each run checks that the log holds
// one row per table per committed transaction.
//
//   npm run bench:capture-variants -- [--scale 20] [--seconds 30] [--rounds 3] [variant …]
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  type CapturedTable,
  captureDdl,
  captureFunctions,
  describeCapture,
} from '../engine/capture/triggers/triggers.js';
import type { TableInfo } from '../engine/shared/catalog.js';
import { qualified, quoteIdent, quoteLiteral } from '../lib/sql.js';
import { SUPERUSER_PASSWORD, startCluster } from '../test/support/cluster.js';
import { hostFacts, isMain, wholeNumber, withCleanup, writeResults } from './cli.js';
import { median } from './drain.js';
import { type PgbenchTarget, pgbenchInit, pgbenchRun } from './pgbench.js';
import { ServerCpuSampler } from './source-cpu.js';

export const VARIANTS = ['none', 'pinned', 'unpinned', 'unpinned-noindex'] as const;
type Variant = (typeof VARIANTS)[number];

const TABLES = [
  { name: 'pgbench_accounts', key: 'aid' },
  { name: 'pgbench_tellers', key: 'tid' },
  { name: 'pgbench_branches', key: 'bid' },
];
const RUN_ID = 'variants';

/** The proposed row function: no SET clause, and nothing in it resolved through the caller's search_path. */
export function unpinnedRowFunction(c: CapturedTable): string {
  const log = qualified('pgferry', c.logTable);
  const cols = c.key.map((k) => quoteIdent(k.name));
  const row = (rec: 'NEW' | 'OLD') => cols.map((k) => `${rec}.${k}`).join(', ');
  const insert = (op: string, rec: 'NEW' | 'OLD') =>
    `INSERT INTO ${log} (pgferry_op, ${cols.join(', ')}) VALUES ('${op}', ${row(rec)});`;
  // A ROW() compared with an operator is compared column by column, each column's operator looked
  // up by name; record_image_eq compares the two records' bytes (a key rewritten to an equal but
  // different image is logged twice: harmless) and is called by its qualified name.
  return `CREATE OR REPLACE FUNCTION ${qualified('pgferry', `capture_row_${c.runId}_${c.oid}`)}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS ${quoteLiteral(`
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
    ${insert('U', 'NEW')}
    IF NOT pg_catalog.record_image_eq(ROW(${row('OLD')}), ROW(${row('NEW')})) THEN
      ${insert('U', 'OLD')}
    END IF;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    ${insert('I', 'NEW')}
  ELSE
    ${insert('D', 'OLD')}
  END IF;
  RETURN NULL;
END
`)}`;
}

function variantDdl(variant: Variant, c: CapturedTable): string[] {
  if (variant === 'none') return [];
  const pinned = captureDdl(c);
  if (variant === 'pinned') return pinned;
  const [pinnedRow] = captureFunctions(c);
  return pinned
    .map((s) => (s === pinnedRow ? unpinnedRowFunction(c) : s))
    .filter((s) => variant === 'unpinned' || !s.startsWith('CREATE INDEX'));
}

async function install(client: pg.Client, variant: Variant): Promise<CapturedTable[]> {
  await client.query('DROP SCHEMA IF EXISTS pgferry CASCADE'); // the triggers go with their functions
  if (variant === 'none') return [];
  await client.query('CREATE SCHEMA pgferry');
  const out: CapturedTable[] = [];
  for (const t of TABLES) {
    const { rows } = await client.query<{ oid: number }>('SELECT $1::regclass::oid AS oid', [
      `public.${t.name}`,
    ]);
    const info = {
      schema: 'public',
      name: t.name,
      oid: rows[0]!.oid,
      kind: 'r',
      partitionRoot: null,
      primaryKey: [{ name: t.key, type: 'integer' }],
    } as unknown as TableInfo;
    const c = describeCapture(RUN_ID, info);
    for (const sql of variantDdl(variant, c)) await client.query(sql);
    out.push(c);
  }
  return out;
}

interface Run {
  round: number;
  variant: Variant;
  tps: number;
  transactions: number;
  server_cpu_ms_per_txn: number;
  backends_cpu_ms_per_txn: number;
  /** Log rows per table, checked against the transactions. */
  log_rows?: number[];
}

export async function captureVariantsBench(opts: {
  scale: number;
  seconds: number;
  rounds: number;
  variants: Variant[];
  say?: (msg: string) => void;
}) {
  const say = opts.say ?? ((msg: string) => console.error(`[bench] ${msg}`));
  const src = await startCluster(15);
  const client = new pg.Client({ connectionString: src.url({ db: 'bench' }) });
  client.on('error', () => {});
  const cleanup = async () => {
    await client.end().catch(() => {});
    await src.stop();
  };
  return withCleanup(say, 'the cluster', cleanup, async () => {
    await src.query('CREATE DATABASE bench');
    const bench: PgbenchTarget = {
      port: src.port,
      user: 'postgres',
      db: 'bench',
      password: SUPERUSER_PASSWORD,
    };
    say(`pgbench -i -s ${opts.scale}`);
    await pgbenchInit(opts.scale, bench);
    await client.connect();
    const runs: Run[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const variant of opts.variants) {
        const captured = await install(client, variant);
        await client.query('VACUUM (ANALYZE) pgbench_branches, pgbench_tellers, pgbench_accounts');
        await client.query('TRUNCATE pgbench_history');
        await client.query('CHECKPOINT');
        execFileSync('sync');
        const cpu = new ServerCpuSampler(src.pid, src.url());
        await cpu.start();
        const load = await pgbenchRun(bench, { clients: 4, threads: 2, seconds: opts.seconds });
        const s = await cpu.stop();
        const run: Run = {
          round,
          variant,
          tps: load.tps,
          transactions: load.transactions,
          server_cpu_ms_per_txn: s.totalMs / load.transactions,
          backends_cpu_ms_per_txn: (s.byKindMs.pgbench ?? 0) / load.transactions,
        };
        if (captured.length > 0) {
          run.log_rows = [];
          for (const c of captured) {
            const { rows } = await client.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM ${qualified('pgferry', c.logTable)}`,
            );
            run.log_rows.push(rows[0]!.n);
          }
          // One UPDATE per keyed table per transaction; a transaction cut by -T's end may have
          // written before it was counted.
          const bad = run.log_rows.find((n) => n < load.transactions || n > load.transactions + 4);
          if (bad !== undefined)
            throw new Error(`${variant}: a log holds ${bad} rows after ${load.transactions} transactions`);
        }
        say(
          `round ${round}, ${variant}: ${load.tps.toFixed(0)} tps, client backends ${run.backends_cpu_ms_per_txn.toFixed(4)} ms/txn`,
        );
        runs.push(run);
      }
    }
    await install(client, 'none');
    const result = summarise(opts, runs);
    return { result, markdown: markdown(result) };
  });
}

function summarise(
  opts: { scale: number; seconds: number; rounds: number; variants: Variant[] },
  runs: Run[],
) {
  const none = (round: number) => runs.find((r) => r.round === round && r.variant === 'none');
  const cost = (r: Run) => {
    const base = none(r.round);
    return base ? r.backends_cpu_ms_per_txn - base.backends_cpu_ms_per_txn : null;
  };
  const variants = opts.variants.map((variant) => {
    const mine = runs.filter((r) => r.variant === variant);
    const costs = mine.map(cost).filter((x): x is number => x !== null);
    return {
      variant,
      tps: median(mine.map((r) => r.tps)),
      server_cpu_ms_per_txn: median(mine.map((r) => r.server_cpu_ms_per_txn)),
      backends_cpu_ms_per_txn: median(mine.map((r) => r.backends_cpu_ms_per_txn)),
      capture_cost_ms_per_txn: costs.length > 0 ? median(costs) : null,
      capture_cost_by_round: costs,
    };
  });
  const pinned = variants.find((v) => v.variant === 'pinned')?.capture_cost_ms_per_txn;
  return {
    date: new Date().toISOString().slice(0, 10),
    machine: hostFacts(),
    scale: opts.scale,
    seconds: opts.seconds,
    rounds: opts.rounds,
    load: 'pgbench -c 4 -j 2 -n (TPC-B-like: one UPDATE of each keyed table per transaction)',
    variants: variants.map((v) => ({
      ...v,
      cost_ratio_vs_pinned:
        pinned && v.capture_cost_ms_per_txn !== null ? v.capture_cost_ms_per_txn / pinned : null,
    })),
    runs,
  };
}

type Result = ReturnType<typeof summarise>;

function markdown(r: Result): string {
  const f = (n: number | null, d = 3) => (n === null ? '–' : n.toFixed(d));
  return [
    `### Capture trigger variants: pgbench scale ${r.scale}, ${r.seconds} s runs, ${r.rounds} round(s), ${r.date}`,
    '',
    `${r.machine.cpus} CPUs; nothing replays: the logs fill. CPU per committed transaction from /proc; the capture's cost is the client backends' CPU less none's in the same round; medians.`,
    '',
    "| variant | tps | server CPU ms/txn | client backends ms/txn | capture's cost ms/txn (by round) | ÷ pinned |",
    '|---|--:|--:|--:|--:|--:|',
    ...r.variants.map(
      (v) =>
        `| ${v.variant} | ${v.tps.toFixed(0)} | ${f(v.server_cpu_ms_per_txn)} | ${f(v.backends_cpu_ms_per_txn)} | ${v.variant === 'none' ? '–' : `${f(v.capture_cost_ms_per_txn)} (${v.capture_cost_by_round.map((c) => c.toFixed(3)).join(', ')})`} | ${v.variant === 'none' ? '–' : f(v.cost_ratio_vs_pinned, 2)} |`,
    ),
  ].join('\n');
}

if (isMain(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { scale: { type: 'string' }, seconds: { type: 'string' }, rounds: { type: 'string' } },
  });
  const unknown = positionals.filter((p) => !(VARIANTS as readonly string[]).includes(p));
  if (unknown.length > 0) {
    console.error(`unknown variant ${unknown.join(', ')}: the variants are ${VARIANTS.join(', ')}`);
    process.exit(2);
  }
  const variants = (positionals.length > 0 ? positionals : [...VARIANTS]) as Variant[];
  if (!variants.includes('none')) variants.unshift('none'); // every cost is taken against it
  const scale = wholeNumber('scale', values.scale, 20);
  const seconds = wholeNumber('seconds', values.seconds, 30);
  const rounds = wholeNumber('rounds', values.rounds, 3);
  captureVariantsBench({ scale, seconds, rounds, variants })
    .then(({ result, markdown: md }) => {
      console.log(md);
      writeResults('capture-variants', result.date, scale === 20 ? '' : `-s${scale}`, {
        ...result,
        markdown: md,
      });
    })
    .catch((err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 1;
    });
}
