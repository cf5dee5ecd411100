// The Prometheus metrics of `pgferry dump-restore --http`: where the run stands, the same figures
// as its progress lines (tables and bytes done of the phase's total, the ETA), and the default
// process metrics. Fed by the engine's progress events.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { DUMP_RESTORE_PHASES, type ProgressEvent } from '../engine/dump-restore/progress.js';

export class DumpRestoreMetrics {
  readonly registry = new Registry();
  private readonly phase: Gauge<'phase'>;
  private readonly tablesDone: Gauge;
  private readonly tablesTotal: Gauge;
  private readonly bytesDone: Gauge;
  private readonly bytesTotal: Gauge;
  private readonly eta: Gauge;
  last: ProgressEvent | null = null;

  constructor() {
    const registers = [this.registry];
    this.phase = new Gauge({
      name: 'pgferry_dump_restore_phase',
      help: 'The phase dump-restore is in: 1 for the current phase, 0 for the others',
      labelNames: ['phase'],
      registers,
    });
    for (const p of DUMP_RESTORE_PHASES) this.phase.set({ phase: p }, p === 'preflight' ? 1 : 0);
    this.tablesDone = new Gauge({
      name: 'pgferry_dump_restore_tables_done',
      help: 'Tables done in the current phase',
      registers,
    });
    this.tablesTotal = new Gauge({
      name: 'pgferry_dump_restore_tables_total',
      help: 'Tables the current phase has to do',
      registers,
    });
    this.bytesDone = new Gauge({
      name: 'pgferry_dump_restore_bytes_done',
      help: "Bytes (the tables' size on the source) done in the current phase",
      registers,
    });
    this.bytesTotal = new Gauge({
      name: 'pgferry_dump_restore_bytes_total',
      help: 'Bytes the current phase has to do',
      registers,
    });
    this.eta = new Gauge({
      name: 'pgferry_dump_restore_eta_seconds',
      help: 'Seconds left in the current phase at its pace so far (-1 while unknown)',
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  status(): ProgressEvent | { phase: 'preflight' } {
    return this.last ?? { phase: 'preflight' };
  }

  update(e: ProgressEvent): void {
    this.last = e;
    for (const p of DUMP_RESTORE_PHASES) this.phase.set({ phase: p }, p === e.phase ? 1 : 0);
    this.tablesDone.set(e.done);
    this.tablesTotal.set(e.total);
    this.bytesDone.set(e.bytesDone);
    this.bytesTotal.set(e.bytesTotal);
    this.eta.set(e.etaSeconds ?? -1);
  }
}
