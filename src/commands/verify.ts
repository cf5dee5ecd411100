import { type VerifyReport, verify } from '../../engine/verify.js';
import { parseJobs, sourceConn, targetConn } from '../config.js';
import { int, table } from '../format.js';

interface Flags {
  source?: string;
  target?: string;
  include?: string[];
  exclude?: string[];
  checksums?: boolean;
  jobs?: string;
  json?: boolean;
}

export async function verifyCommand(flags: Flags): Promise<void> {
  const report = await verify({
    source: sourceConn(flags.source),
    target: targetConn(flags.target),
    filter: { include: flags.include ?? [], exclude: flags.exclude ?? [] },
    checksums: flags.checksums ?? false,
    jobs: parseJobs(flags.jobs ?? process.env.PGFERRY_JOBS ?? '2'),
  });
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
  process.exitCode = report.equal ? 0 : 1;
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
