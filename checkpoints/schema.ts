// Layout of the checkpoint store. Bump SCHEMA_VERSION on any change: an older state file is then
// refused with a clear message instead of being misread.
export const SCHEMA_VERSION = 5;

const CHUNKS_COLUMNS = `
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  table_id    INTEGER NOT NULL REFERENCES tables (id),
  seq         INTEGER NOT NULL,
  lo          TEXT,
  hi          TEXT,
  status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'copying', 'done')),
  rows        INTEGER NOT NULL DEFAULT 0,
  bytes       INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  started_at  TEXT,
  finished_at TEXT,
  UNIQUE (table_id, seq)
`;

// Tables joining or leaving the running migration, as the operator asked (table-requests.ts).
const TABLE_REQUESTS = `CREATE TABLE table_requests (
  id           INTEGER PRIMARY KEY,
  action       TEXT NOT NULL CHECK (action IN ('add', 'remove')),
  pattern      TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
  tables       TEXT NOT NULL DEFAULT '[]',
  step         TEXT,
  detail       TEXT NOT NULL DEFAULT '{}',
  error        TEXT,
  requested_at TEXT NOT NULL,
  updated_at   TEXT NOT NULL
);
`;

/**
 * A state file of an earlier version brought to the next one, in place, when a writer opens it:
 * a migration that runs for days may see pgferry upgraded under it. Keyed by the version it upgrades.
 */
export const UPGRADES: Record<string, string> = {
  // 4 → 5: table requests; chunk ids never reused (AUTOINCREMENT needs the table made anew).
  '4': `
${TABLE_REQUESTS}
CREATE TABLE chunks_v5 (${CHUNKS_COLUMNS});
INSERT INTO chunks_v5 SELECT * FROM chunks;
DROP TABLE chunks;
ALTER TABLE chunks_v5 RENAME TO chunks;
UPDATE meta SET value = '5' WHERE key = 'schema_version';
`,
};

export const SCHEMA_SQL = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- One row while a pgferry process drives this state file.
CREATE TABLE lock (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  pid          INTEGER NOT NULL,
  host         TEXT NOT NULL,
  proc_start   TEXT,
  acquired_at  TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL
);

CREATE TABLE phases (
  name        TEXT PRIMARY KEY,
  started_at  TEXT NOT NULL,
  finished_at TEXT
);

CREATE TABLE tables (
  id             INTEGER PRIMARY KEY,
  schema_name    TEXT NOT NULL,
  table_name     TEXT NOT NULL,
  rows_estimate  INTEGER NOT NULL,
  bytes_estimate INTEGER NOT NULL,
  key_columns    TEXT,
  columns        TEXT NOT NULL,
  copy_format    TEXT NOT NULL CHECK (copy_format IN ('binary', 'text')),
  UNIQUE (schema_name, table_name)
);

-- AUTOINCREMENT: a chunk's id names its mark on the target (engine/copy/chunk-marks.ts), so the
-- id of a chunk removed with its table (a table leaving the run) is never given to another.
CREATE TABLE chunks (${CHUNKS_COLUMNS});

CREATE TABLE schema_objects (
  id          INTEGER PRIMARY KEY,
  stage       TEXT NOT NULL CHECK (stage IN ('indexes', 'unique', 'post-indexes', 'cutover')),
  kind        TEXT NOT NULL,
  name        TEXT NOT NULL,
  sql         TEXT NOT NULL,
  status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
  finished_at TEXT
);

-- Tables whose changes are captured on the source (ordinary tables and partitioned roots).
CREATE TABLE captures (
  oid          INTEGER PRIMARY KEY,
  schema_name  TEXT NOT NULL,
  table_name   TEXT NOT NULL,
  log_table    TEXT NOT NULL,
  key_columns  TEXT NOT NULL,
  columns      TEXT NOT NULL,
  copy_format  TEXT NOT NULL CHECK (copy_format IN ('binary', 'text')),
  key_format   TEXT NOT NULL CHECK (key_format IN ('binary', 'text')),
  partitioned  INTEGER NOT NULL
);

-- Tables joining or leaving the running migration, as the operator asked (table-requests.ts).
${TABLE_REQUESTS}
CREATE TABLE events (
  id      INTEGER PRIMARY KEY,
  at      TEXT NOT NULL,
  level   TEXT NOT NULL,
  phase   TEXT,
  message TEXT NOT NULL,
  data    TEXT
);
`;
