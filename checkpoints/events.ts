// The run's event log: what happened, when, in which phase, at which level (the status page and
// `pgferry status` show its tail).
import type Database from 'better-sqlite3';
import { now } from './meta.js';
import type { EventRecord } from './store.js';

export function appendEvent(
  db: Database.Database,
  level: 'info' | 'warn' | 'error',
  phase: string | null,
  message: string,
  data?: unknown,
): void {
  db.prepare('INSERT INTO events (at, level, phase, message, data) VALUES (?, ?, ?, ?, ?)').run(
    now(),
    level,
    phase,
    message,
    data === undefined ? null : JSON.stringify(data),
  );
}

/** The newest events, oldest first; with levels, only events of those levels. */
export function latestEvents(
  db: Database.Database,
  limit: number,
  levels?: readonly EventRecord['level'][],
): EventRecord[] {
  const where = levels ? `WHERE level IN (${levels.map(() => '?').join(', ')})` : '';
  return (
    db
      .prepare(`SELECT id, at, level, phase, message, data FROM events ${where} ORDER BY id DESC LIMIT ?`)
      .all(...(levels ?? []), limit) as EventRecord[]
  ).reverse();
}
