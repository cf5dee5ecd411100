// `pgferry dump-restore --stream`: pg_dump -Fc piped straight into pg_restore, no work directory,
// for databases small enough to move in one go (nothing to resume: a failed stream needs an empty
// target again). pg_restore reads a pipe in one pass, so it cannot be told which entries to leave
// out: it runs without --exit-on-error, and of the errors it reports only the expected ones are
// let through (COMMENT ON EXTENSION, which needs the extension's owner; a schema or extension
// pgferry created beforehand); any other fails the run.
import type pg from 'pg';
import { PgferryError, redact } from '../../lib/errors.js';
import { quoteIdent } from '../../lib/sql.js';
import type { TableInfo } from '../shared/catalog.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { DUMP_FLAGS, exactPattern, lostConnection, type PgTool, pipeTools } from '../shared/pg-tools.js';
import type { Progress } from './progress.js';

export interface StreamOptions {
  pgDump: PgTool;
  pgRestore: PgTool;
  source: ConnInfo;
  target: ConnInfo;
  dst: pg.Client;
  excluded: TableInfo[];
  extensionSchemas: string[];
  /** Triggers whose creation may fail (pgferry's capture triggers: their functions are not dumped). */
  leaveOut: { schema: string; name: string; trigger: string }[];
  progress: Progress;
  log: (level: 'info' | 'warn', message: string) => void;
}

/** pg_restore's errors, each with the statement it ran ("Command was: ..."). */
export function restoreErrors(stderr: string): { error: string; command: string }[] {
  return stderr
    .split(/^pg_restore: error: /m)
    .slice(1)
    .map((block) => {
      const [error = '', ...rest] = block.split('\n');
      const command = /Command was: ([\s\S]*?)(?:\npg_restore: |$)/.exec(rest.join('\n'))?.[1]?.trim() ?? '';
      return { error: error.trim(), command };
    });
}

export async function streamDump(opts: StreamOptions): Promise<void> {
  for (const s of opts.extensionSchemas) await opts.dst.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(s)}`);
  opts.progress.start('restore', 1, 0);
  let said = 0;
  const res = await pipeTools(
    {
      tool: opts.pgDump,
      conn: opts.source,
      args: [
        '--format=custom',
        ...DUMP_FLAGS,
        ...opts.excluded.map((t) => `--exclude-table=${exactPattern(t.schema, t.name)}`),
      ],
    },
    { tool: opts.pgRestore, conn: opts.target, args: ['--no-owner', '--no-acl'] },
    (bytes) => {
      if (bytes - said >= 64 * 1024 * 1024) {
        said = bytes;
        opts.log('info', `streamed ${Math.round(bytes / 1024 / 1024)} MB from pg_dump into pg_restore`);
      }
    },
  );
  if (res.from.code !== 0) {
    const message = redact(res.from.stderr.trim().split('\n').slice(-3).join(' | '));
    const lost = lostConnection(opts.pgDump, { code: res.from.code, stderr: res.from.stderr });
    throw new PgferryError(
      lost ? 'PGFERRY_SOURCE_CONNECT' : 'PGFERRY_SCHEMA_DUMP_FAILED',
      `pg_dump failed during --stream: ${message}`,
      {
        side: 'source',
        hint: 'A stream is not resumable: empty the target database and run again, or use --workdir.',
      },
    );
  }
  const expected = (command: string) =>
    /^COMMENT ON EXTENSION /.test(command) ||
    opts.leaveOut.some((t) => command.startsWith(`CREATE TRIGGER ${t.trigger} `)) ||
    opts.extensionSchemas.some(
      (s) => command === `CREATE SCHEMA ${s};` || command === `CREATE SCHEMA ${quoteIdent(s)};`,
    );
  const errors = restoreErrors(res.to.stderr);
  const unexpected = errors.filter((e) => !expected(e.command));
  if (unexpected.length > 0 || (res.to.code !== 0 && errors.length === 0)) {
    const first = unexpected[0];
    const message = first
      ? `${first.error} (while running: ${first.command.slice(0, 200)})`
      : res.to.stderr.trim();
    throw new PgferryError(
      lostConnection(opts.pgRestore, { code: res.to.code, stderr: res.to.stderr })
        ? 'PGFERRY_TARGET_CONNECT'
        : 'PGFERRY_SCHEMA_APPLY_FAILED',
      `pg_restore failed during --stream${unexpected.length > 1 ? ` (${unexpected.length} errors)` : ''}: ${redact(message)}`,
      {
        side: 'target',
        hint: 'A stream is not resumable: fix the cause, empty the target database and run again, or use --workdir.',
      },
    );
  }
  for (const e of errors)
    opts.log('info', `left out: ${e.command.split('\n')[0]?.slice(0, 120)} (${e.error})`);
  opts.progress.done('the stream', 0);
}
