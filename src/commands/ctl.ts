// `pgferry ctl`: a thin client of a running daemon's HTTP API, for scripts and operators who would
// rather not write curl lines. The token comes from --token or PGFERRY_API_TOKEN. Cutover and
// verify start an operation on the daemon (202); ctl follows it, progress on stderr, and prints
// its result as the command's own: verify exits 0 equal, 1 different, 2 no verdict.

import { ERRORS, type ErrorCode } from '../../lib/error-codes.js';
import { PgferryError, SIDES, type Side } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { parseDuration } from '../config.js';
import { localUrl, parseHttpAddress } from '../http/address.js';

export const CTL_ACTIONS = ['status', 'pause', 'resume', 'cutover', 'verify'] as const;
export type CtlAction = (typeof CTL_ACTIONS)[number];

interface Flags {
  api?: string;
  token?: string;
  reason?: string;
  freeze?: string;
  maxLag?: string;
  force?: boolean;
  verify?: string;
  checksums?: boolean;
}

function body(action: CtlAction, flags: Flags): Record<string, unknown> | undefined {
  if (action === 'pause') return flags.reason ? { reason: flags.reason } : {};
  if (action === 'verify') return { checksums: flags.checksums ?? false };
  if (action === 'cutover') {
    const b: Record<string, unknown> = {};
    if (flags.freeze) b.freeze = flags.freeze;
    if (flags.maxLag) b.maxLagSeconds = parseDuration(flags.maxLag, '--max-lag') / 1000;
    if (flags.force) b.force = true;
    if (flags.verify) b.verify = flags.verify;
    return b;
  }
  return action === 'resume' ? {} : undefined;
}

interface RemoteError {
  code?: string;
  message?: string;
  hint?: string;
  side?: string;
  object?: string;
}

interface RemoteOperation {
  id: string;
  kind: string;
  state: 'running' | 'succeeded' | 'failed';
  progress: string | null;
  result: Record<string, unknown> | null;
  error: RemoteError | null;
}

/** Polls an operation this often; a daemon that stops answering this many times in a row is gone. */
const POLL_MS = 1_000;
const POLL_FAILURES = 5;
/** Progress lines at most this often (a checksum run moves on every range). */
const PROGRESS_MS = 5_000;

/**
 * The daemon's error as this command's error. A verify that reached no verdict exits 2 whatever
 * its code (1 means "different"), as `pgferry verify` does.
 */
function remoteError(action: CtlAction, e: RemoteError, status?: number): PgferryError {
  let code = (e.code && e.code in ERRORS ? e.code : 'PGFERRY_INTERNAL_ERROR') as ErrorCode;
  let message = `${action}: ${e.message ?? `HTTP ${status}`}`;
  if (action === 'verify' && ERRORS[code].exit !== 2) {
    message = `verify: ${code}: ${e.message ?? `HTTP ${status}`}`;
    code = 'PGFERRY_VERIFY_FAILED';
  }
  const side = (SIDES as readonly string[]).includes(e.side ?? '') ? (e.side as Side) : 'config';
  return new PgferryError(code, message, { side, object: e.object, hint: e.hint });
}

/** Errors of the connection to the daemon itself (as opposed to its answers). */
const unreachable = new WeakSet<Error>();

export async function ctlCommand(action: CtlAction, flags: Flags): Promise<void> {
  const api = (flags.api ?? (process.env.PGFERRY_API_URL || defaultApi())).replace(/\/+$/, '');
  const token = flags.token ?? process.env.PGFERRY_API_TOKEN;
  const call = async (method: 'GET' | 'POST', route: string, payload?: unknown) => {
    const headers: Record<string, string> = {};
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (token && route !== '/status') headers.authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await fetch(`${api}${route}`, {
        method,
        headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const e = new PgferryError(
        'PGFERRY_CONFIG_INVALID',
        `cannot reach the pgferry API at ${api}: ${(err as Error).message}`,
        {
          side: 'config',
          hint: 'Check --api (or PGFERRY_API_URL): the daemon must run with --http HOST:PORT.',
        },
      );
      unreachable.add(e);
      throw e;
    }
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok) throw remoteError(action, (json.error ?? {}) as RemoteError, res.status);
    return { json, location: res.headers.get('location') };
  };

  const payload = body(action, flags);
  if (action !== 'cutover' && action !== 'verify') {
    const { json } = await call(action === 'status' ? 'GET' : 'POST', `/${action}`, payload);
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }

  // Cutover and verify answer 202 with an operation at once: follow it until it ends.
  const started = await call('POST', `/${action}`, payload);
  let op = started.json.operation as RemoteOperation;
  const where = started.location ?? `/operations/${op.id}`;
  const t0 = Date.now();
  let said: string | null | undefined;
  let saidAt = 0;
  let failures = 0;
  while (op.state === 'running') {
    if (op.progress !== said && Date.now() - saidAt >= PROGRESS_MS) {
      const elapsed = Math.round((Date.now() - t0) / 1000);
      process.stderr.write(
        `pgferry: ${action} running (operation ${op.id}, ${elapsed}s)${op.progress ? `: ${op.progress}` : ''}\n`,
      );
      said = op.progress;
      saidAt = Date.now();
    }
    await sleep(POLL_MS);
    try {
      op = (await call('GET', where)).json.operation as RemoteOperation;
      failures = 0;
    } catch (err) {
      // A daemon busy with the cutover may miss a poll; one that stays silent is gone.
      if (!unreachable.has(err as Error) || ++failures >= POLL_FAILURES) throw err;
    }
  }
  if (op.state === 'failed') throw remoteError(action, op.error ?? {});
  process.stderr.write(
    `pgferry: ${action} ${op.state} after ${Math.round((Date.now() - t0) / 1000)}s (operation ${op.id})\n`,
  );
  const result = op.result ?? {};
  process.stdout.write(
    `${JSON.stringify(action === 'cutover' ? { ok: true, ...result } : result, null, 2)}\n`,
  );
  if (action === 'verify' && result.equal === false) process.exitCode = 1;
}

/** Beside a daemon configured by PGFERRY_HTTP (the container), its own address; else 127.0.0.1:8080. */
function defaultApi(): string {
  const bound = process.env.PGFERRY_HTTP ? parseHttpAddress(process.env.PGFERRY_HTTP) : null;
  return bound ? localUrl(bound) : 'http://127.0.0.1:8080';
}
