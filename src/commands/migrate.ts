import type { ProgressSnapshot } from '../../engine/copy/progress.js';
import type { CutoverResult } from '../../engine/cutover/cutover.js';
import { interruptedCutover } from '../../engine/cutover/freeze-record.js';
import { type MigrateResult, migrate } from '../../engine/migrate.js';
import type { ReplayStats } from '../../engine/replay/replay.js';
import type { RollbackResult } from '../../engine/reverse/rollback.js';
import { reverseStats } from '../../engine/reverse/state.js';
import { RunControl } from '../../engine/run/control.js';
import { type Outages, readOutages } from '../../engine/shared/outage.js';
import { isPgferryError, PgferryError, redact } from '../../lib/errors.js';
import {
  apiToken,
  type CutoverFlags,
  loadCutoverSettings,
  loadMigrateConfig,
  type MigrateConfig,
  type MigrateFlags,
} from '../config.js';
import { bytes, duration, int } from '../format.js';
import type { ApiServer } from '../http/server.js';
import { createLogger, type Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { ProgressView } from '../progress-view.js';
import { type MigrateOutcome, migrateReport } from '../run-report.js';
import { onStopSignal } from '../signals.js';

export async function migrateCommand(
  flags: MigrateFlags & CutoverFlags & { json?: boolean; reverse?: boolean },
): Promise<void> {
  const started = Date.now();
  const config = loadMigrateConfig(flags);
  const cutoverSettings = loadCutoverSettings(flags);
  const mode = config.mode;
  // Progress bars on a terminal (PGFERRY_PROGRESS=off turns them off); JSON log lines elsewhere.
  const view =
    process.stderr.isTTY && process.env.PGFERRY_PROGRESS !== 'off'
      ? new ProgressView(process.stderr)
      : undefined;
  const log = createLogger(view ? { write: (line) => view.log(line) } : {});
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      log.warn({ signal }, 'second signal: exiting now; the next run resumes from the last checkpoint');
      process.exit(130);
    }
    log.warn(
      { signal },
      'stopping between batches; in-flight chunks are rolled back; run the same command to resume',
    );
    stop.abort(signal);
  };
  const releaseSignals = onStopSignal(onSignal);
  const control = config.http ? new RunControl(config.state) : undefined;
  let metrics: Metrics | undefined;
  let api: ApiServer | undefined;
  try {
    // A signal held while pgferry was loading (src/signals.ts): nothing was started.
    if (stop.signal.aborted) throw new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before it started');
    if (control) ({ metrics, api } = await startApi(config, control, cutoverSettings, log));
    log.info(
      {
        source: config.source.label(),
        target: config.target.label(),
        state: config.state,
        jobs: config.jobs,
      },
      `migrate (${mode})`,
    );
    let lastReplayLog = 0;
    let lastReverseLog = 0;
    const result = await migrate({
      source: config.source,
      target: config.target,
      statePath: config.state,
      jobs: config.jobs,
      filter: { include: config.include, exclude: config.exclude },
      mode,
      capture: config.capture,
      chunkBytes: config.chunkBytes,
      maxSnapshotAgeMs: config.maxSnapshotAgeMs,
      captureLockWaitMs: config.captureLockWaitMs,
      retryForMs: config.retryForMs,
      drift: config.drift,
      reverseAfterCutover: config.reverseAfterCutover,
      reverse: flags.reverse,
      twoWay: config.twoWay ?? undefined,
      onTwoWayConflicts: metrics && ((table, winner, n) => metrics?.twoWayConflicts(table, winner, n)),
      onReverseStats: (r) => {
        metrics?.reverseStats(r);
        if (Date.now() - lastReverseLog < 5_000) return;
        lastReverseLog = Date.now();
        log.info(
          { phase: 'reverse', lagSeconds: r.lagSeconds, backlog: r.backlog, appliedTotal: r.appliedTotal },
          `reverse replication · lag ${r.lagSeconds.toFixed(1)}s · backlog ${int(r.backlog)} changes · ${int(r.appliedTotal)} applied to the old source`,
        );
      },
      onDriftCheck: metrics && ((n) => metrics?.drift(n)),
      onReconnect: metrics && ((side) => metrics?.reconnect(side)),
      onCaptureLog: metrics && ((size) => metrics?.captureLog(size)),
      cutover: cutoverSettings,
      log,
      signal: stop.signal,
      control,
      progressIntervalMs: view ? 500 : 5_000,
      onProgress: (p) => {
        metrics?.copyProgress(p);
        if (view) view.copy(p);
        else log.info(progressFields(p), progressLine(p));
      },
      onReplayBatch: metrics && ((table, changes, seconds) => metrics?.replayBatch(table, changes, seconds)),
      onRetry: metrics && ((code) => metrics?.error(code)),
      onReplayStats: (r) => {
        metrics?.replayStats(r);
        view?.replay(r);
        if (view || Date.now() - lastReplayLog < 5_000) return;
        lastReplayLog = Date.now();
        const { tableBacklogs, ...fields } = r;
        log.info(
          { phase: 'replicating', ...fields, tables: tableBacklogs.slice(0, 10) },
          `replicating · lag ${r.lagSeconds.toFixed(1)}s · backlog ${int(r.backlog)} changes · ${int(r.changesPerSec)} changes/s · ${int(r.appliedTotal)} applied`,
        );
      },
    });
    view?.stop();
    log.info(result, `migrate (${mode}) ${stop.signal.aborted ? 'stopped' : 'done'}`);
    if (flags.json) {
      // A plain run (no mode flag) returns without a signal only after a cutover through the API.
      const outcome: MigrateOutcome = stop.signal.aborted ? 'stopped' : mode === 'run' ? 'cutover' : mode;
      printReport(config.state, { mode, outcome, seconds: result.seconds, result });
    } else {
      printResult(mode, result, stop.signal.aborted);
    }
    if (api && mode === 'run' && !stop.signal.aborted) {
      // A daemon stops on a signal only: after a cutover through the API, /status keeps saying so.
      log.info({ http: api.address }, 'the run is over; the HTTP API keeps answering until SIGTERM');
      await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
    }
  } catch (err) {
    const cancelled = isPgferryError(err) && err.code === 'PGFERRY_RUN_CANCELLED';
    if (isPgferryError(err) && !cancelled) metrics?.error(err.code);
    // A signal is how a replicating daemon is stopped: a clean stop, resumable, exit 0.
    if (mode !== 'copy-only' && cancelled) {
      if (flags.json) {
        const seconds = (Date.now() - started) / 1000;
        printReport(config.state, { mode, outcome: 'stopped', seconds, result: null });
      } else {
        process.stdout.write('stopped: run the same command with the same --state to resume\n');
      }
      return;
    }
    // The process ends before a scrape can see the failure: its log keeps the reason as a JSON
    // line for the log shipper (a terminal gets the one line the CLI prints on exit).
    if (!cancelled && !process.stderr.isTTY) log.error(failureFields(err), 'migrate failed');
    throw err;
  } finally {
    view?.stop();
    await api?.close().catch(() => {});
    releaseSignals();
  }
}

function printResult(mode: MigrateConfig['mode'], result: MigrateResult, stopped: boolean): void {
  const copied = `${result.tables} tables, ${int(result.rows)} rows, ${bytes(result.bytes)} copied`;
  const resumed = result.resumed ? ' (resumed)' : '';
  if (mode === 'copy-only') {
    process.stdout.write(
      `done: ${copied}, ${result.sequences} sequences set, in ${duration(result.seconds)}${resumed}\n`,
    );
    return;
  }
  const r = result.replay;
  const replayed = r
    ? `, ${int(r.appliedTotal)} changes replayed, backlog ${int(r.backlog)}, lag ${r.lagSeconds.toFixed(1)}s`
    : '';
  process.stdout.write(
    `${stopped ? 'stopped' : 'synced'}: ${copied}${replayed}, in ${duration(result.seconds)}${resumed}\n`,
  );
  if (result.cutover) process.stdout.write(cutoverLine(result.cutover));
  if (result.rollback) process.stdout.write(rollbackLine(result.rollback));
}

/** --json: the one document on stdout (logs and progress stay on stderr). */
function printReport(statePath: string, run: Parameters<typeof migrateReport>[1]): void {
  process.stdout.write(`${JSON.stringify(migrateReport(statePath, run), null, 2)}\n`);
}

/** Starts the HTTP API before the pipeline, its metrics seeded from an earlier run's state. */
async function startApi(
  config: Readonly<MigrateConfig>,
  control: RunControl,
  cutoverDefaults: ReturnType<typeof loadCutoverSettings>,
  log: Logger,
): Promise<{ metrics: Metrics; api: ApiServer }> {
  const http = config.http!;
  // Loaded only with --http: the API and the metrics registry (fastify, zod, prom-client) cost a
  // run without them ~20 MB of memory and a quarter of a second at start.
  const [{ startApiServer }, { Metrics }] = await Promise.all([
    import('../http/server.js'),
    import('../metrics.js'),
  ]);
  const metrics = new Metrics(
    () =>
      control.read((s) => ({
        phase: s.reportedPhase() ?? 'preflight',
        downtimeSeconds: Number(s.getMeta('cutover_downtime_seconds')) || null,
        cutoverInterrupted: interruptedCutover(s) !== null,
        outageSince: outageSince(readOutages(s)),
        snapshotAgeSeconds: control.snapshotAgeSeconds(),
      })) ?? { phase: 'preflight', downtimeSeconds: null },
  );
  control.read((s) => {
    metrics.seedCopy(s.tables());
    const replay = s.getMeta('replay');
    if (replay) metrics.replayStats(JSON.parse(replay) as ReplayStats);
    const reverse = reverseStats(s);
    if (reverse) metrics.reverseStats(reverse);
  });
  const token = apiToken();
  const api = await startApiServer({
    host: http.host,
    port: http.port,
    token,
    control,
    metrics,
    source: config.source,
    target: config.target,
    filter: { include: config.include, exclude: config.exclude },
    jobs: config.jobs,
    cutoverDefaults,
    log,
  });
  log.info(
    { http: api.address, control: token ? 'enabled' : 'disabled (no PGFERRY_API_TOKEN)' },
    'HTTP API listening',
  );
  return { metrics, api };
}

function progressLine(p: ProgressSnapshot): string {
  return (
    `copy ${p.percent.toFixed(1)}% · ${int(p.rows)} rows · ${bytes(p.bytes)} · ` +
    `${bytes(p.bytesPerSec)}/s · ${int(p.rowsPerSec)} rows/s · chunks ${p.chunksDone}/${p.chunksTotal} · ETA ${duration(p.etaSeconds)}`
  );
}

function progressFields(p: ProgressSnapshot) {
  return {
    phase: 'copy',
    percent: p.percent,
    rows: p.rows,
    bytes: p.bytes,
    rowsPerSec: p.rowsPerSec,
    bytesPerSec: p.bytesPerSec,
    etaSeconds: p.etaSeconds,
    tables: p.tables
      .filter((t) => t.chunksDone < t.chunksTotal)
      .slice(0, 10)
      .map((t) => ({ table: t.table, percent: t.percent, rows: t.rows, bytes: t.bytes })),
  };
}

export function cutoverLine(c: CutoverResult): string {
  return (
    `cutover done: write downtime ${c.downtimeSeconds.toFixed(2)}s (freeze ${c.freeze}); ` +
    `${int(c.changesDrained)} changes drained, ${c.sequences} sequences set, ${c.materializedViews} materialized views refreshed, ` +
    `${c.deferredObjects} constraints/triggers created, ${c.foreignKeysValidated} foreign keys validated\n`
  );
}

export function rollbackLine(r: RollbackResult): string {
  return (
    `rollback done: write downtime ${r.downtimeSeconds.toFixed(2)}s (freeze ${r.freeze} on the new side); ` +
    `${int(r.changesDrained)} changes drained to the old source, ${r.sequences} sequences set, ` +
    `${r.objectsRestored} foreign keys/triggers restored, ${r.verify.tables} tables verified; the old source takes writes again\n`
  );
}

function failureFields(err: unknown): Record<string, unknown> {
  if (isPgferryError(err)) return err.toJSON();
  return { code: 'PGFERRY_INTERNAL_ERROR', message: redact(String((err as Error)?.message ?? err)) };
}

function outageSince(o: Outages | null): { source: string | null; target: string | null } {
  return { source: o?.source?.since ?? null, target: o?.target?.since ?? null };
}
