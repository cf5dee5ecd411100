// Opening a state file: creating it owner-only, the connection's pragmas, and creating or checking
// its layout (schema.ts) under the schema version it was written with.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { delayPointSync } from '../lib/crash-point.js';
import { PgferryError } from '../lib/errors.js';
import { now } from './meta.js';
import { SCHEMA_SQL, SCHEMA_VERSION, UPGRADES } from './schema.js';

/** Opens (and with create, creates) the file; readonly opens never write. */
export function openDatabase(file: string, opts: { create: boolean; readonly?: boolean }): Database.Database {
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
  return db;
}

/** Creates the layout in a new file, or checks the version of an existing one. */
export function migrateSchema(db: Database.Database, file: string): void {
  // IMMEDIATE: the write lock is taken before the file is looked at, so of several processes
  // opening a new file at once, one creates the store and the others find it made (then stop
  // at the run lock) instead of creating its tables a second time.
  const created = db
    .transaction(() => {
      const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get();
      if (hasMeta) return false;
      const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as {
        n: number;
      };
      if (tables.n > 0) {
        throw new PgferryError(
          'PGFERRY_STATE_INVALID',
          `${file} is an SQLite file, but not a pgferry state`,
          {
            side: 'state',
          },
        );
      }
      delayPointSync('state:create');
      db.exec(SCHEMA_SQL);
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run(
        'schema_version',
        String(SCHEMA_VERSION),
        'created_at',
        now(),
      );
      return true;
    })
    .immediate();
  if (created) return;
  upgradeSchema(db);
  checkSchema(db, file);
}

/** Brings an earlier version's file to this one, one version at a time, each in one transaction. */
function upgradeSchema(db: Database.Database): void {
  const version = () =>
    (db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined)
      ?.value;
  for (let v = version(); v !== undefined && UPGRADES[v]; v = version()) {
    const sql = UPGRADES[v]!;
    db.transaction(() => {
      if (version() === v) db.exec(sql);
    }).immediate();
  }
}

/** Refuses a file that is not a state of this schema version. */
export function checkSchema(db: Database.Database, file: string): void {
  let version: string | undefined;
  try {
    version = (
      db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined
    )?.value;
  } catch {
    version = undefined;
  }
  if (version !== String(SCHEMA_VERSION)) {
    throw new PgferryError(
      'PGFERRY_STATE_INVALID',
      `${file} is not a pgferry state of schema version ${SCHEMA_VERSION} (found ${version ?? 'none'})`,
      { side: 'state' },
    );
  }
}
