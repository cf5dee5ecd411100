// Tables joining or leaving a running migration (`pgferry tables add|remove`, POST /tables): the
// operator's request is a row here, written by whichever process asked; the running migrate
// takes the requests in order, records each one's step as it goes (so a restart resumes it), and
// ends it done or failed with the reason.
import type Database from 'better-sqlite3';
import { now } from './meta.js';

export const TABLE_ACTIONS = ['add', 'remove'] as const;
export type TableAction = (typeof TABLE_ACTIONS)[number];
export const REQUEST_STATES = ['pending', 'running', 'done', 'failed'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

export interface TableRequestRecord {
  id: number;
  action: TableAction;
  pattern: string;
  state: RequestState;
  /** The tables the request concerns (`schema.table`), once they were matched. */
  tables: string[];
  /** What it is doing or did last (for status and for a resumed request). */
  step: string | null;
  /** What the request keeps for a resume after a crash (the objects it added, the captures it removed). */
  detail: Record<string, unknown>;
  /** Why it failed: the error's code and message. */
  error: { code: string; message: string; hint?: string } | null;
  requestedAt: string;
  updatedAt: string;
}

interface Row {
  id: number;
  action: TableAction;
  pattern: string;
  state: RequestState;
  tables: string;
  step: string | null;
  detail: string;
  error: string | null;
  requested_at: string;
  updated_at: string;
}

const fromRow = (r: Row): TableRequestRecord => ({
  id: r.id,
  action: r.action,
  pattern: r.pattern,
  state: r.state,
  tables: JSON.parse(r.tables) as string[],
  step: r.step,
  detail: JSON.parse(r.detail) as Record<string, unknown>,
  error: r.error ? (JSON.parse(r.error) as TableRequestRecord['error']) : null,
  requestedAt: r.requested_at,
  updatedAt: r.updated_at,
});

export function addRequest(db: Database.Database, action: TableAction, pattern: string): TableRequestRecord {
  const at = now();
  const info = db
    .prepare('INSERT INTO table_requests (action, pattern, requested_at, updated_at) VALUES (?, ?, ?, ?)')
    .run(action, pattern, at, at);
  return request(db, Number(info.lastInsertRowid))!;
}

export function request(db: Database.Database, id: number): TableRequestRecord | null {
  const row = db.prepare('SELECT * FROM table_requests WHERE id = ?').get(id) as Row | undefined;
  return row ? fromRow(row) : null;
}

/** The requests in these states (all without), oldest first; the newest `limit` with a limit. */
export function requests(
  db: Database.Database,
  opts: { states?: readonly RequestState[]; limit?: number } = {},
): TableRequestRecord[] {
  const states = opts.states ?? REQUEST_STATES;
  const rows = db
    .prepare(
      `SELECT * FROM (SELECT * FROM table_requests WHERE state IN (${states.map(() => '?').join(', ')})
         ORDER BY id DESC LIMIT ?) ORDER BY id`,
    )
    .all(...states, opts.limit ?? -1) as Row[];
  return rows.map(fromRow);
}

export function updateRequest(
  db: Database.Database,
  id: number,
  change: Partial<Pick<TableRequestRecord, 'state' | 'tables' | 'step' | 'detail' | 'error'>>,
): void {
  const cur = request(db, id);
  if (!cur) return;
  const next = { ...cur, ...change };
  db.prepare(
    'UPDATE table_requests SET state = ?, tables = ?, step = ?, detail = ?, error = ?, updated_at = ? WHERE id = ?',
  ).run(
    next.state,
    JSON.stringify(next.tables),
    next.step,
    JSON.stringify(next.detail),
    next.error ? JSON.stringify(next.error) : null,
    now(),
    id,
  );
}
