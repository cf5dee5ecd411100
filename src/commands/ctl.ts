// `pgferry ctl`: a thin client of a running daemon's HTTP API, for scripts and operators who would
// rather not write curl lines. The token comes from --token or PGFERRY_API_TOKEN.
import { ERRORS, type ErrorCode, PgferryError } from '../../engine/errors.js';
import { parseDuration } from '../config.js';

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

export async function ctlCommand(action: CtlAction, flags: Flags): Promise<void> {
  const api = (flags.api ?? process.env.PGFERRY_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const token = flags.token ?? process.env.PGFERRY_API_TOKEN;
  const payload = body(action, flags);
  const headers: Record<string, string> = {};
  if (payload !== undefined) headers['content-type'] = 'application/json';
  if (token && action !== 'status') headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(`${api}/${action}`, {
      method: action === 'status' ? 'GET' : 'POST',
      headers,
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
  } catch (err) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `cannot reach the pgferry API at ${api}: ${(err as Error).message}`,
      {
        side: 'config',
        hint: 'Check --api (or PGFERRY_API_URL): the daemon must run with --http HOST:PORT.',
      },
    );
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    const e = (json.error ?? {}) as { code?: string; message?: string; hint?: string };
    const code = (e.code && e.code in ERRORS ? e.code : 'PGFERRY_INTERNAL_ERROR') as ErrorCode;
    throw new PgferryError(code, `${action}: ${e.message ?? `HTTP ${res.status}`}`, {
      side: 'config',
      hint: e.hint,
    });
  }
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  if (action === 'verify' && json.equal === false) process.exitCode = 1;
}
