import { withClient } from '../../engine/shared/db.js';
import { isConnectionLoss, OutageTracker, sideOf } from '../../engine/shared/outage.js';
import { type VerifyReport, verify } from '../../engine/verify/verify.js';
import { isPgferryError, PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { parseJobs, retryFor, sourceConn, targetConn } from '../config.js';
import { int, table } from '../format.js';
import { createLogger } from '../logger.js';

interface Flags {
  source?: string;
  target?: string;
  include?: string[];
  exclude?: string[];
  checksums?: boolean;
  jobs?: string;
  json?: boolean;
  retryFor?: string;
}

export async function verifyCommand(flags: Flags): Promise<void> {
  const source = sourceConn(flags.source);
  const target = targetConn(flags.target);
  const log = createLogger();
  // Both servers must answer once: a first connection that fails is a configuration error.
  await withClient(source, 'control', async () => {});
  await withClient(target, 'control', async () => {});
  const outages = new OutageTracker({ retryForMs: retryFor(flags.retryFor) });
  let report: VerifyReport;
  for (;;) {
    try {
      report = await verify({
        source,
        target,
        filter: { include: flags.include ?? [], exclude: flags.exclude ?? [] },
        checksums: flags.checksums ?? false,
        jobs: parseJobs(flags.jobs ?? process.env.PGFERRY_JOBS ?? '2'),
      });
      break;
    } catch (err) {
      // A comparison is read-only: after an outage it simply starts over.
      if (!isConnectionLoss(err)) throw notAVerdict(err);
      const side = sideOf(err) ?? 'target';
      const wait = outages.failed(side, err);
      log.warn({ side, err: (err as Error).message }, `${side} unreachable: verify starts over`);
      await sleep(wait);
    }
  }
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
  process.exitCode = report.equal ? 0 : 1;
}

/** Exit 1 means "different": a comparison that failed reached no verdict, so it exits 2. */
function notAVerdict(err: unknown): unknown {
  if (isPgferryError(err) && err.exitCode === 2) return err;
  const e = isPgferryError(err) ? err : null;
  return new PgferryError('PGFERRY_VERIFY_FAILED', e ? e.message : String((err as Error)?.message ?? err), {
    side: e?.side,
    object: e?.object,
    sqlstate: e?.sqlstate,
    cause: err,
  });
}

function render(r: VerifyReport): string {
  const out: string[] = [];
  out.push(
    table(
      ['table', 'source rows', 'target rows', ...(r.checksums ? ['ranges differing'] : []), 'verdict'],
      r.tables.map((t) => [
        t.table,
        int(t.sourceRows),
        int(t.targetRows),
        ...(r.checksums ? [`${t.rangesDiffering ?? 0}/${t.rangesChecked ?? 0}`] : []),
        t.equal ? 'equal' : 'DIFFERENT',
      ]),
    ),
  );
  for (const t of r.tables.filter((t) => (t.differences?.length ?? 0) > 0)) {
    out.push('');
    out.push(`${t.table}: rows that differ`);
    for (const d of t.differences ?? []) {
      const key = Object.entries(d.key)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ');
      out.push(`  ${d.kind.padEnd(17)} ${key}`);
    }
    if (t.moreDifferences) out.push(`  … and ${t.moreDifferences} more`);
  }
  const differing = r.tables.filter((t) => !t.equal).length;
  out.push('');
  out.push(
    differing === 0
      ? `Equal: ${r.tables.length} tables${r.checksums ? ', every row hashed' : ' (row counts; add --checksums to compare every row)'}.`
      : `Different: ${differing} of ${r.tables.length} tables.`,
  );
  return `${out.join('\n')}\n`;
}
