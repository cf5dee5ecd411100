// pgferry's error: PgferryError, coded by the registry in error-codes.ts (which sets its exit code,
// HTTP status, retryability and default hint) with the side and object it concerns; classify() for
// what to do about any error; dbError() to wrap a database error; redact() for passwords in text.
import { ERRORS, type ErrorCode } from './error-codes.js';

export const SIDES = ['source', 'target', 'state', 'config', 'tool'] as const;
export type Side = (typeof SIDES)[number];

export interface ErrorDetails {
  side?: Side;
  /** The object concerned: a table as schema.table, a chunk, an index. */
  object?: string;
  /** The server's SQLSTATE, when a PostgreSQL error caused this one. */
  sqlstate?: string;
  /** Overrides the registry's hint when the fix is more specific. */
  hint?: string;
  cause?: unknown;
}

export class PgferryError extends Error {
  readonly code: ErrorCode;
  readonly side: Side | undefined;
  readonly object: string | undefined;
  readonly sqlstate: string | undefined;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(redact(message), details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PgferryError';
    this.code = code;
    this.side = details.side;
    this.object = details.object;
    this.sqlstate = details.sqlstate;
    this.hint = details.hint ?? ERRORS[code].hint;
  }

  get exitCode(): number {
    return ERRORS[this.code].exit;
  }

  get httpStatus(): number {
    return ERRORS[this.code].http;
  }

  get retryable(): boolean {
    return ERRORS[this.code].retryable;
  }

  /** The one line an operator sees. */
  oneLine(): string {
    const where = [this.side, this.object].filter(Boolean).join(' ');
    return `${this.code}: ${where ? `${where}: ` : ''}${this.message} — ${this.hint}`;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      side: this.side,
      object: this.object,
      sqlstate: this.sqlstate,
      hint: this.hint,
    };
  }
}

/** Scrubs passwords out of anything that looks like a connection URL or a password=... keyword. */
export function redact(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
    .replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
}

export function isPgferryError(err: unknown): err is PgferryError {
  return err instanceof PgferryError;
}

/** SQLSTATE of a node-postgres error, if any. */
export function sqlstateOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; syscall?: unknown; errno?: unknown } | null;
  // Node's socket errors carry a code too, and EPIPE looks like a SQLSTATE: they have a syscall.
  if (e && (e.syscall !== undefined || typeof e.errno === 'number')) return undefined;
  const code = e?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The SQLSTATE behind any error: a pgferry error's recorded one, or a node-postgres error's. */
export function stateOf(err: unknown): string | undefined {
  return isPgferryError(err) ? err.sqlstate : sqlstateOf(err);
}

export const ERROR_CLASSES = ['retry', 'pause', 'fail'] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

/**
 * Decides what to do about any error: retry it (connection loss, serialization failure, deadlock,
 * lock timeout), pause (the schema changed under us: 42xxx), or fail. SQLSTATE decides, never text.
 */
export function classify(err: unknown): ErrorClass {
  if (isPgferryError(err) && err.sqlstate === undefined) return err.retryable ? 'retry' : 'fail';
  const state = stateOf(err);
  if (state === undefined) {
    const sysCode = (err as { code?: unknown } | null)?.code;
    return sysCode === 'ECONNRESET' || sysCode === 'ECONNREFUSED' || sysCode === 'EPIPE' ? 'retry' : 'fail';
  }
  if (state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03') return 'retry';
  if (state === '40001' || state === '40P01' || state === '55P03') return 'retry';
  if (state.startsWith('42')) return 'pause';
  return 'fail';
}

/**
 * The fix for a value one side cannot take: 22021 (bytes not valid in the encoding, as a SQL_ASCII
 * source sends them) and 22P05 (a character the target's encoding lacks). Running again meets the
 * same value, so the generic "run again" hint would loop.
 */
export function dataHint(sqlstate: string | undefined): string | undefined {
  if (sqlstate !== '22021' && sqlstate !== '22P05') return undefined;
  return "A text value is not valid in, or cannot be converted to, the other database's encoding (the message names the bytes); running again fails the same way. Fix or remove the value on the source, or create the target database with an encoding that holds it; `pgferry preflight` shows both databases' encodings.";
}

/** Wraps a database error with the side and object it concerns. */
export function dbError(side: 'source' | 'target', err: unknown, object?: string): PgferryError {
  if (isPgferryError(err)) return err;
  const e = err as { message?: string; code?: string; detail?: string };
  const sqlstate = sqlstateOf(err);
  const connLost = sqlstate?.startsWith('08') || (!sqlstate && typeof e?.code === 'string');
  const code: ErrorCode = connLost
    ? side === 'source'
      ? 'PGFERRY_SOURCE_CONNECT'
      : 'PGFERRY_TARGET_CONNECT'
    : side === 'source'
      ? 'PGFERRY_SOURCE_QUERY'
      : 'PGFERRY_TARGET_QUERY';
  const msg = `${e?.message ?? String(err)}${sqlstate ? ` (SQLSTATE ${sqlstate})` : ''}`;
  return new PgferryError(code, msg, { side, object, sqlstate, hint: dataHint(sqlstate), cause: err });
}
