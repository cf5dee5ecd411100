// `pgferry dump-restore`: the engine's dump-restore (engine/dump-restore/) with its progress as
// lines on stderr (a table done, at most every few seconds, and each phase), its outcome as a
// summary or JSON, and the verification's verdict as the exit status: 0 equal, 1 different.
import path from 'node:path';
import { dumpRestore } from '../../engine/dump-restore/dump-restore.js';
import type { ProgressEvent } from '../../engine/dump-restore/progress.js';
import { PgferryError } from '../../lib/errors.js';
import { parseHttp, parseJobs, sourceConn, targetConn } from '../config.js';
import { bytes, duration, int } from '../format.js';
import { startProgressServer } from '../http/progress-server.js';
import { createLogger } from '../logger.js';
import { ProgressView } from '../progress-view.js';
import { onStopSignal } from '../signals.js';

interface Flags {
  source?: string;
  target?: string;
  include?: string[];
  exclude?: string[];
  jobs?: string;
  workdir?: string;
  stream?: boolean;
  adaptExtensions?: boolean;
  json?: boolean;
  http?: string;
}

export const DUMP_RESTORE_HELP =
  "\nPreflight (pg_dump and pg_restore at least the source's major, the target reachable and empty, every\n" +
  "extension available on the target at the source's version), then the schema and each table dumped in\n" +
  'one snapshot into --workdir, restored with --no-owner --no-acl (schema in one transaction, each table in\n' +
  'its own, then keys, indexes and constraints), sequences set, materialized views refreshed, and every\n' +
  'table counted on both sides. Interrupted? Run the same command again: a finished dump is kept, a table\n' +
  'dumped or restored completely is not redone. Exit status: 0 equal, 1 different or problems found, 2 error.';

/** Where the dump goes without --workdir or --stream: beside the default state file. */
const DEFAULT_WORKDIR = 'pgferry-dump';

/** Progress lines at most this often (a phase's start and end always). */
const LINE_MS = 3_000;

export async function dumpRestoreCommand(flags: Flags): Promise<void> {
  if (flags.stream && flags.workdir) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', '--stream and --workdir exclude each other', {
      side: 'config',
      hint: '--stream pipes pg_dump into pg_restore with no directory; --workdir keeps a resumable dump.',
    });
  }
  // A bar per phase on a terminal (PGFERRY_PROGRESS=off turns it off); JSON log lines elsewhere.
  const view =
    process.stderr.isTTY && process.env.PGFERRY_PROGRESS !== 'off'
      ? new ProgressView(process.stderr)
      : undefined;
  const log = createLogger(view ? { write: (line) => view.log(line) } : {});
  const httpText = flags.http ?? process.env.PGFERRY_HTTP;
  // Loaded with --http only: prom-client is ~30 ms of every other command's start-up.
  const metrics = httpText
    ? new (await import('../dump-restore-metrics.js')).DumpRestoreMetrics()
    : undefined;
  const server = metrics ? await startProgressServer(parseHttp(httpText!), metrics) : undefined;
  if (server) log.info({ port: server.port }, 'progress and metrics at /status and /metrics');
  const controller = new AbortController();
  const stop = () => {
    // A second signal: no more waiting for pg_dump and pg_restore to stop.
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  const releaseSignals = onStopSignal(stop);
  let lastLine = 0;
  let lastPhase = '';
  const onProgress = (e: ProgressEvent) => {
    metrics?.update(e);
    view?.dumpRestore(e);
    const now = Date.now();
    const phaseEnd = e.total > 0 && e.done === e.total;
    if (e.phase === lastPhase && !phaseEnd && now - lastLine < LINE_MS) return;
    lastPhase = e.phase;
    lastLine = now;
    const counts =
      e.total > 0
        ? ` · ${e.done}/${e.total} tables · ${bytes(e.bytesDone)} of ${bytes(e.bytesTotal)}${e.etaSeconds !== null && !phaseEnd ? ` · ETA ${duration(e.etaSeconds)}` : ''}`
        : '';
    if (!view) log.info({ ...e }, `${e.phase}${counts}`);
  };
  try {
    const result = await dumpRestore({
      source: sourceConn(flags.source),
      target: targetConn(flags.target),
      filter: { include: flags.include ?? [], exclude: flags.exclude ?? [] },
      jobs: parseJobs(flags.jobs ?? process.env.PGFERRY_JOBS ?? '4'),
      workdir: flags.stream ? null : path.resolve(flags.workdir ?? DEFAULT_WORKDIR),
      stream: flags.stream ?? false,
      adaptExtensions: flags.adaptExtensions ?? false,
      signal: controller.signal,
      log: (level, message, data) => log[level](data ?? {}, message),
      onProgress,
    });
    const v = result.verify;
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({ ok: v.equal, ...result, preflight: undefined, warnings: result.preflight.warnings }, null, 2)}\n`,
      );
    } else {
      const lines = [
        `${result.resumed ? 'resumed and finished' : 'done'}: ${int(result.tables)} tables (${bytes(result.bytes)} on the source) in ${duration(result.seconds)}`,
        `sequences set: ${result.sequences} · materialized views refreshed: ${result.materializedViews}`,
        ...result.preflight.warnings.map((w) => `warning: ${w.message} (${w.fix})`),
        ...result.adaptedExtensions.map(
          (a) => `extension ${a.name}: ${a.from} on the source, ${a.to} on the target`,
        ),
        ...(result.snapshots > 1
          ? [
              `the dump was taken in ${result.snapshots} snapshots (resumed): consistent if writes to the source were stopped`,
            ]
          : []),
        ...(result.preflight.tablesWithoutKey.length > 0
          ? [`tables without a primary key (copied whole): ${result.preflight.tablesWithoutKey.join(', ')}`]
          : []),
        v.equal
          ? `verify: equal (${v.tables.length} tables counted on both sides)`
          : `verify: DIFFERENT: ${v.tables
              .filter((t) => !t.equal)
              .map((t) => `${t.table} (source ${t.sourceRows}, target ${t.targetRows})`)
              .join(', ')}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    process.exitCode = v.equal ? 0 : 1;
  } finally {
    view?.stop();
    await server?.close();
    releaseSignals();
  }
}
