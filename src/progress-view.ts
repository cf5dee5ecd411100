// On a terminal: live progress bars for the copy (overall and the tables being copied: rows,
// bytes, rate, ETA), one live line for replay (lag, backlog, rate), and dump-restore's phases. Log lines are printed above
// the bars. Off a terminal nothing here runs: the JSON log lines carry the same figures.
import cliProgress from 'cli-progress';
import type { ProgressSnapshot } from '../engine/copy/progress.js';
import type { ProgressEvent } from '../engine/dump-restore/progress.js';
import type { ReplayStats } from '../engine/replay/replay.js';
import { bytes, duration, int } from './format.js';

const MAX_TABLE_BARS = 6;

export class ProgressView {
  private readonly multi: cliProgress.MultiBar;
  private overall: cliProgress.SingleBar | undefined;
  private readonly tables = new Map<string, cliProgress.SingleBar>();
  private replayBar: cliProgress.SingleBar | undefined;
  private phaseBar: cliProgress.SingleBar | undefined;
  private phaseName = '';

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.multi = new cliProgress.MultiBar(
      {
        stream,
        format: ' {name} |{bar}| {percentage}% · {detail}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        autopadding: true,
        forceRedraw: true,
      },
      cliProgress.Presets.shades_grey,
    );
  }

  /** Writes a log line above the bars. */
  log(line: string): void {
    this.multi.log(line.endsWith('\n') ? line : `${line}\n`);
  }

  copy(p: ProgressSnapshot): void {
    const detail = `${int(p.rows)} rows · ${bytes(p.bytes)} · ${bytes(p.bytesPerSec)}/s · ETA ${duration(p.etaSeconds)}`;
    this.overall ??= this.multi.create(100, 0, { name: 'copy (all tables)'.padEnd(28), detail });
    this.overall.update(Math.floor(p.percent), { detail });
    const active = p.tables.filter((t) => t.chunksDone < t.chunksTotal).slice(0, MAX_TABLE_BARS);
    for (const [name, bar] of this.tables) {
      const t = p.tables.find((x) => x.table === name);
      if (!t || t.chunksDone === t.chunksTotal) {
        bar.update(100, { detail: `${int(t?.rows ?? 0)} rows · done` });
        bar.stop();
        this.multi.remove(bar);
        this.tables.delete(name);
      }
    }
    for (const t of active) {
      const d = `${int(t.rows)} rows · ${bytes(t.bytes)} · chunks ${t.chunksDone}/${t.chunksTotal}`;
      const bar =
        this.tables.get(t.table) ??
        this.multi.create(100, 0, { name: t.table.slice(0, 28).padEnd(28), detail: d });
      this.tables.set(t.table, bar);
      bar.update(Math.floor(t.percent), { detail: d });
    }
  }

  replay(r: ReplayStats): void {
    for (const bar of this.tables.values()) this.multi.remove(bar);
    this.tables.clear();
    const detail = `lag ${r.lagSeconds.toFixed(1)}s · backlog ${int(r.backlog)} · ${int(r.changesPerSec)} changes/s · ${int(r.appliedTotal)} applied`;
    // The bar shows how close replay is: full when nothing is waiting.
    const fill = r.backlog === 0 ? 100 : Math.max(0, Math.min(99, 100 - Math.log10(r.backlog + 1) * 20));
    this.replayBar ??= this.multi.create(100, 0, { name: 'replicating'.padEnd(28), detail });
    this.replayBar.update(Math.round(fill), { detail });
  }

  /** `pgferry dump-restore`: one bar per phase, by bytes (by tables where bytes are not known). */
  dumpRestore(e: ProgressEvent): void {
    if (this.phaseBar && this.phaseName !== e.phase) {
      this.phaseBar.update(100);
      this.phaseBar.stop();
      this.phaseBar = undefined;
    }
    this.phaseName = e.phase;
    if (e.phase === 'done') return;
    const percent =
      e.bytesTotal > 0 ? (e.bytesDone / e.bytesTotal) * 100 : e.total > 0 ? (e.done / e.total) * 100 : 0;
    const detail =
      e.total > 0
        ? `${e.done}/${e.total} tables · ${bytes(e.bytesDone)} of ${bytes(e.bytesTotal)} · ETA ${duration(e.etaSeconds)}`
        : `${duration(e.elapsedSeconds)}`;
    this.phaseBar ??= this.multi.create(100, 0, { name: e.phase.padEnd(12), detail });
    this.phaseBar.update(Math.floor(percent), { detail });
  }

  stop(): void {
    this.multi.stop();
  }
}
