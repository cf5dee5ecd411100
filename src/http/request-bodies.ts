// The control calls' request bodies, one zod schema each: server.ts validates with them and
// openapi.ts derives the documented JSON Schema from them, so the two cannot drift.
import { z } from 'zod';
import { TABLE_ACTIONS } from '../../checkpoints/table-requests.js';
import { FREEZE_METHODS } from '../../engine/cutover/freeze.js';

export const PauseBody = z.strictObject({ reason: z.string().trim().min(1).max(500).optional() });
export const ResumeBody = z.strictObject({});
export const CutoverBody = z.strictObject({
  freeze: z.enum(FREEZE_METHODS).optional(),
  maxLagSeconds: z.number().nonnegative().optional(),
  force: z.boolean().optional(),
  verify: z.enum(['counts', 'checksums']).optional(),
  settleSeconds: z.number().nonnegative().max(3600).optional(),
});
export const VerifyBody = z.strictObject({ checksums: z.boolean().optional() });
export const TablesBody = z.strictObject({
  action: z.enum(TABLE_ACTIONS),
  pattern: z
    .string()
    .trim()
    .min(1)
    .max(500)
    .meta({ description: 'schema.table, * as a wildcard; without a dot, the table name in any schema' }),
});
