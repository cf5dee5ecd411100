// The API's route handlers, one per operationId of api-routes.ts: the read-only answers (status,
// tables, metrics, health, readiness, the page and the OpenAPI document) and the control calls
// (pause and resume at once; cutover and verify as operations, answered 202).
import type { FastifyReply, RouteHandlerMethod } from 'fastify';
import type { z } from 'zod';
import type { ServerIdentity } from '../../checkpoints/store.js';
import { ExportedSnapshot } from '../../engine/copy/snapshot.js';
import type { CutoverSettings } from '../../engine/cutover/cutover.js';
import { readCutoverRecord } from '../../engine/cutover/freeze-record.js';
import type { RollbackSettings } from '../../engine/reverse/rollback.js';
import { readRollbackRecord } from '../../engine/reverse/state.js';
import type { ConnInfo } from '../../engine/shared/conn-info.js';
import { connect } from '../../engine/shared/db.js';
import { type VerifyProgress, verify } from '../../engine/verify/verify.js';
import { isPgferryError, PgferryError } from '../../lib/errors.js';
import { statusOf } from '../commands/status.js';
import type { OperationId } from './api-routes.js';
import type {
  Health,
  OperationAnswer,
  PauseAnswer,
  Readiness,
  ResumeAnswer,
  Status,
  Tables,
  TablesRequestAnswer,
} from './api-schemas.js';
import { openApiDocument } from './openapi.js';
import type { Operations, OperationView } from './operations.js';
import { CutoverBody, PauseBody, ResumeBody, TablesBody, VerifyBody } from './request-bodies.js';
import type { ApiServerOptions } from './server.js';
import { statusPageCsp, statusPageHtml } from './status-page.js';

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

/** Verify reports in /status, which anyone who reaches the port reads, leave out the differing keys. */
function withoutKeys(op: OperationView): OperationView {
  if (op.kind !== 'verify' || !op.result || !('tables' in op.result)) return op;
  return {
    ...op,
    result: { ...op.result, tables: op.result.tables.map(({ differences: _, ...t }) => t) },
  };
}

type StatusAnswer = z.input<typeof Status>;

/**
 * Errors name a server as `user@host:port/db` (in events, problems, an outage's last error): the
 * answer anyone who reaches the port reads keeps the host and drops the login.
 */
function withoutLogins(answer: StatusAnswer, users: string[]): StatusAnswer {
  let text = JSON.stringify(answer);
  for (const user of new Set(users.filter(Boolean))) {
    text = text.split(`${JSON.stringify(user).slice(1, -1)}@`).join('');
  }
  return JSON.parse(text) as StatusAnswer;
}

/** The handlers of every route, bound to the run's control and the server's operations. */
export function routeHandlers(
  opts: Omit<ApiServerOptions, 'host' | 'port'>,
  operations: Operations,
): Record<OperationId, RouteHandlerMethod> {
  const { control, metrics, log } = opts;

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
        newTables: [],
        tableRequests: [],
        operations: ops,
      };
    }
    // The servers by address only: /status is open to anyone who reaches the port.
    const server = ({ user: _, ...s }: ServerIdentity) => s;
    return withoutLogins(
      {
        ...report,
        phase: report.phase ?? 'preflight',
        setup: report.setup && {
          ...report.setup,
          source: server(report.setup.source),
          target: server(report.setup.target),
        },
        changesPerSec: report.replay?.changesPerSec ?? null,
        operations: ops,
      },
      report.setup ? [report.setup.source.user, report.setup.target.user] : [],
    );
  };

  // Concurrent probes share one check: bounded connections to production.
  let readiness: Promise<{ ok: boolean; source: Ping; target: Ping }> | null = null;

  const cutoverProgress = () =>
    control.read((s) => {
      const step = readCutoverRecord(s)?.step;
      return step ? `cutover step done: ${step}` : null;
    });

  return {
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
    requestTables: async (req, reply) => {
      const body = parseBody(TablesBody, req.body);
      const request = control.requestTables(body.action, body.pattern);
      log.info({ action: body.action, pattern: body.pattern, from: req.ip }, 'API: tables request recorded');
      const answer: z.input<typeof TablesRequestAnswer> = { ok: true, request };
      return reply.code(202).send(answer);
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
    rollback: async (req, reply) => {
      const body = parseBody(CutoverBody, req.body);
      const d = opts.cutoverDefaults;
      const settings: RollbackSettings = {
        freeze: body.freeze ?? (d.freeze === 'revoke' ? 'readonly' : d.freeze),
        maxLagSeconds: body.maxLagSeconds ?? d.maxLagSeconds,
        force: body.force ?? d.force,
        verify: body.verify ?? d.verify,
        settleMs: body.settleSeconds === undefined ? d.settleMs : body.settleSeconds * 1000,
      };
      const operation = operations.start(
        'rollback',
        (progress) => {
          progress('waiting for reverse replication to stop between batches');
          return control.requestRollback(settings);
        },
        () =>
          control.read((s) => {
            const step = readRollbackRecord(s)?.step;
            return step ? `rollback step done: ${step}` : null;
          }),
      );
      log.info({ ...settings, operation: operation.id, from: req.ip }, 'API: rollback started');
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
}

function accepted(reply: FastifyReply, operation: OperationView) {
  const answer: z.input<typeof OperationAnswer> = { operation };
  return reply.code(202).header('location', `/operations/${operation.id}`).send(answer);
}
