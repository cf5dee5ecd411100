// The daemon's HTTP API (`migrate --http HOST:PORT`): status, tables, Prometheus metrics, health
// and readiness for anyone who can reach the port; pause, resume, cutover and verify (the last two
// as operations: 202 at once, see operations.ts) only with `Authorization: Bearer
// <PGFERRY_API_TOKEN>`. The routes are those of api-routes.ts, one handler per operationId. Bound
// to loopback, every request must name that loopback address in its Host header. Every error is
// JSON `{ error: { code, message, … } }` with the HTTP status of its code in the registry
// (lib/error-codes.ts). Here: the Fastify app (its error answers, the checks of access.ts, the
// routes with their handlers from route-handlers.ts) and listening; src/http/ may import engine/,
// checkpoints/ and lib/, and the rest of src/ (commands' status report, config, metrics).
import Fastify, { type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { CutoverSettings } from '../../engine/cutover/cutover.js';
import type { RunControl } from '../../engine/run/control.js';
import type { ConnInfo } from '../../engine/shared/conn-info.js';
import type { TableFilter } from '../../engine/shared/table-filter.js';
import { isPgferryError, PgferryError, redact } from '../../lib/errors.js';
import { isLoopback } from '../config.js';
import type { Metrics } from '../metrics.js';
import { authorize, checkHost, type Listening } from './access.js';
import { API_ROUTES } from './api-routes.js';
import { Operations } from './operations.js';
import { routeHandlers } from './route-handlers.js';

export interface ApiServerOptions {
  host: string;
  port: number;
  /** PGFERRY_API_TOKEN; without one every control call is refused. */
  token: string | null;
  control: RunControl;
  metrics: Metrics;
  source: ConnInfo;
  target: ConnInfo;
  filter: TableFilter;
  jobs: number;
  /** The daemon's cutover flags; a POST /cutover body overrides them one by one. */
  cutoverDefaults: CutoverSettings;
  log: Logger;
}

export interface ApiServer {
  /** host:port actually bound. */
  readonly address: string;
  close(): Promise<void>;
}

/** Errors a client caused (bad body, no token, no route): answered, not counted as run errors. */
const CLIENT_CODES = new Set([
  'PGFERRY_CONFIG_INVALID',
  'PGFERRY_API_UNAUTHORIZED',
  'PGFERRY_API_FORBIDDEN',
  'PGFERRY_API_NOT_FOUND',
  'PGFERRY_API_CONFLICT',
  'PGFERRY_API_MISDIRECTED',
]);

/** The routes, without listening: startApiServer binds it; the OpenAPI test lists its routes. */
export function buildApiApp(opts: Omit<ApiServerOptions, 'host' | 'port'>, listening?: Listening) {
  const { metrics, log } = opts;
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  const routes: { method: string; url: string }[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat())
      if (method !== 'HEAD') routes.push({ method, url: route.url });
  });

  const sendError = (reply: FastifyReply, err: PgferryError) => {
    if (!CLIENT_CODES.has(err.code)) metrics.error(err.code);
    if (err.httpStatus === 401) reply.header('www-authenticate', 'Bearer realm="pgferry"');
    return reply.code(err.httpStatus).send({ error: err.toJSON() });
  };

  app.setErrorHandler((err, req, reply) => {
    if (isPgferryError(err)) {
      if (err.httpStatus >= 500) log.error({ route: req.url, err: err.oneLine() }, 'API call failed');
      return sendError(reply, err);
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Fastify's own client errors: malformed JSON, an unsupported content type, a body too large.
      return sendError(
        reply,
        new PgferryError('PGFERRY_CONFIG_INVALID', `invalid request: ${(err as Error).message}`, {
          side: 'config',
        }),
      );
    }
    const message = redact(err instanceof Error ? err.message : String(err));
    log.error({ route: req.url, err: message }, 'API call failed');
    return sendError(reply, new PgferryError('PGFERRY_INTERNAL_ERROR', message));
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(
      reply,
      new PgferryError('PGFERRY_API_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`),
    ),
  );

  if (listening && isLoopback(listening.host)) app.addHook('onRequest', checkHost(listening));

  const operations = new Operations((err) => {
    if (!CLIENT_CODES.has(err.code)) metrics.error(err.code);
  });

  const handlers = routeHandlers(opts, operations);
  const authorizeControl = authorize(opts.token);

  for (const route of API_ROUTES) {
    app.route({
      method: route.method,
      url: route.url,
      preHandler: route.token ? authorizeControl : undefined,
      handler: handlers[route.operationId],
    });
  }

  return { app, routes };
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  let port = opts.port;
  const { app } = buildApiApp(opts, { host: opts.host, port: () => port });
  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await app.close().catch(() => {});
    throw new PgferryError(
      'PGFERRY_CONFIG_INVALID',
      `--http cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`,
      { side: 'config', cause: err },
    );
  }
  const bound = app.server.address();
  if (typeof bound === 'object' && bound) port = bound.port;
  const address =
    typeof bound === 'object' && bound
      ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
      : `${opts.host}:${opts.port}`;
  return { address, close: () => app.close() };
}
