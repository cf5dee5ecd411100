// The checkpoint store: one SQLite file (WAL mode) holding the run's setup, its phases, tables,
// chunks, deferred schema objects and events. Everything pgferry needs to resume after a crash
// is here; nothing secret is (connection identities are stored without passwords).
import fs from 'node:fs';
import os from 'node:os';
import Database from 'better-sqlite3';
import { delayPointSync } from '../lib/crash-point.js';
import { PgferryError } from '../lib/errors.js';
import { SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';

export const PHASES = [
  'preflight',
  'schema',
  'copy',
  'indexes',
  'replicating',
  'paused',
  'cutover',
  'done',
  'failed',
] as const;
export type Phase = (typeof PHASES)[number];

/** A server as the run knows it: its URL's spelling (for messages) and what it is (for checks). */
export interface ServerIdentity {
  host: string;
  port: number;
  database: string;
  user: string;
  /** pg_control_system()'s system identifier, or null where the service hides it. */
  systemIdentifier: string | null;
  databaseOid: number;
  databaseName: string;
}

/**
 * Whether a server found now is the one a run recorded. With the system identifier on both: it and
 * the database oid. Without (a managed service hides it): the database oid and name, and the host
 * and port as spelled, since nothing else stays the same across a restart.
 */
export function sameServerAs(recorded: ServerIdentity, live: ServerIdentity): boolean {
  if (recorded.databaseOid !== live.databaseOid) return false;
  if (recorded.systemIdentifier && live.systemIdentifier) {
    return recorded.systemIdentifier === live.systemIdentifier;
  }
  return (
    recorded.databaseName === live.databaseName && recorded.host === live.host && recorded.port === live.port
  );
}

export interface RunSetup {
  /** Names this run's capture objects on the source and its mark on the target. */
  runId: string;
  source: ServerIdentity;
  target: ServerIdentity;
  include: string[];
  exclude: string[];
  mode: 'copy-only' | 'replicate';
}

export const CHUNK_STATES = ['pending', 'copying', 'done'] as const;
export type ChunkState = (typeof CHUNK_STATES)[number];

export interface TableRecord {
  id: number;
  schema: string;
  name: string;
  rowsEstimate: number;
  bytesEstimate: number;
  /** JSON of KeyColumn[] or null for a table copied whole. */
  keyColumns: string | null;
  columns: string;
  copyFormat: 'binary' | 'text';
  rowsCopied: number;
  bytesCopied: number;
  chunksTotal: number;
  chunksDone: number;
}

export interface ChunkRecord {
  id: number;
  tableId: number;
  seq: number;
  /** JSON array of the key's text values, or null for an open end. */
  lo: string | null;
  hi: string | null;
  status: ChunkState;
  rows: number;
  bytes: number;
  attempts: number;
}

export const OBJECT_STAGES = ['indexes', 'unique', 'post-indexes', 'cutover'] as const;
export type ObjectStage = (typeof OBJECT_STAGES)[number];

export interface SchemaObjectRecord {
  id: number;
  stage: ObjectStage;
  kind: string;
  name: string;
  sql: string;
  status: 'pending' | 'done';
}

export interface CaptureRecord {
  oid: number;
  schema: string;
  name: string;
  logTable: string;
  keyColumns: string;
  columns: string;
  copyFormat: 'binary' | 'text';
  keyFormat: 'binary' | 'text';
  partitioned: number;
}

export interface EventRecord {
  id: number;
  at: string;
  level: string;
  phase: string | null;
  message: string;
  data: string | null;
}

const now = () => new Date().toISOString();

function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counts from after the command name, which may itself hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

const HEARTBEAT_MS = 5_000;
const STALE_MS = 30_000;

export class CheckpointStore {
  readonly file: string;
  private readonly db: Database.Database;
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
  }

  /** Opens (and with create, creates) a store. readonly opens never write and need no lock. */
  static open(file: string, opts: { create: boolean; readonly?: boolean }): CheckpointStore {
    if (!fs.existsSync(file)) {
      if (!opts.create) {
        throw new PgferryError('PGFERRY_STATE_NOT_FOUND', `no state file at ${file}`, { side: 'state' });
      }
    }
    let db: Database.Database;
    if (opts.create && !opts.readonly && !fs.existsSync(file)) {
      // Owner-only from the first byte: SQLite gives its -wal and -shm files the database file's
      // mode, and the state holds the servers' identities and the run's history.
      try {
        fs.closeSync(fs.openSync(file, 'wx', 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new PgferryError(
            'PGFERRY_STATE_INVALID',
            `cannot create state file ${file}: ${(err as Error).message}`,
            {
              side: 'state',
              cause: err,
            },
          );
        }
      }
    }
    try {
      db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: !opts.create });
      // First: another process opening the same file at this moment is waited for, not an error.
      db.pragma('busy_timeout = 5000');
      if (!opts.readonly) {
        db.pragma('journal_mode = WAL');
        // FULL: a chunk marked done must survive a power cut as surely as the target's commit.
        db.pragma('synchronous = FULL');
        db.pragma('foreign_keys = ON');
      }
    } catch (err) {
      // An install that did not run better-sqlite3's install script has no native module.
      if (/Could not locate the bindings file/.test((err as Error).message)) {
        throw new PgferryError(
          'PGFERRY_STATE_INVALID',
          `cannot open state file ${file}: better-sqlite3's native module was not built when pgferry was installed`,
          {
            side: 'state',
            hint: 'Reinstall allowing its install script: npm install -g --allow-scripts=better-sqlite3 <pgferry package>.',
            cause: err,
          },
        );
      }
      throw new PgferryError(
        'PGFERRY_STATE_INVALID',
        `cannot open state file ${file}: ${(err as Error).message}`,
        {
          side: 'state',
          cause: err,
        },
      );
    }
    const store = new CheckpointStore(file, db);
    if (!opts.readonly) store.migrateSchema();
    else store.checkSchema();
    return store;
  }

  private migrateSchema(): void {
    // IMMEDIATE: the write lock is taken before the file is looked at, so of several processes
    // opening a new file at once, one creates the store and the others find it made (then stop
    // at the run lock) instead of creating its tables a second time.
    const created = this.db
      .transaction(() => {
        const hasMeta = this.db
          .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
          .get();
        if (hasMeta) return false;
        const tables = this.db
          .prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'")
          .get() as {
          n: number;
        };
        if (tables.n > 0) {
          throw new PgferryError(
            'PGFERRY_STATE_INVALID',
            `${this.file} is an SQLite file, but not a pgferry state`,
            {
              side: 'state',
            },
          );
        }
        delayPointSync('state:create');
        this.db.exec(SCHEMA_SQL);
        this.db
          .prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)')
          .run('schema_version', String(SCHEMA_VERSION), 'created_at', now());
        return true;
      })
      .immediate();
    if (!created) this.checkSchema();
  }

  private checkSchema(): void {
    let version: string | undefined;
    try {
      version = (
        this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
          | { value: string }
          | undefined
      )?.value;
    } catch {
      version = undefined;
    }
    if (version !== String(SCHEMA_VERSION)) {
      throw new PgferryError(
        'PGFERRY_STATE_INVALID',
        `${this.file} is not a pgferry state of schema version ${SCHEMA_VERSION} (found ${version ?? 'none'})`,
        { side: 'state' },
      );
    }
  }

  // ---- lock: one pgferry process per state file ----

  acquireLock(): void {
    const host = os.hostname();
    const pid = process.pid;
    const start = processStart(pid);
    const take = this.db.transaction(() => {
      const held = this.db
        .prepare('SELECT pid, host, proc_start, heartbeat_at FROM lock WHERE id = 1')
        .get() as { pid: number; host: string; proc_start: string | null; heartbeat_at: string } | undefined;
      if (held && !(held.pid === pid && held.host === host)) {
        const alive =
          held.host === host
            ? processStart(held.pid) !== null && processStart(held.pid) === held.proc_start
            : Date.now() - Date.parse(held.heartbeat_at) < STALE_MS;
        if (alive) {
          throw new PgferryError(
            'PGFERRY_STATE_LOCKED',
            `${this.file} is in use by pgferry process ${held.pid} on ${held.host}`,
            { side: 'state' },
          );
        }
      }
      this.db
        .prepare(
          `INSERT INTO lock (id, pid, host, proc_start, acquired_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, proc_start = excluded.proc_start,
             acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at`,
        )
        .run(pid, host, start, now(), now());
    });
    take.immediate();
    this.heartbeat = setInterval(() => {
      try {
        this.db.prepare('UPDATE lock SET heartbeat_at = ? WHERE id = 1 AND pid = ?').run(now(), pid);
      } catch {
        // A busy database skips one beat; the next one catches up.
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  close(): void {
    if (this.heartbeat) {
      clearInterval(this.heartbeat);
      try {
        this.db.prepare('DELETE FROM lock WHERE id = 1 AND pid = ?').run(process.pid);
      } catch {
        // read-only or already closed
      }
    }
    if (this.db.open) this.db.close();
  }

  // ---- setup ----

  setup(): RunSetup | null {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'setup'").get() as
      | { value: string }
      | undefined;
    if (!row) return null;
    try {
      return JSON.parse(row.value) as RunSetup;
    } catch (err) {
      throw new PgferryError(
        'PGFERRY_STATE_INVALID',
        `${this.file}: the run's setup record is damaged (${(err as Error).message}); the run cannot be resumed from it`,
        {
          side: 'state',
          hint: 'Start afresh with another --state file and an empty target (or restore this file from a backup).',
          cause: err,
        },
      );
    }
  }

  /** This run's id, or null before its setup is bound. */
  runId(): string | null {
    return this.setup()?.runId ?? null;
  }

  /**
   * Records the setup of a new run. Called only once every check of a new run has passed: a
   * refused run leaves a state file with no setup, and running it again is a new run, not a resume.
   */
  bindSetup(setup: RunSetup): void {
    const done = this.db
      .prepare("INSERT INTO meta (key, value) VALUES ('setup', ?) ON CONFLICT (key) DO NOTHING")
      .run(JSON.stringify(setup));
    if (done.changes !== 1) {
      throw new PgferryError('PGFERRY_STATE_MISMATCH', `${this.file} already holds a run`, { side: 'state' });
    }
  }

  /**
   * Refuses a resume whose setup differs from the recorded one. Servers are compared by what they
   * are (system identifier, database oid), not by how their URLs are spelled.
   */
  checkResume(setup: Omit<RunSetup, 'runId'>): RunSetup {
    const existing = this.setup();
    if (!existing)
      throw new PgferryError('PGFERRY_STATE_INVALID', `${this.file} holds no run`, { side: 'state' });
    const diffs: string[] = [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (!sameServerAs(existing.source, setup.source)) diffs.push(`source was ${describe(existing.source)}`);
    if (!sameServerAs(existing.target, setup.target)) diffs.push(`target was ${describe(existing.target)}`);
    if (!same(existing.include, setup.include)) diffs.push(`--include was [${existing.include.join(', ')}]`);
    if (!same(existing.exclude, setup.exclude)) diffs.push(`--exclude was [${existing.exclude.join(', ')}]`);
    if (existing.mode !== setup.mode) diffs.push(`mode was ${existing.mode}`);
    if (diffs.length > 0) {
      throw new PgferryError(
        'PGFERRY_STATE_MISMATCH',
        `${this.file} belongs to another run: ${diffs.join('; ')}`,
        { side: 'state' },
      );
    }
    return existing;
  }

  // ---- phases ----

  phase(): Phase | null {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'phase'").get() as
      | { value: Phase }
      | undefined;
    return row?.value ?? null;
  }

  setPhase(phase: Phase): void {
    this.db
      .prepare(
        "INSERT INTO meta (key, value) VALUES ('phase', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      )
      .run(phase);
    this.db
      .prepare(`INSERT INTO phases (name, started_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`)
      .run(phase, now());
  }

  phaseDone(phase: Phase): boolean {
    const row = this.db.prepare('SELECT finished_at FROM phases WHERE name = ?').get(phase) as
      | { finished_at: string | null }
      | undefined;
    return Boolean(row?.finished_at);
  }

  finishPhase(phase: Phase): void {
    this.db.prepare('UPDATE phases SET finished_at = ? WHERE name = ?').run(now(), phase);
  }

  phases(): { name: string; startedAt: string; finishedAt: string | null }[] {
    return this.db
      .prepare(
        'SELECT name, started_at AS startedAt, finished_at AS finishedAt FROM phases ORDER BY started_at',
      )
      .all() as { name: string; startedAt: string; finishedAt: string | null }[];
  }

  getMeta(key: string): string | null {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
      | { value: string }
      | undefined;
    return row?.value ?? null;
  }

  setMeta(key: string, value: string): void {
    this.db
      .prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      )
      .run(key, value);
  }

  deleteMeta(key: string): void {
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
  }

  /** Why replay is paused (meta `paused`, kept across restarts), or null when it is not. */
  pauseReason(): string | null {
    return this.getMeta('paused');
  }

  /** Pauses replay with a reason, or (null) resumes it. */
  setPaused(reason: string | null): void {
    if (reason === null) this.deleteMeta('paused');
    else this.setMeta('paused', reason);
  }

  /** The phase as an operator sees it: `paused` while replay is held, otherwise the stored one. */
  reportedPhase(): Phase | null {
    const phase = this.phase();
    return phase === 'replicating' && this.pauseReason() !== null ? 'paused' : phase;
  }

  // ---- tables and chunks ----

  /** Records the copy plan of every table at once: a crash during planning leaves no half plan. */
  savePlan(
    plan: {
      schema: string;
      name: string;
      rowsEstimate: number;
      bytesEstimate: number;
      keyColumns: string | null;
      columns: string;
      copyFormat: 'binary' | 'text';
      chunks: { lo: string[] | null; hi: string[] | null }[];
    }[],
  ): void {
    const insTable = this.db.prepare(
      `INSERT INTO tables (schema_name, table_name, rows_estimate, bytes_estimate, key_columns, columns, copy_format)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    const insChunk = this.db.prepare('INSERT INTO chunks (table_id, seq, lo, hi) VALUES (?, ?, ?, ?)');
    this.db.transaction(() => {
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

  hasPlan(): boolean {
    return this.db.prepare('SELECT 1 FROM tables LIMIT 1').get() !== undefined;
  }

  tables(): TableRecord[] {
    return this.db
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

  chunks(filter: { status?: ChunkState[] } = {}): ChunkRecord[] {
    const statuses = filter.status ?? [...CHUNK_STATES];
    return this.db
      .prepare(
        `SELECT id, table_id AS tableId, seq, lo, hi, status, rows, bytes, attempts FROM chunks
          WHERE status IN (${statuses.map(() => '?').join(', ')}) ORDER BY table_id, seq`,
      )
      .all(...statuses) as ChunkRecord[];
  }

  startChunk(id: number): void {
    this.db
      .prepare("UPDATE chunks SET status = 'copying', attempts = attempts + 1, started_at = ? WHERE id = ?")
      .run(now(), id);
  }

  finishChunk(id: number, rows: number, bytes: number): void {
    this.db
      .prepare("UPDATE chunks SET status = 'done', rows = ?, bytes = ?, finished_at = ? WHERE id = ?")
      .run(rows, bytes, now(), id);
  }

  // ---- deferred schema objects (indexes after the copy, constraints and triggers at cutover) ----

  saveSchemaObjects(objects: { stage: ObjectStage; kind: string; name: string; sql: string }[]): void {
    const ins = this.db.prepare('INSERT INTO schema_objects (stage, kind, name, sql) VALUES (?, ?, ?, ?)');
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM schema_objects').run();
      for (const o of objects) ins.run(o.stage, o.kind, o.name, o.sql);
    })();
  }

  schemaObjects(stage?: ObjectStage): SchemaObjectRecord[] {
    const sql = `SELECT id, stage, kind, name, sql, status FROM schema_objects ${stage ? 'WHERE stage = ?' : ''} ORDER BY id`;
    const stmt = this.db.prepare(sql);
    return (stage ? stmt.all(stage) : stmt.all()) as SchemaObjectRecord[];
  }

  /** Marks every object of a stage to be created again (they were removed from the target). */
  resetSchemaObjects(stage: ObjectStage): void {
    this.db
      .prepare("UPDATE schema_objects SET status = 'pending', finished_at = NULL WHERE stage = ?")
      .run(stage);
  }

  finishSchemaObject(id: number): void {
    this.db.prepare("UPDATE schema_objects SET status = 'done', finished_at = ? WHERE id = ?").run(now(), id);
  }

  // ---- captured tables ----

  saveCapture(c: CaptureRecord): void {
    this.db
      .prepare(
        `INSERT INTO captures (oid, schema_name, table_name, log_table, key_columns, columns, copy_format, key_format, partitioned)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (oid) DO NOTHING`,
      )
      .run(
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

  captures(): CaptureRecord[] {
    return this.db
      .prepare(
        `SELECT oid, schema_name AS schema, table_name AS name, log_table AS logTable, key_columns AS keyColumns,
                columns, copy_format AS copyFormat, key_format AS keyFormat, partitioned
           FROM captures ORDER BY schema_name, table_name`,
      )
      .all() as CaptureRecord[];
  }

  // ---- events ----

  event(level: 'info' | 'warn' | 'error', phase: string | null, message: string, data?: unknown): void {
    this.db
      .prepare('INSERT INTO events (at, level, phase, message, data) VALUES (?, ?, ?, ?, ?)')
      .run(now(), level, phase, message, data === undefined ? null : JSON.stringify(data));
  }

  /** The newest events, oldest first; with levels, only events of those levels. */
  events(limit = 20, levels?: readonly EventRecord['level'][]): EventRecord[] {
    const where = levels ? `WHERE level IN (${levels.map(() => '?').join(', ')})` : '';
    return (
      this.db
        .prepare(`SELECT id, at, level, phase, message, data FROM events ${where} ORDER BY id DESC LIMIT ?`)
        .all(...(levels ?? []), limit) as EventRecord[]
    ).reverse();
  }
}

const describe = (s: ServerIdentity) => `${s.user}@${s.host}:${s.port}/${s.database}`;
