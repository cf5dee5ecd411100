// The small shapes the API's schemas share (api-schemas.ts, api-schemas-reverse.ts).
import { z } from 'zod';

export const dateTime = () => z.string().meta({ format: 'date-time' });
export const count = () => z.number().int().nonnegative();
export const nullableNumber = () => z.number().nullable();

export const ReplayFigures = z.object({
  lagSeconds: z.number(),
  backlog: count(),
  changesPerSec: z.number(),
  appliedTotal: count(),
  batches: count(),
  at: dateTime(),
  lastBatchAt: dateTime().nullable().optional().meta({
    description: 'When the last batch was applied (kept across restarts); null before the first',
  }),
  tableBacklogs: z
    .array(z.object({ table: z.string(), changes: count() }))
    .optional()
    .meta({ description: 'The tables with changes waiting, biggest first (at most 50)' }),
});
