// How each database encodes text, and what a difference means for the move. pgferry's sessions
// read and write text as UTF-8 (node-postgres's client_encoding), so each server converts: a
// source in LATIN1 into a UTF8 target moves every character; a target whose encoding lacks a
// character of the source refuses its row (SQLSTATE 22P05); a SQL_ASCII source converts nothing
// and only checks that what it sends is valid UTF-8 (22021). Either failure stops the copy of
// that table with the bytes named (lib/errors.ts, dataHint); preflight says it beforehand.
import type pg from 'pg';
import { q } from '../shared/db.js';
import type { Finding } from './findings.js';

export function encodingDifference(source: string, target: string): Finding | null {
  if (source === target) return null;
  const fix = `create the target database with the source's encoding (CREATE DATABASE … ENCODING '${source}' TEMPLATE template0) or UTF8`;
  if (source === 'SQL_ASCII') {
    return {
      code: 'source-sql-ascii',
      message: `the source database's encoding is SQL_ASCII (bytes stored unchecked), the target's ${target}: a table holding text that is not valid UTF-8 fails its copy, naming the bytes`,
      fix: `clean such values on the source before the move, or keep SQL_ASCII on the target (CREATE DATABASE … ENCODING 'SQL_ASCII' TEMPLATE template0)`,
    };
  }
  if (target === 'SQL_ASCII') {
    return {
      code: 'target-sql-ascii',
      message: `the target database's encoding is SQL_ASCII, the source's ${source}: text arrives as UTF-8 and is stored unchecked, not as the source's ${source} bytes`,
      fix,
    };
  }
  if (target === 'UTF8') return null;
  return {
    code: 'target-encoding-narrower',
    message: `the source database's encoding is ${source}, the target's ${target}: a character ${target} cannot represent fails its table's copy`,
    fix,
  };
}

/** encodingDifference of two connected databases (migrate warns with it at a new run's start). */
export async function encodingDifferenceOf(src: pg.Client, dst: pg.Client): Promise<Finding | null> {
  const [s, t] = await Promise.all([serverEncoding(src, 'source'), serverEncoding(dst, 'target')]);
  return encodingDifference(s, t);
}

/** How a database encodes text (server_encoding). */
export async function serverEncoding(c: pg.Client, side: 'source' | 'target'): Promise<string> {
  const [row] = await q<{ e: string }>(c, side, "SELECT current_setting('server_encoding') AS e");
  return row!.e;
}
