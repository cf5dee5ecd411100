import { cleanup } from '../../engine/capture/cleanup.js';
import { sourceConn } from '../config.js';

export async function cleanupCommand(flags: {
  source?: string;
  force?: boolean;
  run?: string;
  json?: boolean;
}): Promise<void> {
  const source = sourceConn(flags.source);
  const removed = await cleanup(source, { force: flags.force === true, runId: flags.run });
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({ source: source.identity(), run: flags.run ?? null, removed }, null, 2)}\n`,
    );
    return;
  }
  if (removed.length === 0) {
    process.stdout.write(
      `nothing to remove: ${source.label()} holds no pgferry object${flags.run ? ` of run ${flags.run}` : ''}\n`,
    );
    return;
  }
  process.stdout.write(
    `removed from ${source.label()}:\n${removed.map((r) => `  ${r.kind} ${r.name}`).join('\n')}\n`,
  );
}
