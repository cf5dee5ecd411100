// The work directory of `pgferry dump-restore`: the schema dump (pg_dump -Fd --schema-only), one
// data dump per table (pg_dump -Fd --data-only --table), and `pgferry-dump.json`, which records
// what is done, so that running the command again with the same directory does only the rest: a
// finished dump is not redone, a table dumped completely is kept, a table restored completely is
// not restored again. The record names the two servers (by identity, not by URL): a directory
// made for another pair is refused.
import fs from 'node:fs';
import path from 'node:path';
import { PgferryError } from '../../lib/errors.js';

export const RECORD_FILE = 'pgferry-dump.json';

export interface ServerMark {
  systemIdentifier: string | null;
  databaseOid: number;
  databaseName: string;
}

export interface TableEntry {
  /** schema.table, unquoted. */
  name: string;
  schema: string;
  table: string;
  /** Its data dump's directory, relative to the workdir. */
  dir: string;
  /** The size of the table on the source when the dump was planned (progress and ETA). */
  bytes: number;
  dumped: boolean;
  restored: boolean;
}

export interface DumpRecord {
  version: 1;
  source: ServerMark;
  target: ServerMark | null;
  createdAt: string;
  /** The snapshots the dumps were taken in: more than one means a dump was resumed. */
  snapshots: string[];
  schemaDumped: boolean;
  tables: TableEntry[];
  preDataRestored: boolean;
  dataRestored: boolean;
  postDataRestored: boolean;
  /** Extensions created at the target's version instead of the source's (--adapt-extensions). */
  adaptedExtensions: { name: string; from: string; to: string }[];
  finishedAt: string | null;
}

export class Workdir {
  private constructor(
    readonly dir: string,
    public record: DumpRecord,
  ) {}

  get file(): string {
    return path.join(this.dir, RECORD_FILE);
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** The directory's record, if it has one (of this source: another's is refused); writes nothing. */
  static existing(dir: string, source: ServerMark): Workdir | null {
    const file = path.join(dir, RECORD_FILE);
    if (fs.existsSync(file)) {
      let record: DumpRecord;
      try {
        record = JSON.parse(fs.readFileSync(file, 'utf8')) as DumpRecord;
      } catch (err) {
        throw new PgferryError('PGFERRY_STATE_INVALID', `${file} cannot be read: ${(err as Error).message}`, {
          side: 'state',
          hint: 'Point --workdir at an empty directory to start afresh.',
        });
      }
      if (!sameServer(record.source, source)) {
        throw new PgferryError(
          'PGFERRY_STATE_MISMATCH',
          `${dir} holds a dump of database ${record.source.databaseName} of another server than --source`,
          { side: 'state', hint: 'Use another --workdir for this source, or remove this one.' },
        );
      }
      return new Workdir(dir, record);
    }
    if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
      throw new PgferryError(
        'PGFERRY_CONFIG_INVALID',
        `--workdir ${dir} is not empty and holds no pgferry dump`,
        {
          side: 'config',
          hint: 'Point --workdir at an empty or new directory.',
        },
      );
    }
    return null;
  }

  /** Opens the directory's record, or starts one for this source (after preflight: a refused run leaves nothing). */
  static open(dir: string, source: ServerMark): { workdir: Workdir; resumed: boolean } {
    const found = Workdir.existing(dir, source);
    if (found) return { workdir: found, resumed: true };
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const workdir = new Workdir(dir, {
      version: 1,
      source,
      target: null,
      createdAt: new Date().toISOString(),
      snapshots: [],
      schemaDumped: false,
      tables: [],
      preDataRestored: false,
      dataRestored: false,
      postDataRestored: false,
      adaptedExtensions: [],
      finishedAt: null,
    });
    workdir.save();
    return { workdir, resumed: false };
  }

  /** Writes the record (a new file renamed over the old one: never half written). */
  save(): void {
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(this.record, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }

  update(change: (r: DumpRecord) => void): void {
    change(this.record);
    this.save();
  }

  /**
   * One process per directory: a second `dump-restore` on it is refused while the first lives
   * (the lock file names its pid); a lock left by a process that died is taken over.
   */
  lock(): () => void {
    const file = this.path('pgferry-dump.lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
        return () => fs.rmSync(file, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number(fs.readFileSync(file, 'utf8'));
        if (pid > 0 && alive(pid)) {
          throw new PgferryError('PGFERRY_STATE_LOCKED', `${this.dir} is in use by pgferry process ${pid}`, {
            side: 'state',
            hint: 'Wait for it to finish or stop it; two runs must never share a work directory.',
          });
        }
        fs.rmSync(file, { force: true });
      }
    }
    throw new PgferryError('PGFERRY_STATE_LOCKED', `${this.dir} is being taken by another pgferry process`, {
      side: 'state',
    });
  }
}

export const sameServer = (a: ServerMark, b: ServerMark): boolean =>
  a.databaseOid === b.databaseOid &&
  a.databaseName === b.databaseName &&
  (a.systemIdentifier === null || b.systemIdentifier === null || a.systemIdentifier === b.systemIdentifier);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
