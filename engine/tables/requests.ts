// The running migrate's side of `pgferry tables add|remove` and POST /tables: during the
// replicate phase it takes the requests from the state file in order, one at a time, beside the
// replay loop (a join copies for as long as its table takes; the others replay meanwhile). A lost
// server leaves the request running, to be taken up again when the run goes on; any other
// failure ends it failed, with the reason in status.
import type { TableRequestRecord } from '../../checkpoints/store.js';
import { crashPoint } from '../../lib/crash-point.js';
import { isPgferryError, PgferryError, redact } from '../../lib/errors.js';
import { sleep } from '../../lib/sleep.js';
import { forgetNewTables } from '../drift/new-tables.js';
import type { Replayer } from '../replay/replay.js';
import type { RunContext } from '../run/context.js';
import { isConnectionLoss } from '../shared/outage.js';
import type { TablesContext } from './context.js';
import { joinTables } from './join.js';
import { leaveTables } from './leave.js';

/** How often the state file is looked at for new requests. */
const POLL_MS = 1_000;

/** Requests that are not over: a cutover waits for them, and --exit-when-synced too. */
export const OPEN_REQUESTS = ['pending', 'running'] as const;

export class TableRequests {
  private readonly stopper = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(
    private readonly run: RunContext,
    private readonly replayer: Replayer,
  ) {}

  /** Whether a request is waiting or being worked on. */
  busy(): boolean {
    return this.run.store.tableRequests({ states: OPEN_REQUESTS }).length > 0;
  }

  start(): void {
    this.loop ??= this.work();
  }

  /** Ends the work at its next step (a join waiting for replay hears it from the Replayer). */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }

  private async work(): Promise<void> {
    const signal = AbortSignal.any([this.run.opts.signal, this.stopper.signal]);
    const ctx = this.context(signal);
    while (!signal.aborted) {
      const [req] = this.run.store.tableRequests({ states: OPEN_REQUESTS });
      if (!req) {
        await sleep(POLL_MS, signal).catch(() => {});
        continue;
      }
      const wait = await this.take(ctx, req);
      if (wait) await sleep(wait, signal).catch(() => {});
    }
  }

  /** Works on one request; returns how long to wait before the next attempt (0: go on). */
  private async take(ctx: TablesContext, req: TableRequestRecord): Promise<number> {
    const { store, opts } = this.run;
    if (req.state === 'pending') {
      store.updateTableRequest(req.id, { state: 'running' });
      ctx.note('info', `tables ${req.action} ${req.pattern}: started (request ${req.id})`);
    }
    try {
      const current = store.tableRequest(req.id)!;
      const message = await (req.action === 'add' ? joinTables : leaveTables)(ctx, current);
      store.updateTableRequest(req.id, { state: 'done', step: message });
      forgetNewTables(store, store.tableRequest(req.id)?.tables ?? []);
      ctx.note('info', `tables ${req.action} ${req.pattern}: ${message}`);
      return 0;
    } catch (err) {
      if (ctx.signal.aborted || ctx.transient(err)) {
        opts.log.warn(
          { request: req.id, err: (err as Error)?.message },
          'table request interrupted: it goes on when the run does',
        );
        return 5_000;
      }
      const e = isPgferryError(err)
        ? err
        : new PgferryError('PGFERRY_INTERNAL_ERROR', redact(String((err as Error)?.message ?? err)));
      store.updateTableRequest(req.id, {
        state: 'failed',
        error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
      });
      ctx.note('warn', `tables ${req.action} ${req.pattern} failed: ${e.oneLine()}`);
      return 0;
    }
  }

  private context(signal: AbortSignal): TablesContext {
    const { store, opts } = this.run;
    const replayer = this.replayer;
    return {
      run: this.run,
      signal,
      step: (req, step, change) => {
        store.updateTableRequest(req.id, { step, ...change });
        Object.assign(req, { step }, change);
        crashPoint(`tables:${step}`);
      },
      note: (level, message) => {
        opts.log[level](message);
        store.event(level, store.phase(), message);
      },
      admit: async (captures) => {
        const all = await Promise.all(captures.map((c) => replayer.admit(c)));
        return all.reduce((a, b) => Math.max(a, b), 0);
      },
      dismiss: (oid) => replayer.dismiss(oid),
      transient: (err) =>
        isConnectionLoss(err) || (isPgferryError(err) && err.code === 'PGFERRY_RUN_CANCELLED'),
    };
  }
}
