// The source tables whose changes are captured (ordinary tables and partitioned roots), with the
// log table and the key and column lists replay reads them with.
import type Database from 'better-sqlite3';
import type { CaptureRecord } from './store.js';

/** Records a captured table; one already recorded (same oid) is kept as it was. */
export function saveCapture(db: Database.Database, c: CaptureRecord): void {
  db.prepare(
    `INSERT INTO captures (oid, schema_name, table_name, log_table, key_columns, columns, copy_format, key_format, partitioned)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (oid) DO NOTHING`,
  ).run(
    c.oid,
    c.schema,
    c.name,
    c.logTable,
    c.keyColumns,
    c.columns,
    c.copyFormat,
    c.keyFormat,
    c.partitioned,
  );
}

export function captures(db: Database.Database): CaptureRecord[] {
  return db
    .prepare(
      `SELECT oid, schema_name AS schema, table_name AS name, log_table AS logTable, key_columns AS keyColumns,
              columns, copy_format AS copyFormat, key_format AS keyFormat, partitioned
         FROM captures ORDER BY schema_name, table_name`,
    )
    .all() as CaptureRecord[];
}

/** A captured table's name and the shape replay writes it with, after the schema changed on both sides. */
export function updateCapture(db: Database.Database, c: CaptureRecord): void {
  db.prepare(
    `UPDATE captures SET schema_name = ?, table_name = ?, key_columns = ?, columns = ?, copy_format = ?,
            key_format = ?, partitioned = ? WHERE oid = ?`,
  ).run(c.schema, c.name, c.keyColumns, c.columns, c.copyFormat, c.keyFormat, c.partitioned, c.oid);
}

/** A table that left the run (dropped on both sides, or removed by the operator). */
export function removeCapture(db: Database.Database, oid: number): void {
  db.prepare('DELETE FROM captures WHERE oid = ?').run(oid);
}
