// The commands of the reverse direction: `pgferry reverse` (reverse replication on a run already
// cut over) and `pgferry rollback` (the cutover in reverse).
import type { Command } from 'commander';
import { freezeOpt, sourceOpt, stateOpt, targetOpt } from './cli-options.js';
import { reverseCommand } from './commands/reverse.js';
import { rollbackCommand } from './commands/rollback.js';

export function addReverseCommands(program: Command): void {
  program
    .command('reverse')
    .description(
      'reverse replication on a run already cut over: the new side’s changes replayed into the old source, so that `pgferry rollback` loses nothing',
    )
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(stateOpt())
    .option('--jobs <n>', 'parallel replay batches (or PGFERRY_JOBS; default 4)')
    .option('--http <host:port>', 'serve status, metrics and POST /rollback (or PGFERRY_HTTP)')
    .option(
      '--retry-for <duration>',
      'how long a lost or refused connection is retried before the daemon fails (or PGFERRY_RETRY_FOR; default 10m)',
    )
    .addHelpText(
      'after',
      '\nRuns until SIGTERM, like `migrate`. --source and --target are the run’s own (the old and the new side).\n' +
        'A run cut over with `migrate --reverse-after-cutover` had its capture installed on the new side before it\n' +
        'took writes; otherwise this command installs it, and refuses (removing it again) unless the new side still\n' +
        'equals the old one: writes made before would be lost to a rollback. The old source stays frozen for the\n' +
        'application; its foreign keys and triggers on the replicated tables are suspended until a rollback.',
    )
    .action(reverseCommand);

  program
    .command('rollback')
    .description(
      'the cutover in reverse: freeze the new side, drain reverse replication, sequences, verify, give the old source its writes back',
    )
    .addOption(sourceOpt())
    .addOption(targetOpt())
    .addOption(stateOpt())
    .addOption(freezeOpt())
    .option('--max-lag <duration>', 'refuse unless the reverse lag is below this (default 5s)')
    .option('--force', 'roll back whatever the reverse lag')
    .option(
      '--settle <duration>',
      'with --freeze external: how long the new side must stay quiet (default 2s)',
    )
    .option('--verify <how>', 'counts (default) or checksums')
    .option('--jobs <n>', 'parallel sessions for the drain and the verification (default 4)')
    .option('--json', 'print the result (downtime, drained changes, ...) as JSON')
    .addHelpText(
      'after',
      '\nNeeds reverse replication (`migrate --reverse-after-cutover`, or `pgferry reverse`); run it while the\n' +
        'daemon is stopped, or POST /rollback to it. --freeze applies to the new side (revoke is refused: forward\n' +
        'replication needs pgferry’s grants there). Afterwards the old source takes writes, the new side stays\n' +
        'frozen, and `pgferry migrate` with the same --state replicates forward again until the next cutover.',
    )
    .action(rollbackCommand);
}
