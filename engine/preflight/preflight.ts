// Preflight: everything that can be known about a migration before it starts, and every reason
// it would fail, each named with its object and its fix. Reads only; changes nothing anywhere.
// The checks run in the order of the report, one module each (servers, client tools, tables,
// source objects, target, extensions, existing captures); the folder reads engine/shared,
// engine/run's identity and engine/capture's registry.

import type { ChangeSourceKind } from '../capture/change-source.js';
import type { CaptureRun } from '../capture/registry.js';
import { captureProblems } from '../capture/sources.js';
import { displayName } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { withClient } from '../shared/db.js';
import type { TableFilter } from '../shared/table-filter.js';
import { twoWayProblems } from '../two-way/sequences.js';
import { checkClientTools } from './client-tools.js';
import { existingCaptures } from './existing-captures.js';
import { checkExtensions, type ExtensionCheck } from './extension-checks.js';
import type { Finding, Findings } from './findings.js';
import { checkServers, type ServerFacts } from './server-facts.js';
import { checkSourceObjects } from './source-objects.js';
import { checkTables } from './table-checks.js';
import { checkTargetEmpty, checkTargetPrivilege } from './target-checks.js';

export interface PreflightReport {
  ok: boolean;
  source: ServerFacts;
  target: ServerFacts;
  pgDump: { path: string; version: string } | null;
  tables: {
    table: string;
    kind: 'table' | 'partitioned' | 'partition';
    rowsEstimate: number;
    bytes: number;
    primaryKey: string[] | null;
    unlogged: boolean;
  }[];
  totals: { tables: number; rowsEstimate: number; bytes: number };
  sequences: string[];
  materializedViews: string[];
  largeObjects: number;
  unloggedTables: string[];
  extensions: ExtensionCheck[];
  targetTables: string[];
  /** Change captures already on the source (other runs', alive or abandoned). */
  captures: CaptureRun[];
  problems: Finding[];
  warnings: Finding[];
}

export interface PreflightOptions {
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  /** A --copy-only run needs no capture privileges and copies a table without a key whole. */
  copyOnly?: boolean;
  /** The change source the run will read (--capture): what it needs of the source is checked. */
  capture?: ChangeSourceKind;
  /** --two-way: the capture and the key sequences of both sides checked (engine/two-way/sequences.ts). */
  twoWay?: boolean;
}

export async function preflight(opts: PreflightOptions): Promise<PreflightReport> {
  const found: Findings = { problems: [], warnings: [] };
  const { problems, warnings } = found;
  return withClient(opts.source, 'control', async (src) =>
    withClient(opts.target, 'control', async (dst) => {
      const { source, target } = await checkServers(src, dst, opts, found);
      const dump = await checkClientTools(source, opts, problems);
      const tables = await checkTables(src, opts, found);
      const objects = await checkSourceObjects(src, opts, found);
      await checkTargetPrivilege(dst, opts, problems);
      const extensions = await checkExtensions(dst, objects.exts, found);
      const targetTables = await checkTargetEmpty(dst, opts, problems);
      const captures = await existingCaptures(src, warnings);
      if (!opts.copyOnly) problems.push(...(await captureProblems(opts.capture ?? 'triggers', src, tables)));
      if (opts.twoWay) problems.push(...(await twoWayProblems(src, dst, tables, opts.capture ?? 'triggers')));

      const unlogged = tables.filter((t) => t.unlogged).map(displayName);
      const listed = tables.map((t) => ({
        table: displayName(t),
        kind: (t.kind === 'p' ? 'partitioned' : t.partitionRoot ? 'partition' : 'table') as
          | 'table'
          | 'partitioned'
          | 'partition',
        rowsEstimate: t.rowsEstimate,
        bytes: t.bytes,
        primaryKey: t.primaryKey?.map((k) => k.name) ?? null,
        unlogged: t.unlogged,
      }));
      return {
        ok: problems.length === 0,
        source,
        target,
        pgDump: dump ? { path: dump.path, version: dump.version } : null,
        tables: listed,
        totals: {
          tables: tables.length,
          rowsEstimate: tables.reduce((a, t) => a + t.rowsEstimate, 0),
          bytes: tables.reduce((a, t) => a + t.bytes, 0),
        },
        sequences: objects.seqs.map((s) => s.name),
        materializedViews: objects.matviews,
        largeObjects: objects.largeObjects,
        unloggedTables: unlogged,
        extensions,
        targetTables,
        captures,
        problems,
        warnings,
      };
    }),
  );
}
