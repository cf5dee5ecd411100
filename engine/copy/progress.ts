// Copy progress: rows and bytes per table and overall, rate and ETA. Bytes advance while a chunk
// streams; rows advance when a chunk commits (the target reports its row count then). The fraction
// done is weighted by the tables' on-disk sizes, so ETA does not depend on row estimates that a
// never-analyzed table lacks.

export interface TableProgress {
  table: string;
  rowsEstimate: number;
  bytesEstimate: number;
  rows: number;
  bytes: number;
  chunksDone: number;
  chunksTotal: number;
}

/** The checkpoint store's meta key holding the copy's last rate and ETA, for status. */
export const COPY_RATE_META = 'copy_rate';

/** The copy's pace as the last progress snapshot measured it (rows and bytes per second, ETA). */
export interface CopyRate {
  rowsPerSec: number;
  bytesPerSec: number;
  etaSeconds: number | null;
  at: string;
}

export function copyRate(p: ProgressSnapshot): CopyRate {
  return {
    rowsPerSec: p.rowsPerSec,
    bytesPerSec: p.bytesPerSec,
    etaSeconds: p.etaSeconds,
    at: new Date().toISOString(),
  };
}

export interface ProgressSnapshot {
  rows: number;
  bytes: number;
  chunksDone: number;
  chunksTotal: number;
  percent: number;
  rowsPerSec: number;
  bytesPerSec: number;
  etaSeconds: number | null;
  elapsedSeconds: number;
  tables: (TableProgress & { percent: number })[];
}

const tableFraction = (t: TableProgress) => {
  if (t.chunksTotal > 0 && t.chunksDone === t.chunksTotal) return 1;
  const byChunks = t.chunksTotal > 0 ? t.chunksDone / t.chunksTotal : 0;
  const byRows = t.rowsEstimate > 0 ? t.rows / t.rowsEstimate : 0;
  return Math.min(0.99, Math.max(byChunks, byRows));
};

export class CopyProgress {
  private readonly tables = new Map<string, TableProgress>();
  private readonly startedAt = Date.now();
  private startRows = 0;
  private startBytes = 0;
  private startFraction = 0;

  add(t: TableProgress): void {
    this.tables.set(t.table, { ...t });
  }

  /** Marks what was already done before this process started (a resume), so rates stay honest. */
  markBaseline(): void {
    for (const t of this.tables.values()) {
      this.startRows += t.rows;
      this.startBytes += t.bytes;
    }
    this.startFraction = this.fraction();
  }

  private fraction(): number {
    const tables = [...this.tables.values()];
    const weight = tables.reduce((a, t) => a + Math.max(1, t.bytesEstimate), 0);
    if (weight === 0) return 1;
    return tables.reduce((a, t) => a + Math.max(1, t.bytesEstimate) * tableFraction(t), 0) / weight;
  }

  bytes(table: string, n: number): void {
    const t = this.tables.get(table);
    if (t) t.bytes += n;
  }

  /** A chunk committed: its rows count, and its streamed bytes were already counted. */
  chunkDone(table: string, rows: number): void {
    const t = this.tables.get(table);
    if (!t) return;
    t.rows += rows;
    t.chunksDone += 1;
  }

  /** A chunk failed: the bytes it streamed were rolled back. */
  chunkFailed(table: string, bytes: number): void {
    const t = this.tables.get(table);
    if (t) t.bytes -= bytes;
  }

  snapshot(): ProgressSnapshot {
    const tables = [...this.tables.values()];
    const sum = (f: (t: TableProgress) => number) => tables.reduce((a, t) => a + f(t), 0);
    const fraction = this.fraction();
    const gained = fraction - this.startFraction;
    const elapsed = (Date.now() - this.startedAt) / 1000;
    const rows = sum((t) => t.rows);
    const bytes = sum((t) => t.bytes);
    const rowsPerSec = elapsed > 0 ? (rows - this.startRows) / elapsed : 0;
    const bytesPerSec = elapsed > 0 ? (bytes - this.startBytes) / elapsed : 0;
    const done = tables.every((t) => t.chunksDone === t.chunksTotal);
    return {
      rows,
      bytes,
      chunksDone: sum((t) => t.chunksDone),
      chunksTotal: sum((t) => t.chunksTotal),
      percent: done ? 100 : Math.round(fraction * 1000) / 10,
      rowsPerSec: Math.round(rowsPerSec),
      bytesPerSec: Math.round(bytesPerSec),
      etaSeconds: done
        ? 0
        : gained > 0.005 && elapsed > 1
          ? Math.round((elapsed * (1 - fraction)) / gained)
          : null,
      elapsedSeconds: Math.round(elapsed),
      tables: tables.map((t) => ({ ...t, percent: Math.round(tableFraction(t) * 1000) / 10 })),
    };
  }
}
