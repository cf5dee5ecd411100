// The daemon's HTTP API (`migrate --http HOST:PORT`): status, tables, Prometheus metrics, health
// and readiness for anyone who can reach the port; pause, resume, cutover and verify (the last two
// as operations: 202 at once, see operations.ts) only with `Authorization: Bearer
// <PGFERRY_API_TOKEN>`. The routes are those of api-routes.ts, one handler per operationId. Bound
// to loopback, every request must name that loopback address in its Host header. Every error is
// JSON `{ error: { code, message, … } }` with the HTTP status of its code in the registry
// (lib/errors.ts).
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest, type RouteHandlerMethod } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { ServerIdentity } from '../../checkpoints/store.js';
import { ExportedSnapshot } from '../../engine/copy/snapshot.js';
import type { CutoverSettings } from '../../engine/cutover/cutover.js';
import { readCutoverRecord } from '../../engine/cutover/freeze-record.js';
import type { RunControl } from '../../engine/run/control.js';
import type { ConnInfo } from '../../engine/shared/conn-info.js';
import { connect } from '../../engine/shared/db.js';
import type { TableFilter } from '../../engine/shared/table-filter.js';
import { type VerifyProgress, verify } from '../../engine/verify/verify.js';
import { isPgferryError, PgferryError, redact } from '../../lib/errors.js';
import { statusOf } from '../commands/status.js';
import { isLoopback } from '../config.js';
import type { Metrics } from '../metrics.js';
import { API_ROUTES, type OperationId } from './api-routes.js';
import type {
  Health,
  OperationAnswer,
  PauseAnswer,
  Readiness,
  ResumeAnswer,
  Status,
  Tables,
} from './api-schemas.js';
import { openApiDocument } from './openapi.js';
import { Operations, type OperationView } from './operations.js';
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
  'PGFERRY_API_MISDIRECTED',
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

type Ping = z.input<typeof Readiness>['source'];

/** SELECT 1 on one side, within a few seconds. */
async function ping(conn: ConnInfo): Promise<Ping> {
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

/** Verify reports in /status, which anyone who reaches the port reads, leave out the differing keys. */
function withoutKeys(op: OperationView): OperationView {
  if (op.kind !== 'verify' || !op.result || !('tables' in op.result)) return op;
  return {
    ...op,
    result: { ...op.result, tables: op.result.tables.map(({ differences: _, ...t }) => t) },
  };
}

type StatusAnswer = z.input<typeof Status>;

/** The routes, without listening: startApiServer binds it; the OpenAPI test lists its routes. */
export function buildApiApp(opts: Omit<ApiServerOptions, 'host' | 'port'>, listening?: Listening) {
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

  if (listening && isLoopback(listening.host)) {
    app.addHook('onRequest', async (req) => {
      if (!hostMatches(req.headers.host, listening.port())) {
        throw new PgferryError(
          'PGFERRY_API_MISDIRECTED',
          `this API answers requests for 127.0.0.1, [::1] or localhost on port ${listening.port()}, not for "${String(req.headers.host ?? '').slice(0, 100)}"`,
          { side: 'config' },
        );
      }
    });
  }

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

  const operations = new Operations((err) => {
    if (!CLIENT_CODES.has(err.code)) metrics.error(err.code);
  });

  const status = (): StatusAnswer => {
    const report = control.read(statusOf);
    const ops = operations.list().map(withoutKeys);
    if (!report) {
      return {
        state: null,
        phase: 'preflight',
        pauseReason: null,
        lagSeconds: null,
        backlog: null,
        changesPerSec: null,
        replay: null,
        setup: null,
        phases: [],
        copy: null,
        tables: [],
        events: [],
        problems: [],
        cutoverDowntimeSeconds: null,
        outage: null,
        interruptedCutover: null,
        operations: ops,
      };
    }
    // The servers by address only: /status is open to anyone who reaches the port.
    const server = ({ user: _, ...s }: ServerIdentity) => s;
    return {
      ...report,
      phase: report.phase ?? 'preflight',
      setup: report.setup && {
        ...report.setup,
        source: server(report.setup.source),
        target: server(report.setup.target),
      },
      changesPerSec: report.replay?.changesPerSec ?? null,
      operations: ops,
    };
  };

  // Concurrent probes share one check: bounded connections to production.
  let readiness: Promise<{ ok: boolean; source: Ping; target: Ping }> | null = null;

  const cutoverProgress = () =>
    control.read((s) => {
      const step = readCutoverRecord(s)?.step;
      return step ? `cutover step done: ${step}` : null;
    });

  const handlers: Record<OperationId, RouteHandlerMethod> = {
    getStatusPage: async (_req, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', statusPageCsp)
        .header('cache-control', 'no-store')
        .send(statusPageHtml),
    getOpenApi: async () => openApiDocument,
    getHealth: async (): Promise<z.input<typeof Health>> => ({ ok: true }),
    getReadiness: async (_req, reply) => {
      readiness ??= Promise.all([ping(opts.source), ping(opts.target)])
        .then(([source, target]) => ({ ok: source.ok && target.ok, source, target }))
        .finally(() => {
          readiness = null;
        });
      const result: z.input<typeof Readiness> = await readiness;
      return reply.code(result.ok ? 200 : 503).send(result);
    },
    getStatus: async () => status(),
    getTables: async (): Promise<z.input<typeof Tables>> => ({ tables: status().tables }),
    getMetrics: async (_req, reply) => {
      const text = await metrics.text();
      return reply.type(metrics.contentType).send(text);
    },
    getOperation: async (req): Promise<z.input<typeof OperationAnswer>> => {
      const { id } = req.params as { id: string };
      const operation = operations.get(id);
      if (!operation) throw new PgferryError('PGFERRY_API_NOT_FOUND', `no operation ${id.slice(0, 100)}`);
      return { operation };
    },
    pause: async (req): Promise<z.input<typeof PauseAnswer>> => {
      const body = parseBody(PauseBody, req.body);
      const result = control.pause(body.reason ?? 'paused through the API');
      log.warn({ reason: result.pauseReason, from: req.ip }, 'API: replay paused');
      return { ok: true, ...result };
    },
    resume: async (req): Promise<z.input<typeof ResumeAnswer>> => {
      parseBody(ResumeBody, req.body);
      const result = control.resume();
      log.info({ from: req.ip }, 'API: replay resumed');
      return { ok: true, ...result };
    },
    cutover: async (req, reply) => {
      const body = parseBody(CutoverBody, req.body);
      const d = opts.cutoverDefaults;
      const settings: CutoverSettings = {
        freeze: body.freeze ?? d.freeze,
        maxLagSeconds: body.maxLagSeconds ?? d.maxLagSeconds,
        force: body.force ?? d.force,
        verify: body.verify ?? d.verify,
        settleMs: body.settleSeconds === undefined ? d.settleMs : body.settleSeconds * 1000,
      };
      const operation = operations.start(
        'cutover',
        (progress) => {
          progress('waiting for replay to stop between batches');
          return control.requestCutover(settings);
        },
        cutoverProgress,
      );
      log.info({ ...settings, operation: operation.id, from: req.ip }, 'API: cutover started');
      return accepted(reply, operation);
    },
    verify: async (req, reply) => {
      const body = parseBody(VerifyBody, req.body);
      const settings = {
        source: opts.source,
        target: opts.target,
        filter: opts.filter,
        checksums: body.checksums ?? false,
        jobs: Math.min(opts.jobs, 4),
      };
      const operation = operations.start('verify', (progress) => {
        const onProgress = (p: VerifyProgress) => progress(`${p.stage}: ${p.done} of ${p.total}`);
        progress('waiting for replay to stop between batches');
        // While replicating: replay stops, every change visible in a fresh source snapshot is
        // applied, and the source is read in that snapshot: a drained point, however busy the source.
        const consistent = control.runInLoop(async (replayer) => {
          progress('draining replay to a snapshot of the source');
          const snapshot = await ExportedSnapshot.take(opts.source);
          try {
            await replayer.drainAt(snapshot.id);
            return await verify({ ...settings, sourceSnapshot: snapshot.id, onProgress });
          } finally {
            await snapshot.release();
          }
        });
        return consistent ?? verify({ ...settings, onProgress });
      });
      log.info(
        { checksums: settings.checksums, operation: operation.id, from: req.ip },
        'API: verify started',
      );
      return accepted(reply, operation);
    },
  };

  for (const route of API_ROUTES) {
    app.route({
      method: route.method,
      url: route.url,
      preHandler: route.token ? authorize : undefined,
      handler: handlers[route.operationId],
    });
  }

  return { app, routes };
}

function accepted(reply: FastifyReply, operation: OperationView) {
  const answer: z.input<typeof OperationAnswer> = { operation };
  return reply.code(202).header('location', `/operations/${operation.id}`).send(answer);
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
