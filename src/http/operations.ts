// The long control calls (cutover, verify) as operations: the POST starts the work and answers 202
// with the operation at once, so no client waits on a socket for an hour of checksums; /status
// lists the running and recent ones and GET /operations/:id gives one. One runs at a time: both
// stop replay to run in the replication loop, and a second would only queue behind the first.
// Kept in memory: after a restart the state file still tells the cutover's outcome.
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { isPgferryError, PgferryError, redact } from '../../lib/errors.js';
import type { OPERATION_KINDS, Operation } from './api-schemas.js';

export type OperationView = z.infer<typeof Operation>;
type Kind = (typeof OPERATION_KINDS)[number];

interface Entry {
  view: OperationView;
  /** What the work is doing now, read when the operation is shown. */
  progress: () => string | null;
}

/** Finished operations kept for /status, besides the running one. */
const RECENT = 10;

export class Operations {
  private readonly entries: Entry[] = [];

  constructor(private readonly onFailure: (err: PgferryError) => void = () => {}) {}

  /**
   * Starts work as an operation, or refuses (PGFERRY_API_CONFLICT) while another runs. `begin`
   * runs at once and may throw a refusal (not replicating, paused) that answers the POST itself;
   * the promise it returns settles the operation.
   */
  start(
    kind: Kind,
    begin: (progress: (text: string) => void) => Promise<OperationView['result']>,
    progress?: () => string | null,
  ): OperationView {
    const running = this.entries.find((e) => e.view.state === 'running');
    if (running) {
      throw new PgferryError(
        'PGFERRY_API_CONFLICT',
        `a ${running.view.kind} is already running (operation ${running.view.id}, since ${running.view.startedAt})`,
        { side: 'state' },
      );
    }
    let reported: string | null = null;
    const work = begin((text) => {
      reported = text;
    });
    const view: OperationView = {
      id: randomUUID(),
      kind,
      state: 'running',
      startedAt: new Date().toISOString(),
      finishedAt: null,
      progress: null,
      result: null,
      error: null,
    };
    const entry: Entry = { view, progress: () => progress?.() ?? reported };
    this.entries.unshift(entry);
    work.then(
      (result) => this.finish(entry, { state: 'succeeded', result }),
      (err) => {
        const e = isPgferryError(err)
          ? err
          : new PgferryError('PGFERRY_INTERNAL_ERROR', redact(String((err as Error)?.message ?? err)));
        this.onFailure(e);
        this.finish(entry, { state: 'failed', error: e.toJSON() as OperationView['error'] });
      },
    );
    return this.show(entry);
  }

  private finish(entry: Entry, outcome: Partial<OperationView>): void {
    Object.assign(entry.view, outcome, { finishedAt: new Date().toISOString(), progress: null });
    const finished = this.entries.filter((e) => e.view.state !== 'running');
    for (const old of finished.slice(RECENT)) this.entries.splice(this.entries.indexOf(old), 1);
  }

  private show(entry: Entry): OperationView {
    const view = { ...entry.view };
    if (view.state === 'running') view.progress = entry.progress();
    return view;
  }

  get(id: string): OperationView | null {
    const entry = this.entries.find((e) => e.view.id === id);
    return entry ? this.show(entry) : null;
  }

  /** Newest first. */
  list(): OperationView[] {
    return this.entries.map((e) => this.show(e));
  }
}
