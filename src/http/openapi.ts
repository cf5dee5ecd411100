// The OpenAPI 3.1 document served at GET /openapi.json. Written by hand except the request bodies,
// which come from the zod schemas server.ts validates with (OpenAPI 3.1 schemas are JSON Schema
// 2020-12, which is what z.toJSONSchema emits). test/unit/openapi.test.ts checks that every route
// server.ts registers is described here.
import { z } from 'zod';
import { CutoverBody, PauseBody, ResumeBody, VerifyBody } from './request-bodies.js';

const bodySchema = (schema: z.ZodType) => {
  const { $schema: _, ...json } = z.toJSONSchema(schema) as Record<string, unknown>;
  return json;
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });
const error = (description: string) => ({ description, content: json(ref('Error')) });
const ok = (description: string, schema: unknown = { type: 'object' }) => ({
  description,
  content: json(schema),
});

/** The answers every control call can give besides its own 200. */
const controlErrors = {
  '400': error('the body failed validation (PGFERRY_CONFIG_INVALID)'),
  '401': error('missing or wrong bearer token (PGFERRY_API_UNAUTHORIZED)'),
  '403': error('the daemon was started without PGFERRY_API_TOKEN (PGFERRY_API_FORBIDDEN)'),
  '409': error('not possible in the current phase (PGFERRY_API_CONFLICT, PGFERRY_CUTOVER_REFUSED)'),
  '500': error('the call failed; the code says which side'),
};

const control = (summary: string, body: z.ZodType, answer: string) => ({
  post: {
    summary,
    security: [{ bearer: [] }],
    requestBody: { required: false, content: json(bodySchema(body)) },
    responses: { '200': ok(answer), ...controlErrors },
  },
});

const phase = {
  type: 'string',
  enum: ['preflight', 'schema', 'copy', 'indexes', 'replicating', 'paused', 'cutover', 'done', 'failed'],
};
const nullableNumber = { type: ['number', 'null'] };

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'pgferry',
    version: '1',
    description:
      'The API of `pgferry migrate --http`. Reads are open to anyone who can reach the port; control ' +
      'calls need `Authorization: Bearer <PGFERRY_API_TOKEN>`. Errors are `{"error": {"code", "message", ...}}` ' +
      'with the HTTP status of the code (docs/errors.md).',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'PGFERRY_API_TOKEN' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string', pattern: '^PGFERRY_[A-Z_]+$' },
              message: { type: 'string' },
              side: { type: ['string', 'null'], enum: ['source', 'target', 'state', 'config', null] },
              object: { type: ['string', 'null'] },
              sqlstate: { type: ['string', 'null'] },
              hint: { type: ['string', 'null'] },
            },
          },
        },
      },
      TableProgress: {
        type: 'object',
        properties: {
          table: { type: 'string' },
          rowsEstimate: { type: 'number' },
          rowsCopied: { type: 'number' },
          bytesCopied: { type: 'number' },
          chunksDone: { type: 'number' },
          chunksTotal: { type: 'number' },
          format: { type: 'string' },
          percent: { type: 'number' },
        },
      },
      Status: {
        type: 'object',
        required: ['phase', 'pauseReason', 'lagSeconds', 'backlog', 'changesPerSec', 'tables', 'events'],
        properties: {
          phase,
          pauseReason: { type: ['string', 'null'] },
          lagSeconds: nullableNumber,
          backlog: nullableNumber,
          changesPerSec: nullableNumber,
          replay: {
            type: ['object', 'null'],
            properties: {
              lagSeconds: { type: 'number' },
              backlog: { type: 'number' },
              changesPerSec: { type: 'number' },
              appliedTotal: { type: 'number' },
              batches: { type: 'number' },
              at: { type: 'string', format: 'date-time' },
              lastBatchAt: { type: ['string', 'null'], format: 'date-time' },
              tableBacklogs: {
                type: 'array',
                description: 'the tables with a backlog, biggest first (at most 50)',
                items: {
                  type: 'object',
                  properties: { table: { type: 'string' }, changes: { type: 'number' } },
                },
              },
            },
          },
          copy: {
            type: ['object', 'null'],
            properties: {
              rows: { type: 'number' },
              bytes: { type: 'number' },
              chunksDone: { type: 'number' },
              chunksTotal: { type: 'number' },
              percent: { type: 'number' },
            },
          },
          tables: { type: 'array', items: ref('TableProgress') },
          phases: { type: 'array', items: { type: 'object' } },
          events: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                at: { type: 'string' },
                level: { type: 'string' },
                phase: { type: ['string', 'null'] },
                message: { type: 'string' },
              },
            },
          },
          outage: {
            type: ['object', 'null'],
            description:
              'While a server is unreachable and pgferry retries it (--retry-for): per side, since when, the attempts so far and the last error; null when both answer',
            properties: Object.fromEntries(
              ['source', 'target'].map((side) => [
                side,
                {
                  type: ['object', 'null'],
                  properties: {
                    side: { type: 'string' },
                    since: { type: 'string', format: 'date-time' },
                    attempts: { type: 'number' },
                    lastError: { type: 'string' },
                  },
                },
              ]),
            ),
          },
          interruptedCutover: {
            type: ['object', 'null'],
            description:
              'A cutover that froze writes on the source and has not finished (a crash): complete it with `pgferry cutover`, undo it with `pgferry cutover --abort`',
            properties: {
              freeze: { type: 'string', enum: ['external', 'revoke', 'readonly'] },
              since: { type: 'string', format: 'date-time' },
              lastStep: { type: 'string' },
              at: { type: 'string', format: 'date-time' },
              grantsRevoked: { type: 'number' },
              message: { type: 'string' },
              next: { type: 'string' },
            },
          },
        },
      },
    },
  },
  paths: {
    '/': {
      get: {
        summary: 'The live status page (HTML; polls /status, drives the control calls)',
        responses: {
          '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } },
        },
      },
    },
    '/openapi.json': {
      get: { summary: 'This document', responses: { '200': ok('OpenAPI 3.1 document') } },
    },
    '/healthz': {
      get: {
        summary: 'Liveness: the process is up',
        responses: { '200': ok('up', { type: 'object', properties: { ok: { const: true } } }) },
      },
    },
    '/readyz': {
      get: {
        summary: 'Readiness: both databases answer SELECT 1',
        responses: {
          '200': ok('both sides reachable'),
          '503': ok('a side is unreachable; per side {ok, error}'),
        },
      },
    },
    '/status': {
      get: {
        summary: 'Phase, lag, backlog, copy progress, recent events',
        responses: { '200': ok('status', ref('Status')) },
      },
    },
    '/tables': {
      get: {
        summary: 'Per-table copy progress',
        responses: {
          '200': ok('tables', {
            type: 'object',
            properties: { tables: { type: 'array', items: ref('TableProgress') } },
          }),
        },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics',
        responses: {
          '200': { description: 'text format', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    '/pause': control(
      'Stop replay between batches (capture keeps recording); survives a restart',
      PauseBody,
      '{ok, phase, pauseReason}',
    ),
    '/resume': control('Resume replay', ResumeBody, '{ok, phase, pauseReason: null}'),
    '/cutover': control(
      "Run the cutover with the daemon's replay; answers when it is over. Unset fields take the daemon's flags",
      CutoverBody,
      '{ok, downtimeSeconds, ...}',
    ),
    '/verify': control(
      'Compare source and target (counts, or checksums)',
      VerifyBody,
      'the verify report: {equal, tables}',
    ),
  },
} as const;
