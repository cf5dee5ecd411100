// Which chunks have committed on the target, recorded on the target itself: each chunk's COPY
// transaction also inserts its row here, so the mark exists exactly when the chunk's rows do.
// A chunk that pgferry did not see commit (killed after COMMIT, or a COMMIT whose reply was lost)
// is looked up here instead of being deleted by its key range and copied again: a range of a
// text key is evaluated in the collation of the server it runs on, and the target's (another
// locale, or the same locale name in another C library) can select other rows than the source's
// did, deleting finished chunks' rows or missing this one's.
import type pg from 'pg';
import { qualified, quoteIdent } from '../../lib/sql.js';
import { PGFERRY_SCHEMA } from '../shared/catalog.js';
import { q } from '../shared/db.js';

export const CHUNK_MARK_TABLE = 'copied_chunks';

const table = () => qualified(PGFERRY_SCHEMA, CHUNK_MARK_TABLE);

/** Creates the marks table on the target if this run does not have it yet. */
export async function ensureChunkMarks(client: pg.Client): Promise<void> {
  await q(
    client,
    'target',
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(PGFERRY_SCHEMA)};
     CREATE TABLE IF NOT EXISTS ${table()} (chunk_id bigint PRIMARY KEY, rows bigint NOT NULL, bytes bigint NOT NULL)`,
  );
}

/** Run in the chunk's own transaction, after its COPY. */
export function markChunkSql(chunkId: number, done: { rows: number; bytes: number }): string {
  return `INSERT INTO ${table()} (chunk_id, rows, bytes) VALUES (${chunkId}, ${done.rows}, ${done.bytes})`;
}

/** What a chunk committed on the target, or null when none of its rows are there. */
export async function readChunkMark(
  client: pg.Client,
  chunkId: number,
): Promise<{ rows: number; bytes: number } | null> {
  const [row] = await q<{ rows: string; bytes: string }>(
    client,
    'target',
    `SELECT rows::text, bytes::text FROM ${table()} WHERE chunk_id = $1`,
    [chunkId],
  );
  return row ? { rows: Number(row.rows), bytes: Number(row.bytes) } : null;
}

export async function dropChunkMarks(client: pg.Client): Promise<void> {
  await q(client, 'target', `DROP TABLE IF EXISTS ${table()}`);
}
