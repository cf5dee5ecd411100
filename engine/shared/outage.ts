// Outages are waited out. A connection lost or refused on either side (a restart, an RDS Multi-AZ
// failover of one to two minutes, a cut link) is retried with exponential backoff and jitter for
// up to --retry-for before the run fails; while it lasts, the outage of each side is known (since
// when, how many attempts, the last error) for status, the status page and metrics.
import type { CheckpointStore } from '../../checkpoints/store.js';
import { isPgferryError, PgferryError, sqlstateOf } from '../../lib/errors.js';
import type { DbSide } from './conn-info.js';

export const DEFAULT_RETRY_FOR_MS = 10 * 60_000;

/** The checkpoint store's meta key holding the current outages (absent when there is none). */
const OUTAGE_META = 'outage';

/** Each side's current outage as the run recorded it, or null while both answer. */
export function readOutages(store: CheckpointStore): Outages | null {
  const raw = store.getMeta(OUTAGE_META);
  return raw ? (JSON.parse(raw) as Outages) : null;
}

/** Records the outages for status and metrics (nothing while both sides answer). */
export function writeOutages(store: CheckpointStore, outages: Outages | null): void {
  if (outages?.source || outages?.target) store.setMeta(OUTAGE_META, JSON.stringify(outages));
  else store.deleteMeta(OUTAGE_META);
}

export interface Outage {
  side: DbSide;
  since: string;
  attempts: number;
  lastError: string;
}

export type Outages = Record<DbSide, Outage | null>;

// Node's codes for a socket that failed or could not be opened (a DNS name that does not resolve
// is among them: an RDS endpoint is re-pointed during a failover).
const SOCKET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

// node-postgres's errors for a session whose socket is gone carry neither a SQLSTATE nor a code:
// their text is all there is.
const CLIENT_GONE =
  /Connection terminated|not queryable|timeout expired|Connection terminated due to connection timeout|Client was closed|server closed the connection/i;

/**
 * Whether an error means the connection was lost or refused, so that a fresh session may succeed:
 * SQLSTATE class 08, the server shutting down or starting (57P01, 57P02, 57P03), too many
 * connections (53300, seen while a restarted server fills up), socket errors, and node-postgres's
 * own errors for a dead session. The whole `cause` chain is looked at.
 */
export function isConnectionLoss(err: unknown): boolean {
  for (
    let e = err as { cause?: unknown; code?: unknown; message?: unknown } | null, depth = 0;
    e && depth < 6;
    depth++
  ) {
    if (isPgferryError(e)) {
      if (e.code === 'PGFERRY_SOURCE_CONNECT' || e.code === 'PGFERRY_TARGET_CONNECT') {
        // A connection refused for a reason a retry cannot cure: the login itself.
        return !['28P01', '28000', '3D000', '42501'].includes(e.sqlstate ?? '');
      }
      if (e.sqlstate) return connectionState(e.sqlstate);
    } else {
      const state = sqlstateOf(e);
      if (state) return connectionState(state);
      if (typeof e.code === 'string' && SOCKET_CODES.has(e.code)) return true;
      if (typeof e.message === 'string' && CLIENT_GONE.test(e.message)) return true;
    }
    e = e.cause as typeof e;
  }
  return false;
}

const connectionState = (state: string) =>
  state.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(state);

/** The side an error concerns, when it says. */
export function sideOf(err: unknown): DbSide | undefined {
  for (let e = err as { cause?: unknown; side?: unknown } | null, depth = 0; e && depth < 6; depth++) {
    if (e.side === 'source' || e.side === 'target') return e.side;
    e = e.cause as typeof e;
  }
  return undefined;
}

const formatDuration = (ms: number) =>
  ms >= 60_000
    ? `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`
    : `${Math.round(ms / 1000)}s`;

/** Keeps the outage of each side and decides, at each failure, whether to wait again or give up. */
export class OutageTracker {
  private readonly state: Outages = { source: null, target: null };

  constructor(
    private readonly opts: {
      retryForMs: number;
      /** The outages changed (for the state file, hence status and metrics). */
      onChange?: (outages: Outages) => void;
      /** A retry of a lost side is about to start. */
      onRetry?: (side: DbSide) => void;
    },
  ) {}

  outages(): Outages {
    return { ...this.state };
  }

  /**
   * Records a connection loss on a side and returns how long to wait before the next attempt,
   * or throws once the side has been unreachable for longer than --retry-for.
   */
  failed(side: DbSide, err: unknown): number {
    const current = this.record(side, err);
    const message = current.lastError;
    const elapsed = Date.now() - Date.parse(current.since);
    if (elapsed >= this.opts.retryForMs) {
      throw new PgferryError(
        side === 'source' ? 'PGFERRY_SOURCE_CONNECT' : 'PGFERRY_TARGET_CONNECT',
        `the ${side} was unreachable for ${formatDuration(elapsed)} (${current.attempts} attempts, --retry-for ${formatDuration(this.opts.retryForMs)}): ${message}`,
        {
          side,
          cause: err,
          hint: `Check that the ${side} server is up and reachable from here; run the same command again to resume, or raise --retry-for to wait out longer outages.`,
        },
      );
    }
    this.opts.onRetry?.(side);
    // 0.5 s, 1 s, 2 s … up to 15 s, each ±50 %: many sessions must not come back in lockstep.
    const base = Math.min(15_000, 500 * 2 ** Math.min(current.attempts - 1, 5));
    return Math.min(base * (0.5 + Math.random()), Math.max(0, this.opts.retryForMs - elapsed) + 50);
  }

  /**
   * Records a connection loss that an inner retry (a chunk's, a batch's) is already handling:
   * shown like any outage, never given up on here (the inner retry fails the attempt when it must).
   */
  noted(side: DbSide, err: unknown): void {
    this.record(side, err);
    this.opts.onRetry?.(side);
  }

  /** One more failed attempt on a side: starts its outage, or adds to it. */
  private record(side: DbSide, err: unknown): Outage {
    const current = this.state[side] ?? { side, since: new Date().toISOString(), attempts: 0, lastError: '' };
    current.attempts += 1;
    current.lastError = (err as Error)?.message ?? String(err);
    this.state[side] = current;
    this.opts.onChange?.(this.outages());
    return current;
  }

  /** The side answered again. */
  recovered(side: DbSide): void {
    if (this.state[side] === null) return;
    this.state[side] = null;
    this.opts.onChange?.(this.outages());
  }
}
