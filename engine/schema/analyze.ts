// Planner statistics on the target: a freshly loaded table has none, and the application's first
// queries after the cutover would be planned blind. ANALYZE samples a bounded number of rows per
// table, so this costs seconds, not a scan of the data.
import type { Logger } from 'pino';
import { qualified } from '../../lib/sql.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, q } from '../shared/db.js';

export async function analyzeTables(
  target: ConnInfo,
  tables: { schema: string; name: string }[],
  jobs: number,
  log: Logger,
): Promise<void> {
  const queue = [...tables];
  const started = Date.now();
  const worker = async () => {
    const c = await connect(target, 'index');
    try {
      for (let t = queue.shift(); t; t = queue.shift()) {
        await q(c, 'target', `ANALYZE ${qualified(t.schema, t.name)}`, [], `${t.schema}.${t.name}`);
      }
    } finally {
      await c.end().catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, tables.length)) }, worker));
  log.info(
    { tables: tables.length, seconds: (Date.now() - started) / 1000 },
    'planner statistics gathered on the target',
  );
}
