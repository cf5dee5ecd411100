// The daemon's HTTP API (`migrate --http HOST:PORT`): status, tables, Prometheus metrics, health
// and readiness for anyone who can reach the port; pause, resume, cutover and verify only with
// `Authorization: Bearer <PGFERRY_API_TOKEN>`. Every error is JSON `{ error: { code, message, … } }`
// with the HTTP status of its code in the registry (engine/errors.ts).
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { ConnInfo } from '../../engine/conn-info.js';
import type { CutoverSettings } from '../../engine/cutover.js';
import { connect } from '../../engine/db.js';
import { isPgferryError, PgferryError, redact } from '../../engine/errors.js';
import type { RunControl } from '../../engine/run-control.js';
import { ExportedSnapshot } from '../../engine/snapshot.js';
import type { TableFilter } from '../../engine/table-filter.js';
import { verify } from '../../engine/verify.js';
import { statusOf } from '../commands/status.js';
import type { Metrics } from '../metrics.js';
import { openApiDocument } from './openapi.js';
import { CutoverBody, PauseBody, ResumeBody, VerifyBody } from './request-bodies.js';
import { statusPageCsp, statusPageHtml } from './status-page.js';

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
]);

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new PgferryError('PGFERRY_CONFIG_INVALID', `invalid request body: ${problems.join('; ')}`, {
      side: 'config',
    });
  }
  return parsed.data;
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Compares the bearer token in constant time (both sides hashed to equal-length buffers). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** SELECT 1 on one side, within a few seconds. */
async function ping(conn: ConnInfo): Promise<{ ok: true } | { ok: false; error: Record<string, unknown> }> {
  try {
    const client = await connect(conn, 'control', { connectTimeoutMs: 3_000 });
    try {
      await client.query('SELECT 1');
      return { ok: true };
    } finally {
      await client.end().catch(() => {});
    }
  } catch (err) {
    const e = isPgferryError(err)
      ? err
      : new PgferryError('PGFERRY_INTERNAL_ERROR', String((err as Error)?.message ?? err));
    return { ok: false, error: { code: e.code, message: e.message } };
  }
}

/** The routes, without listening: startApiServer binds it; the OpenAPI test lists its routes. */
export function buildApiApp(opts: Omit<ApiServerOptions, 'host' | 'port'>) {
  const { control, metrics, log } = opts;
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

  // Control calls: a configured token, presented as a bearer token.
  const authorize = async (req: FastifyRequest) => {
    if (opts.token === null) {
      throw new PgferryError(
        'PGFERRY_API_FORBIDDEN',
        'control calls are disabled: the daemon was started without PGFERRY_API_TOKEN',
        { side: 'config' },
      );
    }
    if (!bearerMatches(req.headers.authorization, opts.token)) {
      throw new PgferryError('PGFERRY_API_UNAUTHORIZED', 'missing or wrong bearer token', {
        side: 'config',
      });
    }
  };
  const status = () => {
    const report = control.read(statusOf);
    if (!report) {
      return {
        phase: 'preflight',
        pauseReason: null,
        lagSeconds: null,
        backlog: null,
        changesPerSec: null,
        replay: null,
        copy: null,
        tables: [],
        events: [],
        outage: null,
        interruptedCutover: null,
      };
    }
    return {
      ...report,
      phase: report.phase ?? 'preflight',
      changesPerSec: report.replay?.changesPerSec ?? null,
    };
  };

  app.get('/', async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', statusPageCsp)
      .header('cache-control', 'no-store')
      .send(statusPageHtml),
  );
  app.get('/openapi.json', async () => openApiDocument);
  app.get('/healthz', async () => ({ ok: true }));

  // Concurrent probes share one check: bounded connections to production.
  let readiness: Promise<{ ok: boolean; source: unknown; target: unknown }> | null = null;
  app.get('/readyz', async (_req, reply) => {
    readiness ??= Promise.all([ping(opts.source), ping(opts.target)])
      .then(([source, target]) => ({ ok: source.ok && target.ok, source, target }))
      .finally(() => {
        readiness = null;
      });
    const result = await readiness;
    return reply.code(result.ok ? 200 : 503).send(result);
  });

  app.get('/status', async () => status());
  app.get('/tables', async () => ({ tables: status().tables }));
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  app.post('/pause', { preHandler: authorize }, async (req) => {
    const body = parseBody(PauseBody, req.body);
    const result = control.pause(body.reason ?? 'paused through the API');
    log.warn({ reason: result.pauseReason, from: req.ip }, 'API: replay paused');
    return { ok: true, ...result };
  });

  app.post('/resume', { preHandler: authorize }, async (req) => {
    parseBody(ResumeBody, req.body);
    const result = control.resume();
    log.info({ from: req.ip }, 'API: replay resumed');
    return { ok: true, ...result };
  });

  app.post('/cutover', { preHandler: authorize }, async (req) => {
    const body = parseBody(CutoverBody, req.body);
    const d = opts.cutoverDefaults;
    const settings: CutoverSettings = {
      freeze: body.freeze ?? d.freeze,
      maxLagSeconds: body.maxLagSeconds ?? d.maxLagSeconds,
      force: body.force ?? d.force,
      verify: body.verify ?? d.verify,
      settleMs: body.settleSeconds === undefined ? d.settleMs : body.settleSeconds * 1000,
    };
    log.info({ ...settings, from: req.ip }, 'API: cutover requested');
    const result = await control.requestCutover(settings);
    return { ok: true, ...result };
  });

  let verifying = false;
  app.post('/verify', { preHandler: authorize }, async (req) => {
    const body = parseBody(VerifyBody, req.body);
    if (verifying) {
      throw new PgferryError('PGFERRY_API_CONFLICT', 'a verification is already running', { side: 'state' });
    }
    verifying = true;
    try {
      log.info({ checksums: body.checksums ?? false, from: req.ip }, 'API: verify');
      const settings = {
        source: opts.source,
        target: opts.target,
        filter: opts.filter,
        checksums: body.checksums ?? false,
        jobs: Math.min(opts.jobs, 4),
      };
      // While replicating: replay stops, every change visible in a fresh source snapshot is
      // applied, and the source is read in that snapshot: a drained point, however busy the source.
      const consistent = opts.control.runInLoop(async (replayer) => {
        const snapshot = await ExportedSnapshot.take(opts.source);
        try {
          await replayer.drainAt(snapshot.id);
          return await verify({ ...settings, sourceSnapshot: snapshot.id });
        } finally {
          await snapshot.release();
        }
      });
      return await (consistent ?? verify(settings));
    } finally {
      verifying = false;
    }
  });

  return { app, routes };
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { app } = buildApiApp(opts);
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
  const address =
    typeof bound === 'object' && bound
      ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
      : `${opts.host}:${opts.port}`;
  return { address, close: () => app.close() };
}
