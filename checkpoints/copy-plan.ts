// The copy plan: the tables to copy and their chunks (key ranges), with each chunk's progress.
// A table's copied rows and bytes are the sums over its chunks, never counted apart.
import type Database from 'better-sqlite3';
import { now } from './meta.js';
import { CHUNK_STATES, type ChunkRecord, type ChunkState, type TableRecord } from './store.js';

/** A table as planned: its record before any chunk ran, and its key ranges. */
export type TablePlan = Pick<
  TableRecord,
  'schema' | 'name' | 'rowsEstimate' | 'bytesEstimate' | 'keyColumns' | 'columns' | 'copyFormat'
> & { chunks: { lo: string[] | null; hi: string[] | null }[] };

/** Records every table's plan at once: a crash during planning leaves no half plan. */
export function savePlan(db: Database.Database, plan: TablePlan[]): void {
  const insTable = db.prepare(
    `INSERT INTO tables (schema_name, table_name, rows_estimate, bytes_estimate, key_columns, columns, copy_format)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const insChunk = db.prepare('INSERT INTO chunks (table_id, seq, lo, hi) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (const t of plan) {
      const info = insTable.run(
        t.schema,
        t.name,
        t.rowsEstimate,
        t.bytesEstimate,
        t.keyColumns,
        t.columns,
        t.copyFormat,
      );
      t.chunks.forEach((c, i) => {
        insChunk.run(info.lastInsertRowid, i, c.lo && JSON.stringify(c.lo), c.hi && JSON.stringify(c.hi));
      });
    }
  })();
}

export function hasPlan(db: Database.Database): boolean {
  return db.prepare('SELECT 1 FROM tables LIMIT 1').get() !== undefined;
}

export function tables(db: Database.Database): TableRecord[] {
  return db
    .prepare(
      `SELECT t.id, t.schema_name AS schema, t.table_name AS name, t.rows_estimate AS rowsEstimate,
              t.bytes_estimate AS bytesEstimate, t.key_columns AS keyColumns, t.columns, t.copy_format AS copyFormat,
              coalesce(sum(c.rows), 0) AS rowsCopied, coalesce(sum(c.bytes), 0) AS bytesCopied,
              count(c.id) AS chunksTotal, coalesce(sum(c.status = 'done'), 0) AS chunksDone
         FROM tables t LEFT JOIN chunks c ON c.table_id = t.id
        GROUP BY t.id ORDER BY t.schema_name, t.table_name`,
    )
    .all() as TableRecord[];
}

export function chunks(db: Database.Database, filter: { status?: ChunkState[] }): ChunkRecord[] {
  const statuses = filter.status ?? [...CHUNK_STATES];
  return db
    .prepare(
      `SELECT id, table_id AS tableId, seq, lo, hi, status, rows, bytes, attempts FROM chunks
        WHERE status IN (${statuses.map(() => '?').join(', ')}) ORDER BY table_id, seq`,
    )
    .all(...statuses) as ChunkRecord[];
}

export function startChunk(db: Database.Database, id: number): void {
  db.prepare(
    "UPDATE chunks SET status = 'copying', attempts = attempts + 1, started_at = ? WHERE id = ?",
  ).run(now(), id);
}

export function finishChunk(db: Database.Database, id: number, rows: number, bytes: number): void {
  db.prepare("UPDATE chunks SET status = 'done', rows = ?, bytes = ?, finished_at = ? WHERE id = ?").run(
    rows,
    bytes,
    now(),
    id,
  );
}

/** A table that left the run (pgferry tables remove, or a join undone): its plan and chunks. */
export function removeTablePlan(db: Database.Database, schema: string, name: string): void {
  db.transaction(() => {
    db.prepare(
      'DELETE FROM chunks WHERE table_id IN (SELECT id FROM tables WHERE schema_name = ? AND table_name = ?)',
    ).run(schema, name);
    db.prepare('DELETE FROM tables WHERE schema_name = ? AND table_name = ?').run(schema, name);
  })();
}
