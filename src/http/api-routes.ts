// Every route of the HTTP API, as data: server.ts registers exactly these (one handler per
// operationId), and openapi.ts documents exactly these, with the schemas they answer with.
import type { z } from 'zod';
import {
  ErrorBody,
  Health,
  OperationAnswer,
  PauseAnswer,
  Readiness,
  ResumeAnswer,
  Status,
  Tables,
  TablesRequestAnswer,
} from './api-schemas.js';
import { CutoverBody, PauseBody, ResumeBody, TablesBody, VerifyBody } from './request-bodies.js';

export interface ApiResponse {
  description: string;
  /** A JSON answer's schema; or the media type of an answer that is not JSON. */
  schema?: z.ZodType;
  mediaType?: 'text/html' | 'text/plain' | 'application/json';
  /** Response headers, by name: their description. */
  headers?: Record<string, string>;
}

export interface ApiRoute {
  method: 'GET' | 'POST';
  /** Fastify's spelling: `:name` for a path parameter. */
  url: string;
  operationId: string;
  summary: string;
  /** Needs `Authorization: Bearer <PGFERRY_API_TOKEN>`. */
  token: boolean;
  body?: z.ZodType;
  responses: Record<string, ApiResponse>;
}

const error = (description: string): ApiResponse => ({ description, schema: ErrorBody });

/** What any call can answer when the API is bound to loopback and the Host header names elsewhere. */
const misdirected = {
  '421': error('the Host header is not this loopback address (PGFERRY_API_MISDIRECTED)'),
};

const tokenErrors = {
  '401': error('missing or wrong bearer token (PGFERRY_API_UNAUTHORIZED)'),
  '403': error('the daemon was started without PGFERRY_API_TOKEN (PGFERRY_API_FORBIDDEN)'),
};

const controlErrors = {
  '400': error('the body failed validation (PGFERRY_CONFIG_INVALID)'),
  ...tokenErrors,
  '409': error(
    'not possible in the current phase, or another cutover or verification runs (PGFERRY_API_CONFLICT, PGFERRY_CUTOVER_REFUSED)',
  ),
  '500': error('the call failed; the code says which side'),
};

const accepted: ApiResponse = {
  description: 'started: the operation, to follow in /status or at its Location',
  schema: OperationAnswer,
  headers: { Location: 'The URL of the operation (GET, with the token)' },
};

export const API_ROUTES = [
  {
    method: 'GET',
    url: '/',
    operationId: 'getStatusPage',
    summary: 'The live status page (HTML; polls /status, drives the control calls)',
    token: false,
    responses: { '200': { description: 'HTML', mediaType: 'text/html' } },
  },
  {
    method: 'GET',
    url: '/openapi.json',
    operationId: 'getOpenApi',
    summary: 'This document',
    token: false,
    responses: { '200': { description: 'OpenAPI 3.1 document', mediaType: 'application/json' } },
  },
  {
    method: 'GET',
    url: '/healthz',
    operationId: 'getHealth',
    summary: 'Liveness: the process is up',
    token: false,
    responses: { '200': { description: 'up', schema: Health } },
  },
  {
    method: 'GET',
    url: '/readyz',
    operationId: 'getReadiness',
    summary: 'Readiness: both databases answer SELECT 1',
    token: false,
    responses: {
      '200': { description: 'both sides reachable', schema: Readiness },
      '503': { description: 'a side is unreachable', schema: Readiness },
    },
  },
  {
    method: 'GET',
    url: '/status',
    operationId: 'getStatus',
    summary: 'Phase, lag, backlog, copy progress and pace, servers, outages, events, operations',
    token: false,
    responses: { '200': { description: 'status', schema: Status } },
  },
  {
    method: 'GET',
    url: '/tables',
    operationId: 'getTables',
    summary: 'Per-table copy progress',
    token: false,
    responses: { '200': { description: 'tables', schema: Tables } },
  },
  {
    method: 'GET',
    url: '/metrics',
    operationId: 'getMetrics',
    summary: 'Prometheus metrics',
    token: false,
    responses: { '200': { description: 'Prometheus text format', mediaType: 'text/plain' } },
  },
  {
    method: 'GET',
    url: '/operations/:id',
    operationId: 'getOperation',
    summary: 'One cutover or verification started through the API, with its whole result',
    token: true,
    responses: {
      '200': { description: 'the operation', schema: OperationAnswer },
      ...tokenErrors,
      '404': error('no such operation (PGFERRY_API_NOT_FOUND)'),
    },
  },
  {
    method: 'POST',
    url: '/pause',
    operationId: 'pause',
    summary: 'Stop replay between batches (capture keeps recording); survives a restart',
    token: true,
    body: PauseBody,
    responses: { '200': { description: 'paused', schema: PauseAnswer }, ...controlErrors },
  },
  {
    method: 'POST',
    url: '/resume',
    operationId: 'resume',
    summary: 'Resume replay',
    token: true,
    body: ResumeBody,
    responses: { '200': { description: 'resumed', schema: ResumeAnswer }, ...controlErrors },
  },
  {
    method: 'POST',
    url: '/cutover',
    operationId: 'cutover',
    summary:
      "Start the cutover with the daemon's replay; answers 202 at once, the outcome is in the operation. Unset fields take the daemon's flags",
    token: true,
    body: CutoverBody,
    responses: { '202': accepted, ...controlErrors },
  },
  {
    method: 'POST',
    url: '/rollback',
    operationId: 'rollback',
    summary:
      "The cutover in reverse, with the daemon's reverse replication: freeze the new side, drain, sequences, verify, give the old source its writes back; answers 202 at once, the outcome is in the operation. Unset fields take the daemon's flags (--freeze revoke is refused)",
    token: true,
    body: CutoverBody,
    responses: { '202': accepted, ...controlErrors },
  },
  {
    method: 'POST',
    url: '/tables',
    operationId: 'requestTables',
    summary:
      'Ask the running migration to take a table in (add: capture, copy, then replay, beside the other tables) or to stop replicating one (remove); answers 202 with the request, whose progress is in /status (tableRequests)',
    token: true,
    body: TablesBody,
    responses: { '202': { description: 'request recorded', schema: TablesRequestAnswer }, ...controlErrors },
  },
  {
    method: 'POST',
    url: '/verify',
    operationId: 'verify',
    summary:
      'Start comparing source and target (counts, or checksums) at a drained point of replay; answers 202 at once, the report is in the operation',
    token: true,
    body: VerifyBody,
    responses: { '202': accepted, ...controlErrors },
  },
] as const satisfies readonly ApiRoute[];

export type OperationId = (typeof API_ROUTES)[number]['operationId'];

/** Every route answers 421 to a misdirected Host while bound to loopback, and 500 on a failure. */
export const COMMON_RESPONSES = {
  ...misdirected,
  '500': error('the call failed; the code says which side'),
};
