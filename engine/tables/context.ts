// What a table joining or leaving the run works with: the run (options, store), the replay it
// joins or leaves (between rounds), a signal that ends the work with the replicate phase, and how
// it records its steps for status and for a resume.
import type { CaptureRecord, TableRequestRecord } from '../../checkpoints/store.js';
import { PgferryError } from '../../lib/errors.js';
import type { RunContext } from '../run/context.js';

export interface TablesContext {
  run: RunContext;
  signal: AbortSignal;
  /** Records the request's step (and what it keeps for a resume); status shows it. */
  step: (
    req: TableRequestRecord,
    step: string,
    change?: { tables?: string[]; detail?: Record<string, unknown> },
  ) => void;
  /** A line in the log and the run's events. */
  note: (level: 'info' | 'warn', message: string) => void;
  /** Hands these captured tables to replay; resolves once each had its first whole batch. */
  admit: (captures: CaptureRecord[]) => Promise<number>;
  /** Resolves once replay no longer reads the table. */
  dismiss: (oid: number) => Promise<void>;
  /** An error the request waits out (a lost server) instead of failing. */
  transient: (err: unknown) => boolean;
}

export const refused = (message: string, object?: string): PgferryError =>
  new PgferryError('PGFERRY_TABLES_REFUSED', message, { side: 'source', object });
