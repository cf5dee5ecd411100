// One place resolves configuration: flags > PGFERRY_* environment > defaults, validated once and
// frozen. Connection URLs become ConnInfo objects whose password is never enumerable.
import net from 'node:net';
import type { CutoverSettings } from '../engine/cutover/cutover.js';
import { FREEZE_METHODS, type FreezeMethod } from '../engine/cutover/freeze.js';
import { DRIFT_MODES, type DriftMode } from '../engine/drift/modes.js';
import { ConnInfo } from '../engine/shared/conn-info.js';
import { CONFLICT_RULES, type ConflictRule } from '../engine/two-way/state.js';
import { PgferryError } from '../lib/errors.js';
import { type HttpAddress, parseHttpAddress } from './http/address.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "10m", "90s", "1h30m", "500ms" → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  const joined = parts.map((p) => p[0]).join('');
  if (parts.length === 0 || joined !== text.trim().replace(/\s+/g, '')) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `${flag} "${text}" is not a duration (e.g. 30s, 10m, 1h30m)`,
      {
        side: 'config',
      },
    );
  }
  return parts.reduce((ms, p) => ms + Number(p[1]) * UNITS[p[2]!]!, 0);
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** "128MB", "1GB", "65536" → bytes. */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(text);
  if (!m || Number(m[1]) <= 0) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `${flag} "${text}" is not a size (e.g. 64MB, 1GB)`, {
      side: 'config',
    });
  }
  const bytes = Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!);
  // Checked after rounding: "0.1" is 0 bytes, and a chunk of nothing would never end a plan.
  if (bytes < MIN_SIZE) {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `${flag} "${text}" is below the smallest size, 64kB`, {
      side: 'config',
    });
  }
  return bytes;
}

const MIN_SIZE = 64 * 1024;

export function parseJobs(text: string, flag = '--jobs'): number {
  // Number(): the coercion zod's coerce.number() applied here; zod itself is left to the HTTP API,
  // which loads it with --http only (importing it costs every command ~15 MB of memory).
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `${flag} "${text}" must be a whole number from 1 to 64`,
      {
        side: 'config',
      },
    );
  }
  return n;
}

export function sourceConn(flag: string | undefined, env = process.env): ConnInfo {
  const url = flag ?? env.PGFERRY_SOURCE_URL;
  if (!url) {
    throw new PgferryError(
      'PGFERRY_CONFIG_MISSING',
      'no source given: pass --source URL or set PGFERRY_SOURCE_URL',
      {
        side: 'config',
      },
    );
  }
  return new ConnInfo('source', url);
}

export function targetConn(flag: string | undefined, env = process.env): ConnInfo {
  const url = flag ?? env.PGFERRY_TARGET_URL;
  if (!url) {
    throw new PgferryError(
      'PGFERRY_CONFIG_MISSING',
      'no target given: pass --target URL or set PGFERRY_TARGET_URL',
      {
        side: 'config',
      },
    );
  }
  return new ConnInfo('target', url);
}

export const DEFAULT_STATE = 'pgferry-state.sqlite';

export function statePath(flag: string | undefined, env = process.env): string {
  return flag ?? env.PGFERRY_STATE ?? DEFAULT_STATE;
}

export const CAPTURE_KINDS = ['triggers', 'bucardo', 'logical'] as const;
export type CaptureKind = (typeof CAPTURE_KINDS)[number];

export interface MigrateConfig {
  source: ConnInfo;
  target: ConnInfo;
  state: string;
  jobs: number;
  include: string[];
  exclude: string[];
  capture: CaptureKind;
  http: { host: string; port: number } | null;
  maxSnapshotAgeMs: number;
  captureLockWaitMs: number;
  retryForMs: number;
  chunkBytes: number;
  mode: 'copy-only' | 'exit-when-synced' | 'cutover-when-synced' | 'run';
  drift: DriftMode;
  reverseAfterCutover: boolean;
  twoWay: { conflict: ConflictRule } | null;
}

export interface MigrateFlags {
  source?: string;
  target?: string;
  state?: string;
  jobs?: string;
  include?: string[];
  exclude?: string[];
  capture?: string;
  http?: string;
  maxSnapshotAge?: string;
  captureLockWait?: string;
  retryFor?: string;
  chunkSize?: string;
  drift?: string;
  copyOnly?: boolean;
  exitWhenSynced?: boolean;
  cutoverWhenSynced?: boolean;
  reverseAfterCutover?: boolean;
  twoWay?: boolean;
  conflict?: string;
}

function parseDrift(text: string): DriftMode {
  if (!(DRIFT_MODES as readonly string[]).includes(text)) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--drift must be one of ${DRIFT_MODES.join(', ')}, not ${JSON.stringify(text)}`,
      { side: 'config' },
    );
  }
  return text as DriftMode;
}

export function parseHttp(text: string): HttpAddress {
  const addr = parseHttpAddress(text);
  if (!addr) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--http "${text}" must be HOST:PORT (e.g. 127.0.0.1:8080)`,
      {
        side: 'config',
      },
    );
  }
  return addr;
}

/** --retry-for / PGFERRY_RETRY_FOR: how long a lost connection is retried (default 10m, an RDS failover's worth and more). */
export function retryFor(flag: string | undefined, env = process.env): number {
  return parseDuration(flag ?? env.PGFERRY_RETRY_FOR ?? '10m', '--retry-for');
}

/** Shortest API token accepted for an API bound beyond loopback (guessable otherwise). */
const MIN_TOKEN_LENGTH = 16;

/** The API token (PGFERRY_API_TOKEN), or null when control calls are disabled. Never stored. */
export function apiToken(env = process.env): string | null {
  return env.PGFERRY_API_TOKEN ? env.PGFERRY_API_TOKEN : null;
}

/** Whether a bind address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** The directions a run may take: reverse replication after a cutover, or two-way sync instead of one. */
function checkDirections(flags: MigrateFlags, capture: string): { conflict: ConflictRule } | null {
  const invalid = (message: string) =>
    new PgferryError('PGFERRY_CONFIG_INVALID', message, { side: 'config' });
  if (flags.conflict !== undefined && !flags.twoWay) throw invalid('--conflict applies with --two-way only');
  if (flags.reverseAfterCutover && flags.copyOnly) {
    throw invalid('--reverse-after-cutover needs capture and a cutover: --copy-only has neither');
  }
  if (!flags.twoWay) return null;
  const conflict = flags.conflict ?? 'latest';
  if (!(CONFLICT_RULES as readonly string[]).includes(conflict)) {
    throw invalid(`--conflict "${conflict}" must be one of ${CONFLICT_RULES.join(', ')}`);
  }
  if (flags.copyOnly || flags.cutoverWhenSynced || flags.reverseAfterCutover) {
    throw invalid(
      '--two-way keeps both sides in service and has no cutover: it excludes --copy-only, --cutover-when-synced and --reverse-after-cutover',
    );
  }
  if (capture !== 'triggers') {
    throw invalid(
      `--two-way needs --capture triggers (with ${capture}, pgferry's own writes would be captured again)`,
    );
  }
  return { conflict: conflict as ConflictRule };
}

export function loadMigrateConfig(flags: MigrateFlags, env = process.env): Readonly<MigrateConfig> {
  const modes = [flags.copyOnly, flags.exitWhenSynced, flags.cutoverWhenSynced].filter(Boolean).length;
  if (modes > 1) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      '--copy-only, --exit-when-synced and --cutover-when-synced exclude each other: choose one',
      { side: 'config' },
    );
  }
  const capture = flags.capture ?? env.PGFERRY_CAPTURE ?? 'triggers';
  const twoWay = checkDirections(flags, capture);
  if (!(CAPTURE_KINDS as readonly string[]).includes(capture)) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--capture "${capture}" must be one of ${CAPTURE_KINDS.join(', ')}`,
      {
        side: 'config',
      },
    );
  }
  const httpText = flags.http ?? env.PGFERRY_HTTP;
  const http = httpText ? parseHttp(httpText) : null;
  if (http && !isLoopback(http.host) && !apiToken(env)) {
    // Anyone who can reach the port could pause the run or cut it over: never without a token.
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--http ${http.host.includes(':') ? `[${http.host}]` : http.host}:${http.port} binds beyond this machine: set PGFERRY_API_TOKEN, or bind 127.0.0.1`,
      { side: 'config' },
    );
  }
  const token = apiToken(env);
  if (http && !isLoopback(http.host) && token !== null && token.length < MIN_TOKEN_LENGTH) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `PGFERRY_API_TOKEN is ${token.length} characters long: a token that guards an API reachable beyond this machine must have at least ${MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 24)`,
      { side: 'config' },
    );
  }
  return Object.freeze({
    source: sourceConn(flags.source, env),
    target: targetConn(flags.target, env),
    state: statePath(flags.state, env),
    jobs: parseJobs(flags.jobs ?? env.PGFERRY_JOBS ?? '4'),
    include: flags.include ?? [],
    exclude: flags.exclude ?? [],
    capture: capture as CaptureKind,
    http,
    maxSnapshotAgeMs: parseDuration(
      flags.maxSnapshotAge ?? env.PGFERRY_MAX_SNAPSHOT_AGE ?? '10m',
      '--max-snapshot-age',
    ),
    captureLockWaitMs: parseDuration(
      flags.captureLockWait ?? env.PGFERRY_CAPTURE_LOCK_WAIT ?? '2m',
      '--capture-lock-wait',
    ),
    retryForMs: retryFor(flags.retryFor, env),
    chunkBytes: parseSize(flags.chunkSize ?? env.PGFERRY_CHUNK_SIZE ?? '128MB', '--chunk-size'),
    drift: parseDrift(flags.drift ?? env.PGFERRY_DRIFT ?? 'pause'),
    reverseAfterCutover: flags.reverseAfterCutover ?? false,
    twoWay,
    mode: flags.copyOnly
      ? 'copy-only'
      : flags.exitWhenSynced
        ? 'exit-when-synced'
        : flags.cutoverWhenSynced
          ? 'cutover-when-synced'
          : 'run',
  });
}

export interface CutoverFlags {
  freeze?: string;
  maxLag?: string;
  force?: boolean;
  settle?: string;
  verify?: string;
}

export function loadCutoverSettings(flags: CutoverFlags, env = process.env): CutoverSettings {
  const freeze = flags.freeze ?? env.PGFERRY_FREEZE ?? 'readonly';
  if (!(FREEZE_METHODS as readonly string[]).includes(freeze)) {
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--freeze "${freeze}" must be one of ${FREEZE_METHODS.join(', ')}`,
      {
        side: 'config',
      },
    );
  }
  const verify = flags.verify ?? 'counts';
  if (verify !== 'counts' && verify !== 'checksums') {
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `--verify "${verify}" must be counts or checksums`, {
      side: 'config',
    });
  }
  return {
    freeze: freeze as FreezeMethod,
    maxLagSeconds: parseDuration(flags.maxLag ?? env.PGFERRY_MAX_LAG ?? '5s', '--max-lag') / 1000,
    force: flags.force ?? false,
    settleMs: parseDuration(flags.settle ?? '2s', '--settle'),
    verify,
  };
}
