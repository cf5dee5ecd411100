// `pgferry tables add|remove PAT --state FILE`: a request in the run's state file, which the
// running `pgferry migrate` takes up beside its replay (engine/tables/). With a live migrate the
// command follows the request to its end (progress on stderr) and exits as it ended; with none,
// the request waits for the run to go on, and the command says so.
import { CheckpointStore, type TableAction, type TableRequestRecord } from '../../checkpoints/store.js';
import { checkTablesRequest } from '../../engine/tables/record.js';
import { ERRORS, type ErrorCode } from '../../lib/error-codes.js';
import { PgferryError } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { statePath } from '../config.js';

export const TABLES_ACTIONS = ['add', 'remove'] as const satisfies readonly TableAction[];

interface Flags {
  state?: string;
  json?: boolean;
  wait?: boolean;
}

const POLL_MS = 1_000;

export const TABLES_HELP =
  '\nThe request goes into the state file; the running `pgferry migrate --state FILE` takes it up beside\n' +
  'its replay, one request at a time. add: checks the table (primary key, privileges; on the target it\n' +
  'must be missing, or empty and of the same shape), installs capture, creates it on the target, copies it\n' +
  'in key ranges, builds its indexes, then replays it with the others; a failure undoes it. remove: stops\n' +
  'replaying the table and removes its capture from the source; the target keeps it as last replayed.\n' +
  'A cutover waits until no request is open. Without a running migrate the request waits for the run.\n' +
  'Exit status: 0 done (or recorded, without a running migrate or with --no-wait), 1 refused or failed.\n' +
  'The same through the API: POST /tables {"action": "add", "pattern": "..."}.';

export async function tablesCommand(action: string, pattern: string, flags: Flags): Promise<void> {
  if (!(TABLES_ACTIONS as readonly string[]).includes(action)) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `tables "${action}" must be add or remove`, {
      side: 'config',
    });
  }
  await tablesRequest(action as TableAction, pattern, flags);
}

async function tablesRequest(action: TableAction, pattern: string, flags: Flags): Promise<void> {
  const file = statePath(flags.state);
  const store = CheckpointStore.open(file, { create: false });
  try {
    let req = checkTablesRequest(store, action, pattern);
    store.event('info', store.phase(), `tables ${action} ${req.pattern} requested (request ${req.id})`);
    const holder = store.liveHolder();
    if (!holder || flags.wait === false) {
      process.stderr.write(
        holder
          ? `pgferry: request ${req.id} recorded; \`pgferry status\` shows its progress\n`
          : `pgferry: request ${req.id} recorded: no pgferry migrate is running with ${file}; it is taken up when \`pgferry migrate --state ${file}\` goes on\n`,
      );
      print(req, flags);
      return;
    }
    process.stderr.write(
      `pgferry: request ${req.id} recorded; pgferry process ${holder.pid} works on it (Ctrl-C stops waiting, not the request)\n`,
    );
    let said = '';
    while (req.state === 'pending' || req.state === 'running') {
      await sleep(POLL_MS);
      req = store.tableRequest(req.id)!;
      const now = `${req.state}${req.step ? `: ${req.step}` : ''}`;
      if (now !== said && req.state !== 'done' && req.state !== 'failed') {
        process.stderr.write(`pgferry: tables ${action} ${req.pattern}: ${now}\n`);
        said = now;
      }
      if ((req.state === 'pending' || req.state === 'running') && !store.liveHolder()) {
        process.stderr.write(
          `pgferry: the migrate process stopped before request ${req.id} was done; it goes on when the run does\n`,
        );
        print(req, flags);
        process.exitCode = 1;
        return;
      }
    }
    if (req.state !== 'failed') {
      print(req, flags);
      return;
    }
    const code = (
      req.error?.code && req.error.code in ERRORS ? req.error.code : 'PGFERRY_TABLES_REFUSED'
    ) as ErrorCode;
    const err = new PgferryError(code, `tables ${action} ${req.pattern}: ${req.error?.message ?? 'failed'}`, {
      side: 'state',
      hint: req.error?.hint,
    });
    if (!flags.json) throw err;
    // One JSON document: the request and why it failed.
    process.stdout.write(`${JSON.stringify({ ok: false, request: req, error: err.toJSON() }, null, 2)}\n`);
    process.stderr.write(`pgferry: ${err.oneLine()}\n`);
    process.exitCode = ERRORS[code].exit;
  } finally {
    store.close();
  }
}

function print(req: TableRequestRecord, flags: Flags): void {
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: req.state !== 'failed', request: req }, null, 2)}\n`);
    return;
  }
  const what =
    req.state === 'done' ? (req.step ?? 'done') : req.state === 'failed' ? 'failed' : `${req.state}`;
  process.stdout.write(`request ${req.id}: tables ${req.action} ${req.pattern}: ${what}\n`);
}
