// Preflight's extension check: each extension installed on the source exists on the target
// (pg_available_extension_versions), at the same version or another one.
import type pg from 'pg';
import { q } from '../shared/db.js';
import type { Findings } from './findings.js';
import type { SourceObjects } from './source-objects.js';

export interface ExtensionCheck {
  name: string;
  schema: string;
  sourceVersion: string;
  targetInstalled: string | null;
  targetAvailable: string[];
  status: 'ok' | 'missing' | 'other-version';
}

export async function checkExtensions(
  dst: pg.Client,
  exts: SourceObjects['exts'],
  { problems, warnings }: Findings,
): Promise<ExtensionCheck[]> {
  const available = await targetExtensions(
    dst,
    exts.map((e) => e.name),
  );
  const extensions: ExtensionCheck[] = exts.map((e) => {
    const versions = available.filter((a) => a.name === e.name);
    const installed = versions.find((a) => a.installed)?.version ?? null;
    const status: ExtensionCheck['status'] =
      versions.length === 0
        ? 'missing'
        : (installed ?? '') === e.version || (!installed && versions.some((v) => v.version === e.version))
          ? 'ok'
          : 'other-version';
    return {
      name: e.name,
      schema: e.schema,
      sourceVersion: e.version,
      targetInstalled: installed,
      targetAvailable: versions.map((v) => v.version),
      status,
    };
  });
  for (const e of extensions) {
    if (e.status === 'missing') {
      problems.push({
        code: 'extension-missing',
        object: e.name,
        message: `extension ${e.name} ${e.sourceVersion} is installed on the source but not available on the target`,
        fix: `install ${e.name} on the target server (on RDS: check it is supported for the engine version), or DROP EXTENSION ${e.name} on the source if unused`,
      });
    } else if (e.status === 'other-version') {
      warnings.push({
        code: 'extension-version',
        object: e.name,
        message: `extension ${e.name} is ${e.sourceVersion} on the source; the target has ${e.targetInstalled ?? `only ${e.targetAvailable.join(', ')}`}`,
        fix: `check ${e.name}'s release notes for changes between these versions; ALTER EXTENSION ${e.name} UPDATE after the migration if needed`,
      });
    }
  }
  return extensions;
}

async function targetExtensions(client: pg.Client, names: string[]) {
  const rows = await q<{ name: string; version: string; installed: boolean }>(
    client,
    'target',
    `SELECT name, version, installed FROM pg_available_extension_versions WHERE name = ANY($1) ORDER BY name, version`,
    [names],
  );
  return rows;
}
