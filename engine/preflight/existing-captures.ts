// Preflight's list of the change captures already on the source, each a warning.
import type pg from 'pg';
import { type CaptureRun, describeRun, listCaptures } from '../capture/registry.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import type { Finding } from './findings.js';

/**
 * Captures already on the source, each a warning: a new run gets a capture of its own, but every
 * capture adds a trigger call and a log insert to each write of the application.
 */
export async function existingCaptures(src: pg.Client, warnings: Finding[]): Promise<CaptureRun[]> {
  let captures: CaptureRun[];
  try {
    captures = await listCaptures(src);
  } catch (err) {
    warnings.push({
      code: 'capture-unreadable',
      object: PGFERRY_SCHEMA,
      message: `the captures already on the source could not be read: ${(err as Error).message}`,
      fix: `grant the source role SELECT on ${PGFERRY_SCHEMA}.runs and ${PGFERRY_SCHEMA}.captured, or run preflight as the role that created them`,
    });
    return [];
  }
  for (const c of captures) {
    const cost = 'each capture costs every write on the source a trigger call and a log row';
    if (c.runId === null) {
      warnings.push({
        code: 'capture-unregistered',
        object: PGFERRY_SCHEMA,
        message: `the source has ${describeRun(c)} (an older pgferry's, or its registry row was deleted): ${cost}`,
        fix: 'pgferry cleanup --source URL (removes every capture on the source; it refuses while a run is alive)',
      });
    } else if (c.alive) {
      warnings.push({
        code: 'capture-of-live-run',
        object: c.runId,
        message: `the source already has the capture of ${describeRun(c)}: alive; a new run gets a capture of its own, and ${cost}`,
        fix: `nothing, if both runs are wanted (two targets); otherwise stop run ${c.runId}, then pgferry cleanup --source URL --run ${c.runId}`,
      });
    } else {
      warnings.push({
        code: 'capture-abandoned',
        object: c.runId,
        message: `the source has the capture of ${describeRun(c)}: abandoned (its run is not alive), its logs grow with every write, and ${cost}`,
        fix: `pgferry cleanup --source URL --run ${c.runId} (or resume that run with its --state file)`,
      });
    }
  }
  return captures;
}
