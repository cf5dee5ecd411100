#!/usr/bin/env node
// A stand-in for WAL-G (the real binary cannot be installed here) implementing, over a local
// directory, the commands pgferry runs and the one a test primary archives with, with WAL-G's
// argument order and exit codes:
//   wal-g backup-fetch DESTINATION BACKUP_NAME|LATEST   exit 0, or 1 with "ERROR: ..." when absent
//   wal-g wal-fetch WAL_NAME DESTINATION_PATH            exit 0, 74 when the file is not in the
//                                                        archive (WAL-G >= 1.0, PR #1195), 1 else
//   wal-g wal-push PATH                                   (archive_command on the test primary)
// Storage: WALG_FILE_PREFIX, laid out as WAL-G lays out a prefix: basebackups_005/<name>/ (here a
// plain copy of the data directory, as pg_basebackup -Fp writes it) and wal_005/<segment>.
// WALG_STANDIN_FAIL=wal-fetch makes wal-fetch fail with exit 1 (a broken archive).
import fs from 'node:fs';
import path from 'node:path';

const [command, ...args] = process.argv.slice(2);
const prefix = process.env.WALG_FILE_PREFIX;
const fail = (code, message) => {
  process.stderr.write(`ERROR: ${new Date().toISOString()} ${message}\n`);
  process.exit(code);
};
if (!prefix)
  fail(1, 'WALG_FILE_PREFIX is not set: configure a storage (WALG_FILE_PREFIX, WALG_S3_PREFIX, ...)');

if (command === 'backup-fetch') {
  const [dest, name] = args;
  if (!dest || !name) fail(1, 'usage: wal-g backup-fetch destination_directory backup_name');
  const root = path.join(prefix, 'basebackups_005');
  const backups = fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
  const chosen = name === 'LATEST' ? backups.at(-1) : backups.find((b) => b === name);
  if (!chosen)
    fail(1, name === 'LATEST' ? 'No backups found in storage' : `Backup '${name}' does not exist.`);
  fs.mkdirSync(dest, { recursive: true });
  fs.cpSync(path.join(root, chosen), dest, { recursive: true });
  process.stderr.write(`INFO: ${new Date().toISOString()} Selecting the backup with name ${chosen}...\n`);
  process.stderr.write(`INFO: ${new Date().toISOString()} Backup extraction complete.\n`);
} else if (command === 'wal-fetch') {
  const [name, dest] = args;
  if (process.env.WALG_STANDIN_FAIL === 'wal-fetch')
    fail(1, 'failed to connect to the storage: connection refused');
  const file = path.join(prefix, 'wal_005', name ?? '');
  if (!name || !fs.existsSync(file)) fail(74, `Archive '${name}' does not exist.`);
  fs.copyFileSync(file, dest);
} else if (command === 'wal-push') {
  const [file] = args;
  const dir = path.join(prefix, 'wal_005');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp`);
  fs.copyFileSync(file, tmp);
  fs.renameSync(tmp, path.join(dir, path.basename(file)));
} else {
  fail(1, `unknown command "${command}" (this stand-in implements backup-fetch, wal-fetch and wal-push)`);
}
