// The `pgferry` command line. Parsing and help by commander; every command's work is in
// src/commands/. A user-caused error ends as one line on stderr and its registry exit code.
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { isPgferryError, PgferryError, redact } from '../lib/errors.js';
import {
  captureOpt,
  excludeOpt,
  freezeOpt,
  includeOpt,
  sourceOpt,
  stateOpt,
  targetOpt,
} from './cli-options.js';
import { addReverseCommands } from './cli-reverse.js';
import { CLEANUP_HELP, cleanupCommand } from './commands/cleanup.js';
import { CTL_ACTIONS, type CtlAction, ctlCommand } from './commands/ctl.js';
import { cutoverCommand } from './commands/cutover.js';
import { demoCommand } from './commands/demo.js';
import { DUMP_RESTORE_HELP, dumpRestoreCommand } from './commands/dump-restore.js';
import { migrateCommand } from './commands/migrate.js';
import { preflightCommand } from './commands/preflight.js';
import { statusCommand } from './commands/status.js';
import { TABLES_HELP, tablesCommand } from './commands/tables.js';
import { verifyCommand } from './commands/verify.js';
import { WALG_HELP, walgCommand } from './commands/walg.js';
import { releaseStopSignals } from './signals.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command('pgferry')
    .description(
      'Move a live PostgreSQL database to another server (Heroku Postgres to Amazon RDS, and any other pair)\n' +
        'with a parallel, resumable copy and seconds of write downtime.',
    )
    .version(version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) })
    .exitOverride()
    .hook('preAction', (_program, command) => releaseStopSignals(command.name()));

  program
    .command('preflight')
    .description('check that a migration can run: servers, versions, privileges, keys, extensions, sizes')
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(includeOpt())
    .addOption(excludeOpt())
    .option('--copy-only', 'check for a one-time --copy-only clone (no capture privileges needed)')
    .addOption(captureOpt('check what this change source needs of the source (default triggers)'))
    .option(
      '--two-way',
      'check for two-way sync: trigger capture, and key sequences that never give both sides one value',
    )
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      '\nExit status: 0 ready, 1 problems found (each with its fix), 2 usage or connection error.',
    )
    .action(preflightCommand);

  program
    .command('migrate')
    .description(
      'copy the source into the target (schema, data, indexes), then keep it in sync until cutover',
    )
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(stateOpt())
    .option(
      '--jobs <n>',
      'parallel copy workers, index builds and replay batches (or PGFERRY_JOBS; default 4)',
      undefined,
    )
    .addOption(includeOpt())
    .addOption(excludeOpt())
    .addOption(
      captureOpt(
        'change source for replay: triggers (no privileges beyond the tables), bucardo (the delta tables of a Bucardo already installed) or logical (a slot with pgoutput; needs wal_level=logical and REPLICATION) (or PGFERRY_CAPTURE; default triggers)',
      ),
    )
    .option(
      '--http <host:port>',
      'serve the status and control API and Prometheus metrics (or PGFERRY_HTTP; default host 127.0.0.1)',
    )
    .option(
      '--max-snapshot-age <duration>',
      'with capture: take a fresh snapshot when the current one is older (or PGFERRY_MAX_SNAPSHOT_AGE; default 10m)',
      undefined,
    )
    .option(
      '--capture-lock-wait <duration>',
      'how long a source table locked by someone else is waited for (the catalog reads at start, the capture install), each try under a short lock_timeout (default 2m)',
    )
    .option('--chunk-size <size>', 'target size of one primary-key range of the copy (default 128MB)')
    .option(
      '--retry-for <duration>',
      'how long a lost or refused connection to either server is retried, with backoff, before the run fails (or PGFERRY_RETRY_FOR; default 10m)',
    )
    .option(
      '--drift <mode>',
      'when a replicated table changes shape on one side: pause replay until the target matches (pause, the default), or first add to the target what cannot change a row, a new nullable or defaulted column (additive); new partitions are always created (or PGFERRY_DRIFT)',
    )
    .option('--copy-only', 'schema, copy and indexes under one snapshot, no capture; exit 0 when done')
    .option('--exit-when-synced', 'exit 0 once the copy is done and the captured backlog is drained')
    .option('--cutover-when-synced', 'once synced, run the cutover and exit 0 when it succeeded')
    .addOption(freezeOpt())
    .option(
      '--max-lag <duration>',
      'with --cutover-when-synced: refuse the cutover above this lag (default 5s)',
    )
    .option('--verify <how>', 'with --cutover-when-synced: counts (default) or checksums')
    .option('--settle <duration>', 'with --freeze external: how long the source must stay quiet (default 2s)')
    .option('--force', 'with --cutover-when-synced: cut over whatever the lag')
    .option(
      '--reverse-after-cutover',
      'the cutover installs capture on the target before it takes writes; the daemon (no mode flag) then replays its changes into the source, which `pgferry rollback` (or POST /rollback) can switch back to',
    )
    .option(
      '--two-way',
      'after the copy, keep both sides in service: each side’s changes replayed into the other (needs --capture triggers and key sequences that never meet: see docs/operations.md)',
    )
    .option(
      '--conflict <rule>',
      'with --two-way, which version of a key changed on both sides stays: source-wins, target-wins or latest (default; by each side’s clock)',
    )
    .option('--json', 'print the outcome as one JSON document on stdout (logs stay on stderr)')
    .addHelpText(
      'after',
      '\nA run is resumable: run the same command again with the same --state after a crash or a stop.\n' +
        'With --http, GET /status, /tables, /metrics, /healthz, /readyz answer anyone who reaches the port;\n' +
        'POST /pause, /resume, /cutover, /rollback, /verify need Authorization: Bearer $PGFERRY_API_TOKEN. A bind beyond\n' +
        'loopback is refused without PGFERRY_API_TOKEN.',
    )
    .action(migrateCommand);

  program
    .command('cutover')
    .description('freeze writes on the source, drain, set sequences, create constraints and triggers, verify')
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(stateOpt())
    .addOption(freezeOpt())
    .option('--max-lag <duration>', 'refuse unless the replication lag is below this (default 5s)')
    .option('--force', 'cut over whatever the lag')
    .option('--settle <duration>', 'with --freeze external: how long the source must stay quiet (default 2s)')
    .option('--verify <how>', 'counts (default) or checksums')
    .option('--jobs <n>', 'parallel sessions for the drain and the verification (default 4)')
    .option(
      '--retry-for <duration>',
      'once writes are frozen, how long a lost connection is waited out (writes stay frozen) before the writes are given back (or PGFERRY_RETRY_FOR; default 10m)',
    )
    .option(
      '--abort',
      'undo an interrupted cutover: give the source its writes back exactly as recorded (grants, read-only setting)',
    )
    .option('--json', 'print the result (downtime, drained changes, steps, ...) as JSON')
    .addHelpText(
      'after',
      '\nRun it while `pgferry migrate` is stopped (SIGTERM), or use `migrate --cutover-when-synced`.\n' +
        'After a crash in the middle of a cutover, running it again completes it; --abort undoes the freeze.\n' +
        'If a step fails before the target is ready, the source gets its writes back and the run can go on\n' +
        'replicating. The write downtime (freeze to target ready) is printed and kept in the state file.',
    )
    .action(cutoverCommand);

  program
    .command('ctl')
    .description('drive a running daemon through its HTTP API: status, pause, resume, cutover, verify')
    .argument('<action>', 'status, pause, resume, cutover or verify')
    .option(
      '--api <url>',
      'the daemon API (or PGFERRY_API_URL; default: the address PGFERRY_HTTP binds, else http://127.0.0.1:8080)',
    )
    .option(
      '--token <token>',
      'API token for control calls (or PGFERRY_API_TOKEN; default: none, control calls refused)',
    )
    .option('--reason <text>', 'pause: why, shown in /status (default: none)')
    .addOption(freezeOpt())
    .option('--max-lag <duration>', "cutover: refuse above this lag (default: the daemon's --max-lag, 5s)")
    .option('--force', 'cutover: whatever the lag')
    .option('--verify <how>', 'cutover: counts or checksums (default counts)')
    .option('--checksums', 'verify: hash every row')
    .addHelpText(
      'after',
      '\nPrints the API answer as JSON. cutover and verify start an operation on the daemon and wait for it\n' +
        '(progress on stderr), then print its result: verify exits 0 equal, 1 different, 2 error; cutover 0 done.',
    )
    .action(async (action: string, flags: Record<string, unknown>) => {
      if (!(CTL_ACTIONS as readonly string[]).includes(action)) {
        throw new PgferryError(
          'PGFERRY_CONFIG_INVALID',
          `ctl "${action}" must be one of ${CTL_ACTIONS.join(', ')}`,
          {
            side: 'config',
          },
        );
      }
      await ctlCommand(action as CtlAction, flags);
    });

  program
    .command('status')
    .description('show where a migration stands, from its state file')
    .addOption(stateOpt())
    .option('--json', 'print the status as JSON')
    .action(statusCommand);

  program
    .command('tables')
    .description('add a table to a running migration (copied, then replicated), or remove one')
    .argument('<action>', 'add or remove')
    .argument('<pattern>', 'schema.table (* as a wildcard; without a dot, the table name in any schema)')
    .addOption(stateOpt())
    .option('--no-wait', 'record the request and return (`pgferry status` shows its progress)')
    .option('--json', 'print the request (id, state, step, tables, error) as JSON')
    .addHelpText('after', TABLES_HELP)
    .action(tablesCommand);

  program
    .command('cleanup')
    .description(
      "remove the change capture pgferry created on the source: every run's (the capture schema and triggers), or one run's with --run",
    )
    .addOption(sourceOpt())
    .option(
      '--target <url>',
      "also remove reverse replication's capture from the run's target (run by run; the target's run mark stays)",
    )
    .option(
      '--run <id>',
      "remove only this run's capture (triggers, functions, log tables, registry rows; default: every run's)",
    )
    .option('--force', 'remove the capture of a live run too (the run then stops: PGFERRY_CAPTURE_REMOVED)')
    .option('--json', 'print what was removed (and what was kept) as JSON')
    .addHelpText('after', CLEANUP_HELP)
    .action(cleanupCommand);

  program
    .command('verify')
    .description('compare source and target: row counts, and with --checksums a hash of every row')
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(includeOpt())
    .addOption(excludeOpt())
    .option('--checksums', 'hash every row, per primary-key range, and name the keys that differ')
    .option('--jobs <n>', 'tables compared at once (default 2)')
    .option(
      '--retry-for <duration>',
      'a connection lost during the comparison: start over for this long before failing (or PGFERRY_RETRY_FOR; default 10m)',
    )
    .option('--json', 'print the verdicts as JSON')
    .addHelpText(
      'after',
      '\nExit status: 0 equal, 1 differences (listed per table), 2 error.\n' +
        'Compare while writes are stopped (or after a drain): rows changing during the run differ.',
    )
    .action(verifyCommand);
  program
    .command('dump-restore')
    .description('pg_dump and pg_restore with preflight checks, progress and resume, for small databases')
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(includeOpt())
    .addOption(excludeOpt())
    .option('--jobs <n>', 'tables dumped and restored at once (default 4, or PGFERRY_JOBS)')
    .option(
      '--workdir <dir>',
      'where the dump is kept; the same command again resumes (default ./pgferry-dump)',
    )
    .option('--stream', 'pipe pg_dump -Fc into pg_restore, no directory (small databases; not resumable)')
    .option(
      '--adapt-extensions',
      "create an extension the target offers only at another version at the target's",
    )
    .option('--json', 'print the outcome (tables, bytes, sequences, extensions, the verification) as JSON')
    .option(
      '--http <host:port>',
      'serve progress at /status and Prometheus metrics at /metrics (or PGFERRY_HTTP)',
    )
    .addHelpText('after', DUMP_RESTORE_HELP)
    .action(dumpRestoreCommand);
  program
    .command('walg')
    .description('a physical copy restored from a WAL-G archive, kept in sync as a standby, then promoted')
    .argument('<action>', 'restore, status or promote')
    .option('--pgdata <dir>', 'data directory of the copy')
    .option('--port <n>', 'restore: port the copy listens on (default 5433)')
    .option('--walg <path>', 'restore: the wal-g program (default: wal-g on PATH)')
    .option('--backup <name>', 'restore: backup to restore (default LATEST)')
    .option('--env-file <file>', "restore: KEY=VALUE lines of WAL-G's settings (storage prefix, credentials)")
    .option('--user <role>', 'the role status and promote connect as over the socket (default postgres)')
    .option('--source <url>', 'status: the primary, to tell how many bytes the copy is behind')
    .option('--http <host:port>', 'status: serve it at /status and /metrics (Prometheus) until stopped')
    .option('--force', 'promote: even if the copy has not reached the end of the archive')
    .option('--json', 'print the outcome as JSON')
    .addHelpText('after', WALG_HELP)
    .action(walgCommand);
  program
    .command('demo')
    .description('the main job end to end on embedded local PostgreSQL, no setup')
    .option('--rows <n>', 'rows in the sample shop', '200000')
    .option('--keep', 'leave both servers running at the end and print their URLs')
    .addHelpText(
      'after',
      '\nStarts two throwaway PostgreSQL servers in a temp dir, loads a sample shop, keeps writing to it\n' +
        'while pgferry copies and replicates, drains, compares every table by a hash of its rows, and\n' +
        'removes everything again. Needs a checkout with its dev dependencies (`npm ci`) and pg_dump/psql.\n' +
        'Exit status: 0 equal, 1 a table differs, 2 the demo cannot run here, 130 stopped by Ctrl-C.',
    )
    .action(demoCommand);
  addReverseCommands(program);
  return program;
}

export function reportError(err: unknown, opts: { json?: boolean } = {}): number {
  if (isPgferryError(err)) {
    if (opts.json) process.stdout.write(`${JSON.stringify({ ok: false, error: err.toJSON() }, null, 2)}\n`);
    process.stderr.write(`pgferry: ${err.oneLine()}\n`);
    return err.exitCode;
  }
  const message = redact(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.stderr.write(`pgferry: PGFERRY_INTERNAL_ERROR: ${message}\n`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end in a CommanderError with exit code 0; usage errors are 2.
      return err.exitCode === 0 ? 0 : 2;
    }
    return reportError(err, { json: argv.includes('--json') });
  } finally {
    releaseStopSignals();
  }
}
