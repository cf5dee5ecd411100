// The run's setup record (meta `setup`): bound once when a new run has passed its checks, then
// the yardstick a resume is held to. Servers are compared by what they are, not how their URLs
// are spelled.
import type Database from 'better-sqlite3';
import { PgferryError } from '../lib/errors.js';
import type { RunSetup, ServerIdentity } from './store.js';

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

export function readSetup(db: Database.Database, file: string): RunSetup | null {
  const row = db.prepare("SELECT value FROM meta WHERE key = 'setup'").get() as { value: string } | undefined;
  if (!row) return null;
  try {
    return JSON.parse(row.value) as RunSetup;
  } catch (err) {
    throw new PgferryError(
      'PGFERRY_STATE_INVALID',
      `${file}: the run's setup record is damaged (${(err as Error).message}); the run cannot be resumed from it`,
      {
        side: 'state',
        hint: 'Start afresh with another --state file and an empty target (or restore this file from a backup).',
        cause: err,
      },
    );
  }
}

export function bindSetup(db: Database.Database, file: string, setup: RunSetup): void {
  const done = db
    .prepare("INSERT INTO meta (key, value) VALUES ('setup', ?) ON CONFLICT (key) DO NOTHING")
    .run(JSON.stringify(setup));
  if (done.changes !== 1) {
    throw new PgferryError('PGFERRY_STATE_MISMATCH', `${file} already holds a run`, { side: 'state' });
  }
}

/** The recorded setup, or the refusal naming every way the given one differs from it. */
export function checkResume(db: Database.Database, file: string, setup: Omit<RunSetup, 'runId'>): RunSetup {
  const existing = readSetup(db, file);
  if (!existing) throw new PgferryError('PGFERRY_STATE_INVALID', `${file} holds no run`, { side: 'state' });
  const diffs: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!sameServerAs(existing.source, setup.source)) diffs.push(`source was ${describe(existing.source)}`);
  if (!sameServerAs(existing.target, setup.target)) diffs.push(`target was ${describe(existing.target)}`);
  if (!same(existing.include, setup.include)) diffs.push(`--include was [${existing.include.join(', ')}]`);
  if (!same(existing.exclude, setup.exclude)) diffs.push(`--exclude was [${existing.exclude.join(', ')}]`);
  if (existing.mode !== setup.mode) diffs.push(`mode was ${existing.mode}`);
  if (setup.mode === 'replicate' && (existing.capture ?? 'triggers') !== (setup.capture ?? 'triggers')) {
    diffs.push(`--capture was ${existing.capture ?? 'triggers'}`);
  }
  if (diffs.length > 0) {
    throw new PgferryError('PGFERRY_STATE_MISMATCH', `${file} belongs to another run: ${diffs.join('; ')}`, {
      side: 'state',
    });
  }
  return existing;
}

const describe = (s: ServerIdentity) => `${s.user}@${s.host}:${s.port}/${s.database}`;
