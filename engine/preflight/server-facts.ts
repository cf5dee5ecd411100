// Preflight's server facts (version, how the database sorts and encodes text) and the checks on
// the pair: not the same database however spelled, the target not older than the source, neither
// a standby where pgferry writes, the two sorting and encoding text alike.
import type pg from 'pg';
import { readIdentity, sameDatabase } from '../run/identity.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { q } from '../shared/db.js';
import { collationDifference, type DatabaseCollation, readCollation } from './collations.js';
import { encodingDifference } from './encodings.js';
import type { Findings } from './findings.js';
import type { PreflightOptions } from './preflight.js';
import { standbyProblems } from './standbys.js';

export interface ServerFacts {
  server: string;
  version: string;
  major: number;
  /** How the database sorts text. */
  collation: DatabaseCollation;
  /** How the database encodes text (server_encoding: UTF8, LATIN1, SQL_ASCII, …). */
  encoding: string;
}

async function serverFacts(client: pg.Client, conn: ConnInfo): Promise<ServerFacts> {
  const [row] = await q<{ v: string; n: string; e: string }>(
    client,
    conn.side,
    "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n, current_setting('server_encoding') AS e",
  );
  const major = Math.floor(Number(row!.n) / 10000);
  return {
    server: conn.label().slice(conn.side.length + 1),
    version: row!.v,
    major,
    collation: await readCollation(client, conn.side as 'source' | 'target', major),
    encoding: row!.e,
  };
}

export async function checkServers(
  src: pg.Client,
  dst: pg.Client,
  opts: PreflightOptions,
  { problems, warnings }: Findings,
): Promise<{ source: ServerFacts; target: ServerFacts }> {
  const source = await serverFacts(src, opts.source);
  const target = await serverFacts(dst, opts.target);
  const [sourceId, targetId] = await Promise.all([
    readIdentity(src, opts.source),
    readIdentity(dst, opts.target),
  ]);
  if (sameDatabase(sourceId, targetId)) {
    problems.push({
      code: 'same-database',
      message: `--source and --target are the same database (${targetId.databaseName} on ${opts.source.host}:${opts.source.port}, also reached as ${opts.target.host}:${opts.target.port})`,
      fix: 'point --target at the new, empty database',
    });
  }
  if (target.major < source.major) {
    problems.push({
      code: 'target-older',
      message: `target runs PostgreSQL ${target.version}, older than the source's ${source.version}`,
      fix: 'migrate to a target of the same or a newer major version',
    });
  }

  problems.push(...(await standbyProblems(src, dst, opts.copyOnly ?? false)));

  const sorting = collationDifference(source.collation, target.collation);
  if (sorting) warnings.push(sorting);
  const encoding = encodingDifference(source.encoding, target.encoding);
  if (encoding) warnings.push(encoding);

  return { source, target };
}
