// `pgferry demo`: the main job end to end on two throwaway local servers. A sample shop is loaded
// into the source, an application keeps writing to it, pgferry copies and replicates in this
// process, pgferry cuts over while it writes (freeze, drain, sequences, constraints, verify, the
// downtime), every table is compared by a hash of its rows, the capture is removed, and the servers and files are deleted (unless --keep), Ctrl-C included.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup } from '../../engine/capture/cleanup.js';
import { type MigrateOptions, type MigrateResult, migrate } from '../../engine/migrate.js';
import type { ReplayStats } from '../../engine/replay/replay.js';
import { ConnInfo } from '../../engine/shared/conn-info.js';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { Narrator } from '../demo/narrator.js';
import { compareShop, describeRemoved } from '../demo/report.js';
import { chooseVersions } from '../demo/servers.js';
import {
  APP_ROLE,
  createShopDatabase,
  givePublicSchema,
  loadShop,
  OWNER_ROLE,
  SHOP_DB,
  shopBytes,
  shopSize,
} from '../demo/shop.js';
import { type ShopWorkload, startShopWorkload } from '../demo/workload.js';
import type { ServerVersion } from '../embedded/binaries.js';
import { type Cluster, killAllClusters, startCluster } from '../embedded/cluster.js';
import { bytes, int } from '../format.js';
import { onStopSignal } from '../signals.js';

export const DEMO_DIR_PREFIX = 'pgferry-demo-';
const STEPS = 7;
/** How long the shop keeps writing once replay has caught up, to show the lag staying low. */
const REPLAY_MS = 6_000;

export interface DemoFlags {
  keep?: boolean;
  rows?: string;
}

export function parseRows(text: string): number {
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < 1_000 || n > 20_000_000) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--rows "${text}" must be a whole number from 1000 to 20000000`,
      {
        side: 'config',
      },
    );
  }
  return n;
}

const cancelled = () =>
  new PgferryError('PGFERRY_RUN_CANCELLED', 'the demo was stopped', {
    hint: 'its servers and files were removed; run `pgferry demo` again any time.',
  });

export async function demoCommand(flags: DemoFlags): Promise<void> {
  const size = shopSize(parseRows(flags.rows ?? '200000'));
  const versions = await chooseVersions();
  const say = new Narrator(STEPS);
  const interrupt = new AbortController();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), DEMO_DIR_PREFIX));
  // As root the servers run as `postgres`, which must traverse this directory to reach its own.
  fs.chmodSync(dir, 0o711);
  let servers: { source: Cluster; target: Cluster } | undefined;
  let workload: ShopWorkload | undefined;
  let running: Promise<Settled> | undefined;
  const pw = { owner: randomBytes(12).toString('base64url'), app: randomBytes(12).toString('base64url') };
  let tornDown = false;
  /** Stops the application and the servers and deletes the directory, or leaves the servers running. */
  const teardown = async (keep: boolean, tell: (text: string) => void) => {
    if (tornDown) return;
    tornDown = true;
    await workload?.stop();
    // A stopped run returns between batches; its sessions close before the servers go.
    const waited = new AbortController();
    await Promise.race([running, sleep(10_000, waited.signal)]);
    waited.abort();
    if (keep && servers) {
      const { source, target } = servers;
      source.keepRunning();
      target.keepRunning();
      tell(
        'The servers keep running (--keep):\n' +
          `  source  ${source.url({ db: SHOP_DB, user: OWNER_ROLE, password: pw.owner })}\n` +
          `  target  ${target.url({ db: SHOP_DB })}\n` +
          `  stop them: kill -INT ${source.pid} ${target.pid}; then rm -rf ${dir}`,
      );
      return;
    }
    await Promise.all([servers?.source.stop(), servers?.target.stop()]);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    tell(`Stopped both servers and deleted ${dir}.`);
  };
  const onSignal = () => {
    if (interrupt.signal.aborted) {
      // A second Ctrl-C: no more waiting for connections to close.
      killAllClusters();
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
      process.exit(130);
    }
    process.stderr.write('\npgferry: stopping the demo and removing its servers (Ctrl-C again to force)\n');
    interrupt.abort();
  };
  const checkpoint = () => {
    if (interrupt.signal.aborted) throw cancelled();
  };
  const releaseSignals = onStopSignal(onSignal);
  try {
    // 1. Two servers.
    say.step(
      1,
      `Starting two throwaway PostgreSQL servers in ${dir}: version ${versions.source} as the source, ${versions.target} as the target.`,
    );
    servers = await startServers(dir, versions);
    const { source, target } = servers;
    await target.query(`CREATE DATABASE ${SHOP_DB}`);
    say.detail(
      `source on port ${source.port}; target on port ${target.port}, with an empty database "${SHOP_DB}"`,
    );
    checkpoint();

    // 2. The shop.
    const rowsTotal = size.customers + size.orders + size.orderItems + size.events;
    say.step(2, `Loading a small shop into the source (${int(rowsTotal)} rows).`);
    await createShopDatabase(source.url(), pw);
    await givePublicSchema(source.url({ db: SHOP_DB }));
    const ownerUrl = source.url({ db: SHOP_DB, user: OWNER_ROLE, password: pw.owner });
    await loadShop(ownerUrl, size);
    say.detail(
      `${int(size.customers)} customers, ${int(size.orders)} orders, ${int(size.orderItems)} order items, ` +
        `${int(size.events)} events in 4 monthly partitions: ${bytes(await shopBytes(ownerUrl))} on disk`,
    );
    say.detail(
      `pgferry connects as ${OWNER_ROLE}, an ordinary role that owns the tables: no superuser, no replication slot, as on Heroku\n` +
        "(with pg_signal_backend, so that the cutover can end the application's sessions once writes are frozen)",
    );
    checkpoint();

    // 3. The application.
    say.step(
      3,
      'Starting the shop application: it keeps writing to the source through the cutover (step 5).',
    );
    workload = startShopWorkload(source.url({ db: SHOP_DB, user: APP_ROLE, password: pw.app }), size);
    say.detail(
      'two writers as shop_app place, pay and cancel orders, sign up customers and renumber them (a key change),\n' +
        'and move events between monthly partitions',
    );

    // 4. Copy and replicate while the shop writes.
    say.step(4, 'Migrating with pgferry while the shop keeps writing.');
    const common = {
      source: new ConnInfo('source', ownerUrl),
      target: new ConnInfo('target', target.url({ db: SHOP_DB })),
      statePath: path.join(dir, 'state.sqlite'),
      jobs: Math.min(4, Math.max(2, os.availableParallelism())),
      filter: { include: [], exclude: [] },
      chunkBytes: 2 * 1024 * 1024,
      maxSnapshotAgeMs: 10 * 60_000,
      log: say.logger(),
      progressIntervalMs: 1_000,
    } satisfies Partial<MigrateOptions>;
    const live = new AbortController();
    interrupt.signal.addEventListener('abort', () => live.abort(), { once: true });
    let maxLag = 0;
    let lastPrinted = 0;
    let onReplicating: () => void = () => {};
    const replicating = new Promise<void>((resolve) => {
      onReplicating = resolve;
    });
    running = settle(
      migrate({
        ...common,
        mode: 'run',
        signal: live.signal,
        onProgress: (p) => say.copyProgress(p),
        onReplayStats: (r) => {
          onReplicating();
          maxLag = Math.max(maxLag, r.lagSeconds);
          if (Date.now() - lastPrinted < 1_500) return;
          lastPrinted = Date.now();
          say.replayProgress(r, ` · the shop: ${int(workload!.stats().transactions)} transactions so far`);
        },
      }),
    );
    // Until replay has caught up with the copy, then a few seconds more; a failed run ends it.
    const first = await Promise.race([replicating.then(() => null), running]);
    if (first !== null) endedEarly(first, checkpoint);
    const during = await Promise.race([sleep(REPLAY_MS, interrupt.signal).then(() => null), running]);
    if (during !== null) endedEarly(during, checkpoint);
    checkpoint();

    // 5. The cutover, with the shop still writing.
    say.step(5, 'Cutting over while the shop keeps writing: freeze, drain, sequences, constraints, verify.');
    live.abort();
    const copied = unwrap(await running);
    checkpoint();
    let last: ReplayStats | undefined;
    const cut = await migrate({
      ...common,
      mode: 'cutover-when-synced',
      signal: interrupt.signal,
      onReplayStats: (r) => {
        last = r;
      },
    });
    checkpoint();
    const shop = await workload.stop();
    const c = cut.cutover!;
    const replayed = (copied.replay?.appliedTotal ?? 0) + (cut.replay?.appliedTotal ?? 0) + c.changesDrained;
    if (last) say.replayProgress(last);
    say.detail(
      `writes frozen on the source (${c.freeze}), ${int(c.sessionsEnded)} writing sessions ended; ` +
        `${int(c.changesDrained)} last changes drained`,
    );
    say.detail(
      `${int(c.sequences)} sequences set, ${int(c.materializedViews)} materialized views refreshed, ` +
        `${int(c.deferredObjects)} foreign keys, triggers and other objects created on the target; ` +
        `verified: ${c.verify?.equal === false ? 'DIFFERENT' : 'equal'}`,
    );
    say.detail(`the target is ready: the shop could not write for ${c.downtimeSeconds.toFixed(2)}s`);
    say.detail(
      `the shop made ${int(shop.transactions)} write transactions while pgferry was working; ` +
        `${int(shop.failed)} were refused once the source was frozen (the application now writes to the target)`,
    );

    // 6. Row for row.
    say.step(6, 'Comparing every table on both sides by a hash of all its rows.');
    const comparison = await compareShop(source.url({ db: SHOP_DB }), target.url({ db: SHOP_DB }));
    say.detail(comparison.table);
    checkpoint();

    // 7. The source as it was, but frozen: the target is the shop's database now.
    say.step(7, "Removing pgferry's capture triggers and log tables from the source (it stays frozen).");
    say.detail(describeRemoved(await cleanup(common.source)));

    await teardown(flags.keep === true, (text) => say.detail(text));
    const verdict = comparison.equal
      ? 'After the cutover every table is equal on both sides, row for row.'
      : `After the cutover these tables DIFFER: ${comparison.different.join(', ')}.`;
    process.stdout.write(
      `\nDone in ${Math.round(say.elapsed())}s. pgferry copied ${int(copied.rows)} rows (${bytes(copied.bytes)}) ` +
        `of ${comparison.tables} tables from PostgreSQL ${versions.source} to ${versions.target}\n` +
        `while the shop kept writing (${int(shop.transactions)} transactions). It replayed ${int(replayed)} ` +
        `captured changes, the lag never above ${maxLag.toFixed(1)}s, and cut over with ` +
        `${c.downtimeSeconds.toFixed(2)}s of write downtime.\n${verdict}\n`,
    );
    if (!comparison.equal) process.exitCode = 1;
  } catch (err) {
    // After Ctrl-C, whatever failed on the way out (the engine's own "stopped") is the stop.
    if (interrupt.signal.aborted) throw cancelled();
    throw err;
  } finally {
    try {
      await teardown(flags.keep === true && !interrupt.signal.aborted, (text) =>
        process.stderr.write(`pgferry: ${text}\n`),
      );
    } finally {
      releaseSignals();
    }
  }
}

type Settled = { result: MigrateResult } | { error: unknown };

const settle = (p: Promise<MigrateResult>): Promise<Settled> =>
  p.then(
    (result) => ({ result }),
    (error) => ({ error }),
  );

/** The 'run' migration returned or failed before the demo stopped it. */
function endedEarly(s: Settled, checkpoint: () => void): never {
  unwrap(s);
  checkpoint();
  throw new PgferryError('PGFERRY_INTERNAL_ERROR', 'the migration ended before it was told to stop');
}

function unwrap(s: Settled): MigrateResult {
  if ('error' in s) throw s.error;
  return s.result;
}

async function startServers(
  dir: string,
  versions: { source: ServerVersion; target: ServerVersion },
): Promise<{ source: Cluster; target: Cluster }> {
  const opts = { parentDir: dir, ownProcessGroup: true };
  const [s, t] = await Promise.allSettled([
    startCluster(versions.source, opts),
    startCluster(versions.target, opts),
  ]);
  if (s.status === 'fulfilled' && t.status === 'fulfilled') return { source: s.value, target: t.value };
  await Promise.all([s, t].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
  const reason = [s, t].find((r) => r.status === 'rejected')!.reason as Error;
  throw new PgferryError(
    'PGFERRY_DEMO_UNAVAILABLE',
    `a local PostgreSQL server did not start: ${String(reason?.message ?? reason).split('\n')[0]}`,
    { side: 'tool', cause: reason },
  );
}
