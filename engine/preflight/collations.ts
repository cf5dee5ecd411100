// How each database sorts text: its default collation's provider, locale and library version.
// Two databases that differ here order text differently (ORDER BY, unique indexes on text, range
// comparisons), so the application's results can change after the move even though every row is
// the same. pgferry itself never relies on text order across servers (chunk marks, verify's key
// hashes); this only tells the operator.
import type pg from 'pg';
import { q } from '../shared/db.js';

export interface DatabaseCollation {
  /** 'libc', 'icu' or 'builtin'. */
  provider: string;
  /** The ICU locale (icu), or LC_COLLATE (libc, builtin). */
  locale: string;
  ctype: string;
  /** The collation library's version as the server reports it now (glibc or ICU), where known. */
  version: string | null;
}

const PROVIDERS: Record<string, string> = { c: 'libc', i: 'icu', b: 'builtin' };

export async function readCollation(
  client: pg.Client,
  side: 'source' | 'target',
  major: number,
): Promise<DatabaseCollation> {
  // The catalog columns arrived over versions: datlocprovider and the actual version in 15,
  // daticulocale (15, 16) renamed datlocale in 17.
  const icu = major >= 17 ? 'datlocale' : major >= 15 ? 'daticulocale' : 'NULL::text';
  const provider = major >= 15 ? 'datlocprovider::text' : "'c'";
  const version = major >= 15 ? 'pg_database_collation_actual_version(oid)' : 'NULL::text';
  const [row] = await q<{
    provider: string;
    icu: string | null;
    collate: string;
    ctype: string;
    version: string | null;
  }>(
    client,
    side,
    `SELECT ${provider} AS provider, ${icu} AS icu, datcollate AS collate, datctype AS ctype, ${version} AS version
       FROM pg_database WHERE datname = current_database()`,
  );
  const p = PROVIDERS[row!.provider] ?? row!.provider;
  return {
    provider: p,
    locale: p === 'icu' && row!.icu ? row!.icu : row!.collate,
    ctype: row!.ctype,
    version: row!.version,
  };
}

const describe = (c: DatabaseCollation) =>
  `${c.provider} ${c.locale}${c.version ? ` (version ${c.version})` : ''}`;

/** What the operator should know when the two databases sort text differently, or null. */
export function collationDifference(
  source: DatabaseCollation,
  target: DatabaseCollation,
): { code: string; message: string; fix: string } | null {
  if (
    source.provider !== target.provider ||
    source.locale !== target.locale ||
    source.ctype !== target.ctype
  ) {
    return {
      code: 'collation-differs',
      message: `the source database sorts text by ${describe(source)}, the target by ${describe(target)}: ORDER BY on text, text ranges and upper()/lower() may give other results after the move`,
      fix: `create the target database with the source's collation (CREATE DATABASE ... TEMPLATE template0 ${source.provider === 'icu' ? `LOCALE_PROVIDER icu ICU_LOCALE '${source.locale}'` : `LOCALE '${source.locale}'`}) if the application depends on it`,
    };
  }
  if (source.version && target.version && source.version !== target.version) {
    return {
      code: 'collation-version-differs',
      message: `both databases sort text by ${source.provider} ${source.locale}, but with different library versions (source ${source.version}, target ${target.version}): some strings may sort differently`,
      fix: "check the application's text ordering on the target; indexes there are built by the target itself, so they are consistent",
    };
  }
  return null;
}

/** Reads both databases' collations (for a run started without a preflight). */
export async function sortingDifference(
  src: pg.Client,
  dst: pg.Client,
): Promise<ReturnType<typeof collationDifference>> {
  const major = async (c: pg.Client, side: 'source' | 'target') => {
    const [row] = await q<{ n: string }>(c, side, "SELECT current_setting('server_version_num') AS n");
    return Math.floor(Number(row!.n) / 10000);
  };
  const [s, t] = await Promise.all([
    major(src, 'source').then((m) => readCollation(src, 'source', m)),
    major(dst, 'target').then((m) => readCollation(dst, 'target', m)),
  ]);
  return collationDifference(s, t);
}
