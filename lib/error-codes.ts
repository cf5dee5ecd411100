// The registry of every error code pgferry can raise: its exit code, HTTP status, whether a retry
// can help, what it means and the hint an operator needs. docs/errors.md is generated from it (a
// test keeps them equal); errors.ts raises and classifies errors by these codes.

interface ErrorSpec {
  readonly exit: number;
  readonly http: number;
  readonly retryable: boolean;
  readonly summary: string;
  readonly hint: string;
}

export const ERRORS = {
  PGFERRY_CONFIG_INVALID: {
    exit: 2,
    http: 400,
    retryable: false,
    summary: 'A flag, environment variable or URL has an invalid value.',
    hint: 'Correct the value named in the message; `pgferry <command> --help` lists the options.',
  },
  PGFERRY_CONFIG_MISSING: {
    exit: 2,
    http: 400,
    retryable: false,
    summary: 'A required setting was not given.',
    hint: 'Pass the flag, or set the environment variable named in the message.',
  },
  PGFERRY_SOURCE_CONNECT: {
    exit: 2,
    http: 503,
    retryable: true,
    summary: 'The source server could not be reached or refused the login.',
    hint: 'Check host, port, database, user and password of --source (or PGFERRY_SOURCE_URL), and that this machine may connect (pg_hba, firewall, sslmode).',
  },
  PGFERRY_TARGET_CONNECT: {
    exit: 2,
    http: 503,
    retryable: true,
    summary: 'The target server could not be reached or refused the login.',
    hint: 'Check host, port, database, user and password of --target (or PGFERRY_TARGET_URL), and that this machine may connect (security group, pg_hba, sslmode).',
  },
  PGFERRY_SOURCE_QUERY: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'A statement failed on the source server.',
    hint: 'The message carries the server error and SQLSTATE; fix the cause on the source and run the same command again to resume.',
  },
  PGFERRY_TARGET_QUERY: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'A statement failed on the target server.',
    hint: 'The message carries the server error and SQLSTATE; fix the cause on the target and run the same command again to resume.',
  },
  PGFERRY_PREFLIGHT_PROBLEMS: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'Preflight found problems that block the migration.',
    hint: 'Each problem is listed with its fix; run `pgferry preflight` after fixing them.',
  },
  PGFERRY_TABLE_NO_PRIMARY_KEY: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'A table without a primary key cannot be replicated.',
    hint: 'Add a primary key to the table on the source, or leave it out with --exclude "schema.table" (a --copy-only run copies it whole).',
  },
  PGFERRY_TARGET_NOT_EMPTY: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'The target database already holds tables and no run is being resumed.',
    hint: 'Point --target at an empty database, or resume the earlier run with the same --state file.',
  },
  PGFERRY_SAME_DATABASE: {
    exit: 2,
    http: 409,
    retryable: false,
    summary: 'The source and the target are the same database, however their URLs are spelled.',
    hint: 'Point --target at the new, empty database: pgferry compares the servers themselves (system identifier, database oid), not the host names.',
  },
  PGFERRY_TARGET_MISMATCH: {
    exit: 2,
    http: 409,
    retryable: false,
    summary: 'The target is not the database this run has been filling.',
    hint: 'pgferry writes only into a target that carries its run id (table pgferry.run, created with the schema). Point --target at the database this run created, or start a new run with another --state file and an empty target.',
  },
  PGFERRY_CAPTURE_REMOVED: {
    exit: 1,
    http: 409,
    retryable: false,
    summary:
      "This run's change capture was removed from the source (e.g. by `pgferry cleanup`), or one of its triggers dropped or disabled.",
    hint: 'Changes made while it was gone are lost to this run, so it cannot go on: start afresh with a new --state file and an empty target (drop and re-create the target database).',
  },
  PGFERRY_SLOT_UNUSABLE: {
    exit: 1,
    http: 409,
    retryable: false,
    summary:
      "The source cannot decode this run's logical replication slot: PostgreSQL built it while a transaction changed the catalog (a TRUNCATE, CREATE TABLE or table rewrite).",
    hint: 'A new run checks its slot before the copy and creates it again; this one was found unusable after the copy began, or five times in a row. Start afresh (`pgferry cleanup --run <id>`, a new --state file, an empty target), at a time with no DDL or TRUNCATE on the source, or use --capture triggers.',
  },
  PGFERRY_CLEANUP_REFUSED: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'Cleanup was refused: a run whose capture it would remove is alive.',
    hint: 'Stop that run first (SIGTERM to its `pgferry migrate`), or pass --force if it is gone for good; `pgferry cleanup --run ID` removes one run only.',
  },
  PGFERRY_CUTOVER_INTERRUPTED: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'A cutover of this run was interrupted after writes on the source were frozen.',
    hint: 'Finish it with `pgferry cutover` (or `pgferry migrate --cutover-when-synced`) with the same --state, or give the source its writes back with `pgferry cutover --abort`.',
  },
  PGFERRY_EXTENSION_MISSING: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'An extension installed on the source is not available on the target.',
    hint: 'Install the extension on the target server (on RDS: it must be in the supported-extensions list), or drop it on the source if unused.',
  },
  PGFERRY_TOOL_MISSING: {
    exit: 2,
    http: 500,
    retryable: false,
    summary: 'A PostgreSQL client program (pg_dump, psql) is missing or too old for the source.',
    hint: 'Install the PostgreSQL client tools of at least the source major version (Debian: postgresql-client-NN), or point PGFERRY_PG_BIN at their directory.',
  },
  PGFERRY_SCHEMA_DUMP_FAILED: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'pg_dump could not dump the schema of the source.',
    hint: "pg_dump's own message follows; usually a privilege the source role lacks, or a lock it waited for too long (an open ALTER or VACUUM FULL).",
  },
  PGFERRY_SCHEMA_APPLY_FAILED: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'The schema could not be created on the target.',
    hint: 'The failing statement is named; it was applied in one transaction, so the target is unchanged. Fix the target (missing role, extension, privilege) and run again.',
  },
  PGFERRY_COPY_CHUNK_FAILED: {
    exit: 1,
    http: 500,
    retryable: true,
    summary: 'A chunk of a table could not be copied.',
    hint: 'The chunk was rolled back on the target; run the same command again to resume from the unfinished chunks.',
  },
  PGFERRY_SCHEMA_DRIFT: {
    exit: 1,
    http: 409,
    retryable: false,
    summary:
      'A replicated table has a different shape on the source and on the target (columns, types, key, partitions).',
    hint: 'Replay pauses while capture goes on: apply the same schema change to the target (status shows the diff) and replay resumes by itself, or resume it when the difference is safe to carry on with.',
  },
  PGFERRY_INDEX_BUILD_FAILED: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'A primary key, index or constraint could not be built on the target.',
    hint: 'The statement and the server error are named; fix the cause (e.g. duplicate rows from a changed source) and run again to resume.',
  },
  PGFERRY_CAPTURE_LOCKED: {
    exit: 1,
    http: 409,
    retryable: true,
    summary: 'A source table stayed locked while pgferry tried to install its capture trigger.',
    hint: 'Something holds a long lock on the table (an anti-wraparound VACUUM, a long transaction, a migration): find it in pg_locks / pg_stat_activity, wait for it, and run again.',
  },
  PGFERRY_TABLE_LOCKED: {
    exit: 1,
    http: 409,
    retryable: true,
    summary: 'A table stayed locked by another session while pgferry read the catalog at start.',
    hint: 'Something holds an exclusive lock on the table (an ALTER TABLE, a VACUUM FULL, a long migration): find it in pg_locks / pg_stat_activity, let it finish, and run the same command again.',
  },
  PGFERRY_REPLAY_CONFLICT: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'A replayed batch violated a constraint on the target even when applied whole.',
    hint: 'The target holds rows or constraints the source does not (written by something else, or a constraint that differs): compare the table on both sides, fix the target, and run again.',
  },
  PGFERRY_TABLES_REFUSED: {
    exit: 1,
    http: 409,
    retryable: false,
    summary: 'A table could not join or leave the running migration.',
    hint: 'The message names the table and the reason (no table matches, already in the run, a difference with the table on the target); fix it and run `pgferry tables add|remove` again. Whatever the request had done is undone.',
  },
  PGFERRY_WALG_FAILED: {
    exit: 1,
    http: 502,
    retryable: false,
    summary: 'A WAL-G command failed (backup-fetch, or wal-fetch for the standby).',
    hint: "The message has WAL-G's own last lines: check the backup name (`wal-g backup-list`) and the storage settings (WALG_* and the storage's credentials, in the environment or --env-file).",
  },
  PGFERRY_CUTOVER_REFUSED: {
    exit: 1,
    http: 409,
    retryable: true,
    summary: 'The cutover was refused: replication is not close enough to the source.',
    hint: 'Wait until `pgferry status` shows a lag under --max-lag, or pass --force to cut over anyway (a longer freeze).',
  },
  PGFERRY_CUTOVER_FAILED: {
    exit: 1,
    http: 500,
    retryable: true,
    summary:
      'A cutover step failed before the target was declared ready; writes on the source were given back.',
    hint: 'The message names the step and the cause; replication goes on. Fix the cause and run the cutover again.',
  },
  PGFERRY_ROLLBACK_REFUSED: {
    exit: 1,
    http: 409,
    retryable: true,
    summary:
      'The rollback was refused: the run has not been cut over, has no reverse replication, or the reverse lag is too high.',
    hint: 'Cut over with `--reverse-after-cutover` (or start `pgferry reverse` on the finished run), wait until `pgferry status` shows the reverse lag under --max-lag, then roll back.',
  },
  PGFERRY_ROLLBACK_FAILED: {
    exit: 1,
    http: 500,
    retryable: true,
    summary:
      'A rollback step failed before the old source was given its writes back; the new side got its writes back.',
    hint: 'The message names the step and the cause; reverse replication goes on. Fix the cause and run the rollback again.',
  },
  PGFERRY_VERIFY_FAILED: {
    exit: 2,
    http: 500,
    retryable: false,
    summary: 'The comparison could not be completed: a query failed on one side.',
    hint: 'The message names the side, the table and the server error (a table missing on the target, a privilege); no verdict was reached, so fix the cause and verify again.',
  },
  PGFERRY_STATE_LOCKED: {
    exit: 2,
    http: 409,
    retryable: false,
    summary: 'Another pgferry process is running on the same state file.',
    hint: 'Wait for it to finish or stop it (SIGTERM); two processes must never drive the same migration.',
  },
  PGFERRY_STATE_MISMATCH: {
    exit: 2,
    http: 409,
    retryable: false,
    summary: 'The state file belongs to a run with a different source, target, filter or mode.',
    hint: 'Run with the same settings as before, or start afresh with another --state file (and an empty target).',
  },
  PGFERRY_STATE_NOT_FOUND: {
    exit: 2,
    http: 404,
    retryable: false,
    summary: 'The state file does not exist.',
    hint: 'Pass the --state file that `pgferry migrate` was started with (default ./pgferry-state.sqlite).',
  },
  PGFERRY_STATE_INVALID: {
    exit: 2,
    http: 500,
    retryable: false,
    summary: 'The state file is not a pgferry checkpoint store or was written by an incompatible version.',
    hint: 'Check the --state path; a state file is only read by the pgferry version that wrote it or a newer one.',
  },
  PGFERRY_NOT_IMPLEMENTED: {
    exit: 2,
    http: 501,
    retryable: false,
    summary: 'The requested mode is not implemented yet in this version of pgferry.',
    hint: 'Use a mode that exists now (e.g. `pgferry migrate --copy-only`); the message names what is missing.',
  },
  PGFERRY_DEMO_UNAVAILABLE: {
    exit: 2,
    http: 501,
    retryable: false,
    summary: '`pgferry demo` cannot start its local PostgreSQL servers on this machine.',
    hint: 'Run it from a checkout of pgferry after `npm ci`: the server binaries come from its dev dependencies (pg14, pg15, pg17), and pg_dump/psql from the PostgreSQL client tools.',
  },
  PGFERRY_API_UNAUTHORIZED: {
    exit: 2,
    http: 401,
    retryable: false,
    summary: 'A control call of the HTTP API came without the right bearer token.',
    hint: 'Send `Authorization: Bearer <token>` with the PGFERRY_API_TOKEN the daemon was started with.',
  },
  PGFERRY_API_FORBIDDEN: {
    exit: 2,
    http: 403,
    retryable: false,
    summary: 'Control calls of the HTTP API are disabled: the daemon was started without a token.',
    hint: 'Restart `pgferry migrate --http` with PGFERRY_API_TOKEN set to a long random secret.',
  },
  PGFERRY_API_NOT_FOUND: {
    exit: 2,
    http: 404,
    retryable: false,
    summary: 'The HTTP API has no such route.',
    hint: 'The routes are listed in the README under "HTTP API and metrics".',
  },
  PGFERRY_API_MISDIRECTED: {
    exit: 2,
    http: 421,
    retryable: false,
    summary:
      'A request to an API bound to loopback named another host in its Host header (the defence against DNS rebinding).',
    hint: 'Address the API as 127.0.0.1, [::1] or localhost with its port; to reach it from elsewhere, bind --http to that interface with PGFERRY_API_TOKEN set.',
  },
  PGFERRY_API_CONFLICT: {
    exit: 1,
    http: 409,
    retryable: true,
    summary: "The control call does not fit the run's current phase.",
    hint: 'Pause and resume apply while the run is replicating; one cutover or verification runs at a time. Check GET /status and call again.',
  },
  PGFERRY_RUN_CANCELLED: {
    exit: 130,
    http: 499,
    retryable: true,
    summary: 'The operation was stopped by a signal before it finished.',
    hint: 'Run the same command again with the same --state to resume where it stopped.',
  },
  PGFERRY_INTERNAL_ERROR: {
    exit: 1,
    http: 500,
    retryable: false,
    summary: 'An unexpected internal error.',
    hint: 'Please report it with the log; the state file keeps the progress, so running again resumes.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;
