import { PgferryError } from '../../engine/errors.js';
import { migrate } from '../../engine/migrate.js';
import type { ProgressSnapshot } from '../../engine/progress.js';
import { loadMigrateConfig, type MigrateFlags } from '../config.js';
import { bytes, duration, int } from '../format.js';
import { createLogger } from '../logger.js';

export async function migrateCommand(flags: MigrateFlags): Promise<void> {
  const config = loadMigrateConfig(flags);
  if (config.capture !== 'triggers') {
    throw new PgferryError('PGFERRY_NOT_IMPLEMENTED', `--capture ${config.capture} is not implemented yet`, {
      side: 'config',
    });
  }
  if (config.http) {
    throw new PgferryError(
      'PGFERRY_NOT_IMPLEMENTED',
      '--http (the status and control API) is not implemented yet',
      {
        side: 'config',
      },
    );
  }
  if (config.mode !== 'copy-only') {
    throw new PgferryError(
      'PGFERRY_NOT_IMPLEMENTED',
      'change capture and replay (migrate without --copy-only) is not implemented yet',
      { side: 'config', hint: 'Use `pgferry migrate --copy-only` for a consistent one-time clone.' },
    );
  }
  const log = createLogger();
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      log.warn({ signal }, 'second signal: exiting now; the next run resumes from the last checkpoint');
      process.exit(130);
    }
    log.warn({ signal }, 'stopping: in-flight chunks are rolled back; run the same command to resume');
    stop.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    log.info(
      {
        source: config.source.label(),
        target: config.target.label(),
        state: config.state,
        jobs: config.jobs,
      },
      'migrate --copy-only',
    );
    const result = await migrate({
      source: config.source,
      target: config.target,
      statePath: config.state,
      jobs: config.jobs,
      filter: { include: config.include, exclude: config.exclude },
      copyOnly: true,
      chunkBytes: config.chunkBytes,
      log,
      signal: stop.signal,
      onProgress: (p) => log.info(progressFields(p), progressLine(p)),
    });
    log.info(result, 'migrate --copy-only done');
    process.stdout.write(
      `done: ${result.tables} tables, ${int(result.rows)} rows, ${bytes(result.bytes)} copied, ` +
        `${result.sequences} sequences set, in ${duration(result.seconds)}${result.resumed ? ' (resumed)' : ''}\n`,
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
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
