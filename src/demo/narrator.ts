// What the demo says on stdout: numbered steps in plain words, indented details, and the engine's
// progress turned into short lines. The engine logs through pino as usual; the narrator's logger
// turns the few milestones worth telling into sentences and sends warnings and errors to stderr.
import pino, { type Logger } from 'pino';
import type { ProgressSnapshot } from '../../engine/copy/progress.js';
import type { ReplayStats } from '../../engine/replay/replay.js';
import { bytes, int } from '../format.js';

const PHASE_WORDS: Record<string, string> = {
  schema: 'creating the empty tables on the target from the source schema (pg_dump, pre-data only)',
  indexes: 'building primary keys and indexes on the target, now that the rows are in',
  replicating: 'replaying the changes the shop made meanwhile',
};

export class Narrator {
  private readonly started = Date.now();

  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WritableStream = process.stdout,
    private readonly err: NodeJS.WritableStream = process.stderr,
  ) {}

  step(n: number, text: string): void {
    this.out.write(`\n${n}/${this.total} ${text}\n`);
  }

  detail(text: string): void {
    for (const line of text.split('\n')) this.out.write(`    ${line}\n`);
  }

  /** Seconds since the demo started. */
  elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }

  /** A logger for the engine: milestones as details, warnings and errors on stderr. */
  logger(): Logger {
    return pino(
      { level: 'info', base: null },
      {
        write: (line: string) => {
          let rec: { level?: number; msg?: string; phase?: string; tables?: number; chunks?: number };
          try {
            rec = JSON.parse(line);
          } catch {
            return;
          }
          const msg = rec.msg ?? '';
          if ((rec.level ?? 0) >= 40) {
            this.err.write(`pgferry: ${(rec.level ?? 0) >= 50 ? 'error' : 'warning'}: ${msg}\n`);
          } else if (rec.phase && msg === `${rec.phase} started` && PHASE_WORDS[rec.phase]) {
            this.detail(PHASE_WORDS[rec.phase]!);
          } else if (msg === 'change capture installed on the source') {
            this.detail(
              `change capture on: a trigger on each of the ${rec.tables} source tables now logs every insert, update and delete`,
            );
          } else if (msg === 'copy planned in primary-key ranges') {
            this.detail(
              `copying ${rec.chunks} primary-key ranges of ${rec.tables} tables and partitions, several at a time`,
            );
          }
        },
      },
    );
  }

  copyProgress(p: ProgressSnapshot): void {
    this.detail(
      `copy ${p.percent.toFixed(0).padStart(3)}% · ${int(p.rows)} rows · ${bytes(p.bytes)} · ${int(p.rowsPerSec)} rows/s`,
    );
  }

  replayProgress(r: ReplayStats, extra = ''): void {
    this.detail(
      `replicating · lag ${r.lagSeconds.toFixed(1)}s · backlog ${int(r.backlog)} changes · ` +
        `${int(r.changesPerSec)} changes/s · ${int(r.appliedTotal)} replayed${extra}`,
    );
  }
}
