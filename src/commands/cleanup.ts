import { cleanup, cleanupRuns, type Removed } from '../../engine/capture/cleanup.js';
import type { ConnInfo } from '../../engine/shared/conn-info.js';
import { sourceConn, targetConn } from '../config.js';

export async function cleanupCommand(flags: {
  source?: string;
  target?: string;
  force?: boolean;
  run?: string;
  json?: boolean;
}): Promise<void> {
  const source = sourceConn(flags.source);
  const removed = await cleanup(source, { force: flags.force === true, runId: flags.run });
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
      ...(target ? { target: { server: target.identity(), removed: targetRemoved } } : {}),
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  report(source, removed, flags.run);
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
