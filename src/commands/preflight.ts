import { type PreflightReport, preflight } from '../../engine/preflight/preflight.js';
import { type CaptureKind, sourceConn, targetConn } from '../config.js';
import { bytes, int, table } from '../format.js';

interface Flags {
  source?: string;
  target?: string;
  include?: string[];
  exclude?: string[];
  copyOnly?: boolean;
  capture?: CaptureKind;
  twoWay?: boolean;
  json?: boolean;
}

export async function preflightCommand(flags: Flags): Promise<void> {
  const report = await preflight({
    source: sourceConn(flags.source),
    target: targetConn(flags.target),
    filter: { include: flags.include ?? [], exclude: flags.exclude ?? [] },
    copyOnly: flags.copyOnly ?? false,
    capture: flags.capture ?? 'triggers',
    twoWay: flags.twoWay ?? false,
  });
  process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
  process.exitCode = report.ok ? 0 : 1;
}

function render(r: PreflightReport): string {
  const out: string[] = [];
  out.push(`source   ${r.source.server}   PostgreSQL ${r.source.version}, ${r.source.encoding}`);
  out.push(`target   ${r.target.server}   PostgreSQL ${r.target.version}, ${r.target.encoding}`);
  out.push(`pg_dump  ${r.pgDump ? `${r.pgDump.path} (${r.pgDump.version})` : 'not found'}`);
  out.push('');
  out.push(`Tables: ${r.totals.tables}, ~${int(r.totals.rowsEstimate)} rows, ${bytes(r.totals.bytes)}`);
  if (r.tables.length > 0) {
    const rows = r.tables.map((t) => [
      `  ${t.table}`,
      t.kind,
      int(t.rowsEstimate),
      bytes(t.bytes),
      t.primaryKey ? `(${t.primaryKey.join(', ')})` : 'NONE',
    ]);
    out.push(table(['  table', 'kind', 'rows (est.)', 'size', 'primary key'], rows));
  }
  out.push('');
  out.push(`Sequences: ${r.sequences.length}`);
  out.push(`Materialized views: ${r.materializedViews.length ? r.materializedViews.join(', ') : 'none'}`);
  out.push(`Large objects: ${r.largeObjects}`);
  out.push(`Unlogged tables: ${r.unloggedTables.length ? r.unloggedTables.join(', ') : 'none'}`);
  out.push(
    `Extensions: ${
      r.extensions.length
        ? r.extensions
            .map(
              (e) =>
                `${e.name} ${e.sourceVersion} ${e.status === 'ok' ? 'ok' : e.status === 'missing' ? 'MISSING on target' : `(target: ${e.targetInstalled ?? e.targetAvailable.join('/')})`}`,
            )
            .join(', ')
        : 'none'
    }`,
  );
  out.push(
    `Captures on the source: ${
      r.captures.length
        ? r.captures
            .map((c) =>
              c.runId === null
                ? `unregistered (${c.tables} tables)`
                : `run ${c.runId} (${c.alive ? 'alive' : 'abandoned'}, ${c.tables} tables)`,
            )
            .join(', ')
        : 'none'
    }`,
  );
  const findings = (title: string, mark: string, list: PreflightReport['problems']) => {
    if (list.length === 0) return;
    out.push('');
    out.push(`${title} (${list.length}):`);
    for (const f of list) {
      out.push(`  ${mark} ${f.message}`);
      if (f.fix) out.push(`      fix: ${f.fix}`);
    }
  };
  findings('Problems', '✗', r.problems);
  findings('Warnings', '!', r.warnings);
  out.push('');
  out.push(r.ok ? 'Ready: no problem found.' : `Not ready: ${r.problems.length} problem(s) to fix first.`);
  return `${out.join('\n')}\n`;
}
