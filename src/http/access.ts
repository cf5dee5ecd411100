// Who may call what: bound to loopback, every request must name that loopback listener in its Host
// header (the defence against DNS rebinding); control calls need the bearer token the daemon was
// started with. server.ts installs these as hooks.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { PgferryError } from '../../lib/errors.js';
import { isLoopback } from '../config.js';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Compares the bearer token in constant time (both sides hashed to equal-length buffers). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** The address the API listens on, when it is bound: a loopback one makes every route check Host. */
export interface Listening {
  host: string;
  /** The port actually bound (known once listening). */
  port: () => number;
}

/**
 * Whether a Host header names this loopback listener: a loopback name or address with the bound
 * port. A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) sends its
 * own name here, and is refused.
 */
export function hostMatches(header: string | undefined, port: number): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(header ?? '');
  if (!m) return false;
  const name = m[1]!.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return isLoopback(name) && Number(m[2] ?? '80') === port;
}

/** The onRequest hook of a loopback listener: refuses a request whose Host names anything else. */
export function checkHost(listening: Listening) {
  return async (req: FastifyRequest) => {
    if (!hostMatches(req.headers.host, listening.port())) {
      throw new PgferryError(
        'PGFERRY_API_MISDIRECTED',
        `this API answers requests for 127.0.0.1, [::1] or localhost on port ${listening.port()}, not for "${String(req.headers.host ?? '').slice(0, 100)}"`,
        { side: 'config' },
      );
    }
  };
}

/** The preHandler of control calls: a configured token, presented as a bearer token. */
export function authorize(token: string | null) {
  return async (req: FastifyRequest) => {
    if (token === null) {
      throw new PgferryError(
        'PGFERRY_API_FORBIDDEN',
        'control calls are disabled: the daemon was started without PGFERRY_API_TOKEN',
        { side: 'config' },
      );
    }
    if (!bearerMatches(req.headers.authorization, token)) {
      throw new PgferryError('PGFERRY_API_UNAUTHORIZED', 'missing or wrong bearer token', {
        side: 'config',
      });
    }
  };
}
