// The shapes the HTTP API answers with, as zod schemas: server.ts builds its answers typed by them,
// openapi.ts turns them (and the request bodies) into the document's components, and the tests
// parse real answers with them. Each has an id in API_SCHEMAS: the component's name.

import { z } from 'zod';
import { PHASES } from '../../checkpoints/store.js';
import { REQUEST_STATES, TABLE_ACTIONS } from '../../checkpoints/table-requests.js';
import { FREEZE_METHODS } from '../../engine/cutover/freeze.js';
import { CUTOVER_STEPS } from '../../engine/cutover/freeze-record.js';
import { DRIFT_KINDS } from '../../engine/drift/compare.js';
import { SIDES } from '../../lib/errors.js';
import { count, dateTime, nullableNumber, ReplayFigures } from './api-schema-parts.js';
import { ReverseStatus, RollbackResult } from './api-schemas-reverse.js';
import { CutoverBody, PauseBody, ResumeBody, TablesBody, VerifyBody } from './request-bodies.js';

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().regex(/^PGFERRY_[A-Z_]+$/),
      message: z.string(),
      side: z.enum(SIDES).optional(),
      object: z.string().optional(),
      sqlstate: z.string().optional(),
      hint: z.string().optional(),
    }),
  })
  .meta({ description: 'Every error: the code (docs/errors.md), the side and object it concerns, a hint' });

export const CutoverResult = z.object({
  downtimeSeconds: z.number().nonnegative(),
  freeze: z.enum(FREEZE_METHODS),
  changesDrained: count(),
  sequences: count(),
  materializedViews: count(),
  deferredObjects: count(),
  foreignKeysValidated: count(),
  frozenAt: dateTime().meta({ description: 'When writes were frozen on the source' }),
  sessionsEnded: count().meta({
    description: 'Sessions ended on the source so that nothing could still write',
  }),
  verify: z
    .object({
      checksums: z.boolean(),
      equal: z.boolean(),
      tables: count(),
      counted: count().meta({
        description:
          "Tables counted (or hashed) on both sides after the drain; the others were proven by the row count changes kept since the cutover's verified point",
      }),
    })
    .nullable()
    .meta({ description: 'The verification before the target was declared ready' }),
  steps: z
    .array(z.object({ step: z.enum(CUTOVER_STEPS), at: dateTime() }))
    .meta({ description: 'The steps this cutover completed, each with its time' }),
  completedInterrupted: z.boolean().meta({ description: 'An interrupted cutover was completed' }),
});

export const VerifyReport = z.object({
  equal: z.boolean(),
  checksums: z.boolean(),
  tables: z.array(
    z.object({
      table: z.string(),
      equal: z.boolean(),
      sourceRows: count(),
      targetRows: count(),
      rangesChecked: count().optional(),
      rangesDiffering: count().optional(),
      differences: z
        .array(
          z.object({
            key: z.record(z.string(), z.string()),
            kind: z.enum(['missing-on-target', 'extra-on-target', 'different']),
          }),
        )
        .optional()
        .meta({
          description: 'The keys that differ (not in /status, which anyone who reaches the port reads)',
        }),
      moreDifferences: count().optional(),
      note: z.string().optional(),
    }),
  ),
});

export const OPERATION_KINDS = ['cutover', 'verify', 'rollback'] as const;
export const OPERATION_STATES = ['running', 'succeeded', 'failed'] as const;

export const Operation = z
  .object({
    id: z.string(),
    kind: z.enum(OPERATION_KINDS),
    state: z.enum(OPERATION_STATES),
    startedAt: dateTime(),
    finishedAt: dateTime().nullable(),
    progress: z.string().nullable().meta({ description: 'What the operation is doing now, while it runs' }),
    result: z.union([CutoverResult, VerifyReport, RollbackResult]).nullable(),
    error: ErrorBody.shape.error.nullable(),
  })
  .meta({
    description:
      'A long control call (cutover, verify, rollback) started by a POST that answered 202; `succeeded` means it ran to its end (a verify that found differences succeeded, with `result.equal` false)',
  });

export const OperationAnswer = z.object({ operation: Operation });

const Event = z.object({
  at: dateTime(),
  level: z.enum(['info', 'warn', 'error']),
  phase: z.string().nullable(),
  message: z.string(),
});

const Server = z.object({
  host: z.string(),
  port: z.number().int(),
  database: z.string(),
  systemIdentifier: z.string().nullable(),
  databaseOid: z.number().int(),
  databaseName: z.string(),
});

const Outage = z.object({
  side: z.enum(['source', 'target']),
  since: dateTime(),
  attempts: count(),
  lastError: z.string(),
});

export const TableProgress = z.object({
  table: z.string(),
  rowsEstimate: z.number(),
  rowsCopied: count(),
  bytesCopied: count(),
  chunksDone: count(),
  chunksTotal: count(),
  format: z.enum(['binary', 'text']),
  percent: z.number(),
});

export const TableRequest = z
  .object({
    id: count(),
    action: z.enum(TABLE_ACTIONS),
    pattern: z.string(),
    state: z.enum(REQUEST_STATES),
    tables: z.array(z.string()).meta({ description: 'The tables it concerns, once matched' }),
    step: z.string().nullable().meta({ description: 'What it is doing, or what it did once done' }),
    detail: z.record(z.string(), z.unknown()),
    error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }).nullable(),
    requestedAt: dateTime(),
    updatedAt: dateTime(),
  })
  .meta({ description: 'A table joining (add) or leaving (remove) the running migration' });

export const TablesRequestAnswer = z.object({ ok: z.literal(true), request: TableRequest });

export const Status = z.object({
  state: z.string().nullable().meta({ description: 'The state file; null before it exists' }),
  phase: z.enum(PHASES),
  pauseReason: z.string().nullable(),
  lagSeconds: nullableNumber(),
  backlog: nullableNumber(),
  changesPerSec: nullableNumber(),
  replay: ReplayFigures.nullable(),
  setup: z
    .object({
      runId: z.string(),
      mode: z.enum(['copy-only', 'replicate']),
      capture: z.enum(['triggers', 'bucardo', 'logical']).optional(),
      include: z.array(z.string()),
      exclude: z.array(z.string()),
      source: Server,
      target: Server,
    })
    .nullable()
    .meta({ description: "The run's setup once bound: which servers (never a user or password), filters" }),
  phases: z.array(z.object({ name: z.string(), startedAt: dateTime(), finishedAt: dateTime().nullable() })),
  copy: z
    .object({
      rows: count(),
      bytes: count(),
      chunksDone: count(),
      chunksTotal: count(),
      percent: z.number(),
      rate: z
        .object({
          rowsPerSec: z.number(),
          bytesPerSec: z.number(),
          etaSeconds: nullableNumber(),
          at: dateTime(),
        })
        .nullable(),
    })
    .nullable(),
  tables: z.array(TableProgress),
  events: z.array(Event).meta({ description: 'The newest events, oldest first' }),
  problems: z.array(Event).meta({ description: 'The newest warnings and errors, oldest first' }),
  cutoverDowntimeSeconds: nullableNumber(),
  drift: z
    .object({
      since: dateTime(),
      checkedAt: dateTime(),
      accepted: z.boolean(),
      differences: z.array(
        z.object({
          table: z.string(),
          kind: z.enum(DRIFT_KINDS),
          column: z.string().optional(),
          partition: z.string().optional(),
          source: z.string().nullable(),
          target: z.string().nullable(),
          message: z.string(),
          additive: z.boolean(),
        }),
      ),
    })
    .nullable()
    .optional()
    .meta({
      description:
        'Schema drift: the replicated tables whose shape differs between the sides, each difference with both sides; replay is paused (pauseReason "drift") until the target matches, unless accepted by a resume',
    }),
  newTables: z
    .array(z.object({ table: z.string(), seenAt: dateTime() }))
    .optional()
    .meta({
      description:
        "Tables on the source that the run's patterns take in and that it does not replicate (created since the run started): `pgferry tables add` or POST /tables adds one",
    }),
  tableRequests: z.array(TableRequest).optional().meta({
    description: 'The newest requests for tables to join or leave the run, oldest first',
  }),
  outage: z.object({ source: Outage.nullable(), target: Outage.nullable() }).nullable().meta({
    description:
      'While a server is unreachable and pgferry retries it (--retry-for): per side, since when, the attempts so far and the last error; null when both answer',
  }),
  interruptedCutover: z
    .object({
      freeze: z.enum(FREEZE_METHODS),
      since: dateTime(),
      lastStep: z.string(),
      at: dateTime(),
      grantsRevoked: count(),
      message: z.string(),
      next: z.string(),
    })
    .nullable()
    .meta({
      description:
        'A cutover that froze writes on the source and has not finished (a crash): complete it with `pgferry cutover`, undo it with `pgferry cutover --abort`',
    }),
  reverse: ReverseStatus,
  operations: z.array(Operation).meta({
    description: 'The running and recent cutovers and verifications started through the API, newest first',
  }),
});

export const Tables = z.object({ tables: z.array(TableProgress) });
export const Health = z.object({ ok: z.literal(true) });

const Ping = z.union([
  z.object({ ok: z.literal(true) }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string() }) }),
]);
export const Readiness = z.object({ ok: z.boolean(), source: Ping, target: Ping });

export const PauseAnswer = z.object({ ok: z.literal(true), phase: z.enum(PHASES), pauseReason: z.string() });
export const ResumeAnswer = z.object({ ok: z.literal(true), phase: z.enum(PHASES), pauseReason: z.null() });

/** Every schema the document names, by its component name. */
export const API_SCHEMAS = {
  Error: ErrorBody,
  Status,
  TableProgress,
  Tables,
  Health,
  Readiness,
  Operation,
  OperationAnswer,
  CutoverResult,
  RollbackResult,
  VerifyReport,
  PauseAnswer,
  ResumeAnswer,
  TableRequest,
  TablesRequestAnswer,
  TablesBody,
  PauseBody,
  ResumeBody,
  CutoverBody,
  VerifyBody,
} as const;
