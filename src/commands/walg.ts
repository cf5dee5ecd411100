// `pgferry walg restore|status|promote --pgdata DIR`: engine/walg/ with its output. The WAL-G
// environment is pgferry's own (WAL-G reads a storage's settings under many names: WALG_*, AWS_*,
// GOOGLE_*, AZURE_*, ...), without pgferry's settings and libpq's password, plus the lines of
// --env-file; their values are never printed.
import fs from 'node:fs';
import path from 'node:path';
import { q, withClient } from '../../engine/shared/db.js';
import { parseEnvFile } from '../../engine/walg/standby.js';
import { findWalg, promote, restore, status } from '../../engine/walg/walg.js';
import { PgferryError } from '../../lib/errors.js';
import { parseHttp, sourceConn } from '../config.js';
import type { HttpAddress } from '../http/address.js';
import { startProgressServer } from '../http/progress-server.js';
import { createLogger } from '../logger.js';
import type { WalgMetrics } from '../walg-metrics.js';

interface Flags {
  pgdata?: string;
  port?: string;
  walg?: string;
  backup?: string;
  envFile?: string;
  user?: string;
  source?: string;
  force?: boolean;
  json?: boolean;
  http?: string;
}

/** Not WAL-G's: pgferry's own settings (URLs, the API token), libpq's password, npm's. */
const NOT_WALG = /^(PGFERRY_|PGPASSWORD$|npm_)/;

export const WALG_HELP =
  '\nrestore: wal-g backup-fetch DIR NAME (default LATEST), then the copy is set up as a standby whose\n' +
  "restore_command is 'wal-g wal-fetch %f %p' (with the same environment, kept owner-only in DIR), and\n" +
  'started on --port (default 5433). status: replay LSN, last replayed transaction and its age, WAL\n' +
  "segments fetched, and whether the standby keeps up (it reached the archive's end); with --source,\n" +
  'the bytes it is behind the primary. promote: refuses unless it keeps up (--force), runs pg_promote,\n' +
  'waits until it takes writes and prints the end LSN. RDS takes no physical copy: the promoted copy is\n' +
  'then the source of `pgferry migrate` or `pgferry dump-restore` to RDS.';

function walgEnv(flags: Flags): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !NOT_WALG.test(k)) env[k] = v;
  if (flags.envFile) {
    if (!fs.existsSync(flags.envFile)) {
      throw new PgferryError('PGFERRY_CONFIG_INVALID', `--env-file ${flags.envFile} does not exist`, {
        side: 'config',
      });
    }
    Object.assign(env, parseEnvFile(fs.readFileSync(flags.envFile, 'utf8')));
  }
  return env;
}

export async function walgCommand(action: string, flags: Flags): Promise<void> {
  if (!['restore', 'status', 'promote'].includes(action)) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `walg "${action}" must be restore, status or promote`, {
      side: 'config',
    });
  }
  if (!flags.pgdata) {
    throw new PgferryError('PGFERRY_CONFIG_MISSING', `walg ${action} needs --pgdata DIR`, { side: 'config' });
  }
  const pgdata = path.resolve(flags.pgdata);
  const log = createLogger();
  const say = (level: 'info' | 'warn', message: string) => log[level](message);
  const print = (value: unknown, text: string) =>
    process.stdout.write(flags.json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
  if (action === 'restore') {
    const port = Number(flags.port ?? '5433');
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new PgferryError('PGFERRY_CONFIG_INVALID', `--port "${flags.port}" must be a port number`, {
        side: 'config',
      });
    }
    const rec = await restore({
      pgdata,
      port,
      walg: findWalg(flags.walg),
      backup: flags.backup ?? 'LATEST',
      env: walgEnv(flags),
      user: flags.user ?? 'postgres',
      log: say,
    });
    const s = await status(pgdata);
    print(
      { ok: true, ...rec, status: s },
      `standby running on port ${rec.port}, replayed up to ${s.replayLsn}; \`pgferry walg status --pgdata ${pgdata}\` follows it`,
    );
    return;
  }
  if (action === 'status') {
    const primary = flags.source ? sourceConn(flags.source) : undefined;
    const read = () =>
      status(
        pgdata,
        primary &&
          (() =>
            withClient(
              primary,
              'control',
              async (c) =>
                (await q<{ l: string }>(c, 'source', 'SELECT pg_current_wal_lsn()::text AS l'))[0]!.l,
            )),
      );
    if (flags.http) {
      // Loaded with --http only: prom-client is ~30 ms of every other command's start-up.
      const { WalgMetrics } = await import('../walg-metrics.js');
      await serveStatus(parseHttp(flags.http), new WalgMetrics(read), say);
      return;
    }
    const s = await read();
    print(
      s,
      [
        `copy     ${pgdata}: ${s.running ? (s.inRecovery ? 'standby, replaying' : `promoted ${s.promotedAt ?? ''}`) : 'NOT RUNNING'}`,
        `replay   ${s.replayLsn ?? '?'} · last transaction ${s.lastReplayAt ?? 'none yet'}${s.lagSeconds !== null ? ` (${s.lagSeconds}s ago)` : ''}${s.lagBytes !== null ? ` · ${s.lagBytes} bytes behind the primary` : ''}`,
        `archive  ${s.fetch.fetched} segments fetched${s.fetch.lastFetched ? `, last ${s.fetch.lastFetched.segment} at ${s.fetch.lastFetched.at}` : ''}${s.fetch.failed ? ` · ${s.fetch.failed} failed (last exit ${s.fetch.lastFailure?.code} for ${s.fetch.lastFailure?.segment})` : ''}`,
        `keeping up: ${s.keepingUp ? 'yes (reached the end of the archive)' : 'no'}`,
      ].join('\n'),
    );
    return;
  }
  const r = await promote(pgdata, flags.force ?? false, say);
  print(
    { ok: true, ...r },
    `promoted in ${r.seconds.toFixed(1)}s, end LSN ${r.endLsn}; it takes writes.\nNext: it is the source of the move to RDS: pgferry migrate --source <this copy's URL> --target <RDS URL> (or pgferry dump-restore).`,
  );
}

/** `walg status --http`: /status and /metrics read from the copy at each request, until a signal. */
async function serveStatus(
  addr: HttpAddress,
  metrics: WalgMetrics,
  say: (level: 'info' | 'warn', m: string) => void,
) {
  const server = await startProgressServer(addr, metrics);
  say(
    'info',
    `the copy's status at /status and its metrics at /metrics on port ${server.port}; Ctrl-C stops`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.close();
}
