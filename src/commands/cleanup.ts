import { cleanupReport, cleanupRuns, type Removed } from '../../engine/capture/cleanup.js';
import { PGFERRY_SCHEMA } from '../../engine/shared/catalog.js';
import type { ConnInfo } from '../../engine/shared/conn-info.js';
import { sourceConn, targetConn } from '../config.js';

export const CLEANUP_HELP =
  `\nA run is alive while its heartbeat on the source is less than 60 s old; cleanup refuses to remove\n` +
  "a live run's capture (exit 1, PGFERRY_CLEANUP_REFUSED, naming the run) unless --force.\n" +
  '`pgferry preflight` lists every capture on the source with its run id.\n' +
  'Only what pgferry created goes: a schema named pgferry that also holds objects of its own keeps\n' +
  'them and stays; cleanup names them (`kept` in --json).';

export async function cleanupCommand(flags: {
  source?: string;
  target?: string;
  force?: boolean;
  run?: string;
  json?: boolean;
}): Promise<void> {
  const source = sourceConn(flags.source);
  // A schema named pgferry that also holds the application's objects stays, with them (`kept`).
  const { removed, kept } = await cleanupReport(source, { force: flags.force === true, runId: flags.run });
  // The target holds capture only for reverse replication: removed run by run, its mark kept.
  const target = flags.target !== undefined ? targetConn(flags.target) : null;
  const targetRemoved = target
    ? await cleanupRuns(target, { force: flags.force === true, runId: flags.run })
    : [];
  if (flags.json) {
    const doc = {
      source: source.identity(),
      run: flags.run ?? null,
      removed,
      kept,
      ...(target ? { target: { server: target.identity(), removed: targetRemoved } } : {}),
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  report(source, removed, flags.run);
  if (kept.length > 0) {
    process.stdout.write(
      `kept schema ${PGFERRY_SCHEMA} on ${source.label()}: it also holds what pgferry did not create (${kept.join(', ')}), which pgferry never drops\n`,
    );
  }
  if (target) report(target, targetRemoved, flags.run);
}

function report(conn: ConnInfo, removed: Removed[], run: string | undefined): void {
  if (removed.length === 0) {
    process.stdout.write(
      `nothing to remove: ${conn.label()} holds no pgferry object${run ? ` of run ${run}` : ''}\n`,
    );
    return;
  }
  process.stdout.write(
    `removed from ${conn.label()}:\n${removed.map((r) => `  ${r.kind} ${r.name}`).join('\n')}\n`,
  );
}
