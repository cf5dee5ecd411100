// Deferred schema objects: indexes built after the copy, constraints and triggers created at
// cutover, each with the statement that creates it and whether it is done.
import type Database from 'better-sqlite3';
import { now } from './meta.js';
import type { ObjectStage, SchemaObjectRecord } from './store.js';

/** Replaces the whole list in one transaction. */
export function saveSchemaObjects(
  db: Database.Database,
  objects: { stage: ObjectStage; kind: string; name: string; sql: string }[],
): void {
  const ins = db.prepare('INSERT INTO schema_objects (stage, kind, name, sql) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    db.prepare('DELETE FROM schema_objects').run();
    for (const o of objects) ins.run(o.stage, o.kind, o.name, o.sql);
  })();
}

export function schemaObjects(db: Database.Database, stage?: ObjectStage): SchemaObjectRecord[] {
  const sql = `SELECT id, stage, kind, name, sql, status FROM schema_objects ${stage ? 'WHERE stage = ?' : ''} ORDER BY id`;
  const stmt = db.prepare(sql);
  return (stage ? stmt.all(stage) : stmt.all()) as SchemaObjectRecord[];
}

export function resetSchemaObjects(db: Database.Database, stage: ObjectStage): void {
  db.prepare("UPDATE schema_objects SET status = 'pending', finished_at = NULL WHERE stage = ?").run(stage);
}

export function finishSchemaObject(db: Database.Database, id: number): void {
  db.prepare("UPDATE schema_objects SET status = 'done', finished_at = ? WHERE id = ?").run(now(), id);
}

/** Adds objects to the list (a table joining the run brings its own). */
export function addSchemaObjects(
  db: Database.Database,
  objects: { stage: ObjectStage; kind: string; name: string; sql: string }[],
): void {
  const ins = db.prepare('INSERT INTO schema_objects (stage, kind, name, sql) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (const o of objects) ins.run(o.stage, o.kind, o.name, o.sql);
  })();
}

export function removeSchemaObjects(db: Database.Database, ids: number[]): void {
  const del = db.prepare('DELETE FROM schema_objects WHERE id = ?');
  db.transaction(() => {
    for (const id of ids) del.run(id);
  })();
}
