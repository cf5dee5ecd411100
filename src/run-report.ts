// The JSON documents `migrate --json` and `cutover --json` print on stdout when they end: what
// the run reached, read back from its state file, with the figures of this invocation.
import fs from 'node:fs';
import { CheckpointStore } from '../checkpoints/store.js';
import type { CutoverResult } from '../engine/cutover/cutover.js';
import type { MigrateOptions, MigrateResult } from '../engine/migrate.js';
import type { ReplayStats } from '../engine/replay/replay.js';

/**
 * How `migrate` ended: the mode's own end (copy-only: copied; exit-when-synced: backlog drained;
 * cutover-when-synced: cut over), `cutover` (a plain run ended by a cutover through the HTTP API)
 * or `stopped` (a signal; run the same command to resume).
 */
export type MigrateOutcome = 'copy-only' | 'exit-when-synced' | 'cutover-when-synced' | 'cutover' | 'stopped';

export interface MigrateReport {
  ok: true;
  outcome: MigrateOutcome;
  mode: MigrateOptions['mode'];
  /** The phase the run reached, as `status` reports it. */
  phase: string | null;
  runId: string | null;
  state: string;
  /** This invocation went on from an earlier one's checkpoints; null when it was stopped before knowing. */
  resumed: boolean | null;
  /** Duration of this invocation. */
  seconds: number;
  /** Totals of the run's copy (earlier invocations included). */
  copy: { tables: number; rows: number; bytes: number };
  /** --copy-only: sequences set on the target; null otherwise (the cutover sets them: `cutover.sequences`). */
  sequences: number | null;
  /** The replay's last figures (lag, backlog, changes applied); null with --copy-only. */
  replay: ReplayStats | null;
  /** The cutover this invocation ran; null when none ran. */
  cutover: CutoverResult | null;
}

export interface CutoverReport extends CutoverResult {
  ok: true;
  runId: string | null;
  state: string;
  phase: string | null;
}

export interface CutoverAbortReport {
  ok: true;
  runId: string | null;
  state: string;
  phase: string | null;
  /** Whether a freeze was undone (false: no cutover of this run had frozen the source). */
  aborted: boolean;
  freeze: { method: string; startedAt: string } | null;
}

function readRun<T>(statePath: string, fn: (store: CheckpointStore) => T): T {
  const store = CheckpointStore.open(statePath, { create: false, readonly: true });
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

export function migrateReport(
  statePath: string,
  run: {
    mode: MigrateOptions['mode'];
    outcome: MigrateOutcome;
    seconds: number;
    /** null when the run ended by a signal before returning its figures. */
    result: MigrateResult | null;
  },
): MigrateReport {
  if (run.outcome === 'stopped' && !fs.existsSync(statePath)) {
    // Stopped before the run created its state file (a signal while it started): nothing to read.
    return {
      ok: true,
      outcome: run.outcome,
      mode: run.mode,
      phase: null,
      runId: null,
      state: statePath,
      resumed: null,
      seconds: run.seconds,
      copy: { tables: 0, rows: 0, bytes: 0 },
      sequences: null,
      replay: null,
      cutover: null,
    };
  }
  return readRun(statePath, (store) => {
    const tables = store.tables();
    const replay = store.getMeta('replay');
    const { result } = run;
    return {
      ok: true,
      outcome: run.outcome,
      mode: run.mode,
      phase: store.reportedPhase(),
      runId: store.runId(),
      state: statePath,
      resumed: result?.resumed ?? null,
      seconds: result?.seconds ?? run.seconds,
      copy: {
        tables: tables.length,
        rows: tables.reduce((a, t) => a + t.rowsCopied, 0),
        bytes: tables.reduce((a, t) => a + t.bytesCopied, 0),
      },
      sequences: run.mode === 'copy-only' ? Number(store.getMeta('sequences_synced') ?? 0) : null,
      replay: result ? result.replay : replay ? (JSON.parse(replay) as ReplayStats) : null,
      cutover: result?.cutover ?? null,
    };
  });
}

/** `pgferry cutover --json`: the cutover's result as `POST /cutover` answers it, with the run's id. */
export function cutoverReport(statePath: string, result: CutoverResult): CutoverReport {
  return readRun(statePath, (store) => ({
    ok: true,
    runId: store.runId(),
    state: statePath,
    phase: store.reportedPhase(),
    ...result,
  }));
}

export function cutoverAbortReport(
  statePath: string,
  undone: { freeze: { method: string; startedAt: string } } | null,
): CutoverAbortReport {
  return readRun(statePath, (store) => ({
    ok: true,
    runId: store.runId(),
    state: statePath,
    phase: store.reportedPhase(),
    aborted: undone !== null,
    freeze: undone ? { method: undone.freeze.method, startedAt: undone.freeze.startedAt } : null,
  }));
}
