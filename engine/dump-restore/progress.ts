// Progress of `pgferry dump-restore`, per phase: objects (tables) and bytes done of the total, the
// rate and an ETA from the bytes. The command shows it as a bar on a terminal, as lines otherwise,
// and as metrics with --http; this module only counts and tells.
export const DUMP_RESTORE_PHASES = ['preflight', 'dump', 'restore', 'post-data', 'finish', 'done'] as const;
export type DumpRestorePhase = (typeof DUMP_RESTORE_PHASES)[number];

export interface ProgressEvent {
  phase: DumpRestorePhase;
  /** Tables done of the phase's total. */
  done: number;
  total: number;
  bytesDone: number;
  bytesTotal: number;
  /** The table that just finished, if one did. */
  table?: string;
  /** Seconds left at the phase's pace so far, when it can be told. */
  etaSeconds: number | null;
  elapsedSeconds: number;
}

export class Progress {
  private phase: DumpRestorePhase = 'preflight';
  private done_ = 0;
  private total = 0;
  private bytesDone = 0;
  private bytesTotal = 0;
  private started = Date.now();
  private bytesAtStart = 0;

  constructor(private readonly onEvent: (e: ProgressEvent) => void = () => {}) {}

  /** A phase begins with this many tables and bytes to do. */
  start(phase: DumpRestorePhase, total = 0, bytesTotal = 0): void {
    Object.assign(this, {
      phase,
      done_: 0,
      total,
      bytesDone: 0,
      bytesTotal,
      started: Date.now(),
      bytesAtStart: 0,
    });
    this.onEvent(this.snapshot());
  }

  /** A table of the phase is done (or was done before a resume: counted, not timed). */
  done(table: string, bytes: number, earlier = false): void {
    this.done_ += 1;
    this.bytesDone += bytes;
    if (earlier) this.bytesAtStart += bytes;
    this.onEvent(this.snapshot(table));
  }

  snapshot(table?: string): ProgressEvent {
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = elapsed > 0 ? (this.bytesDone - this.bytesAtStart) / elapsed : 0;
    const left = this.bytesTotal - this.bytesDone;
    return {
      phase: this.phase,
      done: this.done_,
      total: this.total,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      ...(table ? { table } : {}),
      etaSeconds: rate > 0 && left >= 0 ? Math.round(left / rate) : null,
      elapsedSeconds: Math.round(elapsed * 10) / 10,
    };
  }
}
