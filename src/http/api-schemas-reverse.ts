// The API's shapes of the reverse direction (engine/reverse/, engine/two-way/): reverse
// replication and two-way sync in /status, and the rollback's result.
import { z } from 'zod';
import { FREEZE_METHODS } from '../../engine/cutover/freeze.js';
import { CONFLICT_RULES } from '../../engine/two-way/state.js';
import { count, dateTime, nullableNumber, ReplayFigures } from './api-schema-parts.js';

export const RollbackResult = z.object({
  downtimeSeconds: z.number().nonnegative().meta({
    description: "Write downtime: from the new side's freeze to the old source taking writes again",
  }),
  freeze: z.enum(FREEZE_METHODS),
  frozenAt: dateTime().meta({ description: 'When writes were frozen on the new side' }),
  sessionsEnded: count(),
  changesDrained: count(),
  sequences: count(),
  materializedViews: count(),
  objectsRestored: count().meta({ description: 'Foreign keys and triggers of the old source restored' }),
  foreignKeysValidated: count(),
  verify: z.object({ checksums: z.boolean(), equal: z.boolean(), tables: count() }),
  completedInterrupted: z.boolean(),
});

export const ReverseStatus = z
  .object({
    twoWay: z
      .object({
        conflict: z.enum(CONFLICT_RULES),
        startedAt: dateTime().nullable(),
        conflicts: z.object({
          total: count(),
          sourceWon: count(),
          targetWon: count(),
          byTable: z.record(z.string(), count()),
        }),
        recent: z.array(
          z.object({
            table: z.string(),
            key: z.array(z.string()),
            winner: z.enum(['source', 'target']),
            at: dateTime(),
          }),
        ),
      })
      .nullable()
      .meta({
        description:
          'Two-way sync (--two-way): the conflict rule, since when, the conflicts met with the newest keys',
      }),
    requested: z.boolean().meta({ description: 'The run was started with --reverse-after-cutover' }),
    installedAt: dateTime().nullable().meta({ description: 'When capture went on on the target' }),
    tables: count(),
    replay: ReplayFigures.nullable().meta({
      description: "The reverse replay's last figures: the new side's changes applied to the old source",
    }),
    rollback: z
      .object({ step: z.string(), updatedAt: dateTime(), downtimeSeconds: nullableNumber() })
      .nullable(),
  })
  .nullable()
  .optional()
  .meta({
    description:
      'Reverse replication after the cutover (the old source kept current for a rollback), and the last rollback; null for a run without it',
  });
