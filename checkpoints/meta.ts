// Where the run stands: the meta key/value table (the current phase, the pause reason, the
// setup and whatever else the engine keeps by key) and the phases table with each phase's times.
// Every timestamp the store writes is an ISO 8601 UTC string from now().
import type Database from 'better-sqlite3';
import type { Phase } from './store.js';

export const now = () => new Date().toISOString();

const statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();

/**
 * A statement prepared once per open database: preparing costs more than running a key lookup,
 * and replay reads the pause reason several times a round (measured: 9% of the daemon's CPU).
 */
function statement(db: Database.Database, sql: string): Database.Statement {
  let byText = statements.get(db);
  if (!byText) {
    byText = new Map();
    statements.set(db, byText);
  }
  let stmt = byText.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql);
    byText.set(sql, stmt);
  }
  return stmt;
}

export function getMeta(db: Database.Database, key: string): string | null {
  const row = statement(db, 'SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return row?.value ?? null;
}

export function setMeta(db: Database.Database, key: string, value: string): void {
  statement(
    db,
    'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  ).run(key, value);
}

export function deleteMeta(db: Database.Database, key: string): void {
  statement(db, 'DELETE FROM meta WHERE key = ?').run(key);
}

export function currentPhase(db: Database.Database): Phase | null {
  const row = statement(db, "SELECT value FROM meta WHERE key = 'phase'").get() as
    | { value: Phase }
    | undefined;
  return row?.value ?? null;
}

/** Makes a phase the current one; its start time is that of the first time it was entered. */
export function enterPhase(db: Database.Database, phase: Phase): void {
  db.prepare(
    "INSERT INTO meta (key, value) VALUES ('phase', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  ).run(phase);
  db.prepare(`INSERT INTO phases (name, started_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`).run(
    phase,
    now(),
  );
}

export function phaseDone(db: Database.Database, phase: Phase): boolean {
  const row = db.prepare('SELECT finished_at FROM phases WHERE name = ?').get(phase) as
    | { finished_at: string | null }
    | undefined;
  return Boolean(row?.finished_at);
}

/** Marks a phase finished, or (finished false) not finished any more: a rollback reopens `done`. */
export function finishPhase(db: Database.Database, phase: Phase, finished = true): void {
  db.prepare('UPDATE phases SET finished_at = ? WHERE name = ?').run(finished ? now() : null, phase);
}

export function phases(
  db: Database.Database,
): { name: string; startedAt: string; finishedAt: string | null }[] {
  return db
    .prepare(
      'SELECT name, started_at AS startedAt, finished_at AS finishedAt FROM phases ORDER BY started_at',
    )
    .all() as { name: string; startedAt: string; finishedAt: string | null }[];
}
