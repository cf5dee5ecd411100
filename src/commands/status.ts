import {
  CheckpointStore,
  type EventRecord,
  type Phase,
  type TableRequestRecord,
} from '../../checkpoints/store.js';
import { COPY_RATE_META, type CopyRate } from '../../engine/copy/progress.js';
import type { FreezeMethod } from '../../engine/cutover/freeze.js';
import { describeInterrupted, interruptedCutover, pastNoReturn } from '../../engine/cutover/freeze-record.js';
import { type DriftReport, driftReport } from '../../engine/drift/drift.js';
import { type NewTable, newTables } from '../../engine/drift/new-tables.js';
import type { ReplayStats } from '../../engine/replay/replay.js';
import { type ReverseStatus, reverseStatus } from '../../engine/reverse/state.js';
import { type Outages, readOutages } from '../../engine/shared/outage.js';
import { statePath } from '../config.js';
import { bytes, int, table } from '../format.js';

interface Flags {
  state?: string;
  json?: boolean;
}

export interface StatusEvent {
  at: string;
  level: 'info' | 'warn' | 'error';
  phase: string | null;
  message: string;
}

export interface StatusReport {
  state: string;
  phase: Phase | null;
  pauseReason: string | null;
  lagSeconds: number | null;
  backlog: number | null;
  /** The replay's last figures: lag, backlog, rate, changes applied, and when they were taken. */
  replay: ReplayStats | null;
  setup: ReturnType<CheckpointStore['setup']>;
  phases: ReturnType<CheckpointStore['phases']>;
  copy: {
    rows: number;
    bytes: number;
    chunksDone: number;
    chunksTotal: number;
    percent: number;
    /** The pace the running copy last measured (null before it measured one): rows/s, bytes/s, ETA. */
    rate: CopyRate | null;
  };
  tables: {
    table: string;
    rowsEstimate: number;
    rowsCopied: number;
    bytesCopied: number;
    chunksDone: number;
    chunksTotal: number;
    format: 'binary' | 'text';
    percent: number;
  }[];
  events: StatusEvent[];
  /** The newest warnings and errors (newest last), kept apart so routine events do not push them out. */
  problems: StatusEvent[];
  /** The write downtime of the cutover, once the target was declared ready. */
  cutoverDowntimeSeconds: number | null;
  /**
   * A cutover that froze the source and has not finished (a crash, an undo that failed): how the
   * source is frozen, since when, the last step done, and the ways out. Null when there is none.
   */
  /** Each side's current outage (since, attempts, last error), while pgferry retries it; null when both answer. */
  outage: Outages | null;
  /** The replicated tables whose shape differs between the sides (schema drift), or null when they match. */
  drift: DriftReport | null;
  /** Tables on the source that the run's patterns take in and that it does not replicate (created since it started). */
  newTables: NewTable[];
  /** The operator's newest requests for tables to join or leave the run (pgferry tables add|remove), oldest first. */
  tableRequests: TableRequestRecord[];
  /** Reverse replication after the cutover (and the rollback), for a run that asked for it. */
  reverse: ReverseStatus | null;
  interruptedCutover: {
    freeze: FreezeMethod;
    since: string;
    lastStep: string;
    at: string;
    grantsRevoked: number;
    message: string;
    next: string;
  } | null;
}

export function readStatus(file: string): StatusReport {
  const store = CheckpointStore.open(file, { create: false, readonly: true });
  try {
    return statusOf(store);
  } finally {
    store.close();
  }
}

/** The status of a run from its store (the daemon's open one, or a read-only handle). */
export function statusOf(store: CheckpointStore): StatusReport {
  const tables = store.tables().map((t) => ({
    table: `${t.schema}.${t.name}`,
    rowsEstimate: t.rowsEstimate,
    rowsCopied: t.rowsCopied,
    bytesCopied: t.bytesCopied,
    chunksDone: t.chunksDone,
    chunksTotal: t.chunksTotal,
    format: t.copyFormat,
    percent: t.chunksTotal === 0 ? 0 : Math.round((t.chunksDone / t.chunksTotal) * 1000) / 10,
  }));
  const replay = store.getMeta('replay');
  const r = replay ? (JSON.parse(replay) as ReplayStats) : null;
  const reverse = reverseStatus(store);
  // Two-way: the run's lag and backlog are both directions' (the other's alone in `reverse`).
  const both = reverse?.twoWay?.startedAt ? reverse.replay : null;
  const chunksDone = tables.reduce((a, t) => a + t.chunksDone, 0);
  const chunksTotal = tables.reduce((a, t) => a + t.chunksTotal, 0);
  const phase = store.reportedPhase();
  const rate = store.getMeta(COPY_RATE_META);
  const downtime = store.getMeta('cutover_downtime_seconds');
  return {
    state: store.file,
    phase,
    pauseReason: phase === 'paused' ? store.pauseReason() : null,
    lagSeconds: both ? Math.max(r?.lagSeconds ?? 0, both.lagSeconds) : (r?.lagSeconds ?? null),
    backlog: both ? (r?.backlog ?? 0) + both.backlog : (r?.backlog ?? null),
    replay: r,
    setup: store.setup(),
    phases: store.phases(),
    copy: {
      rows: tables.reduce((a, t) => a + t.rowsCopied, 0),
      bytes: tables.reduce((a, t) => a + t.bytesCopied, 0),
      chunksDone,
      chunksTotal,
      percent: chunksTotal === 0 ? 0 : Math.round((chunksDone / chunksTotal) * 1000) / 10,
      rate: rate ? (JSON.parse(rate) as CopyRate) : null,
    },
    tables,
    events: store.events(15).map(eventOf),
    problems: store.events(10, ['warn', 'error']).map(eventOf),
    cutoverDowntimeSeconds: downtime === null ? null : Number(downtime),
    outage: readOutages(store),
    drift: driftReport(store),
    newTables: newTables(store),
    tableRequests: store.tableRequests({ limit: 10 }),
    interruptedCutover: interrupted(store),
    reverse,
  };
}

const eventOf = (e: EventRecord): StatusEvent => ({
  at: e.at,
  level: e.level as StatusEvent['level'],
  phase: e.phase,
  message: e.message,
});

function interrupted(store: CheckpointStore): StatusReport['interruptedCutover'] {
  const record = interruptedCutover(store);
  if (!record) return null;
  return {
    freeze: record.freeze.method,
    since: record.freeze.startedAt,
    lastStep: record.step,
    at: record.updatedAt,
    grantsRevoked: record.freeze.grants?.length ?? 0,
    message: describeInterrupted(record),
    next: pastNoReturn(record)
      ? 'pgferry cutover --state FILE finishes it (the target was declared ready)'
      : 'pgferry cutover --state FILE completes it; pgferry cutover --abort --state FILE gives the source its writes back',
  };
}

export async function statusCommand(flags: Flags): Promise<void> {
  const report = readStatus(statePath(flags.state));
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const s = report.setup;
  const out: string[] = [];
  out.push(`state   ${report.state}`);
  if (s) {
    const id = (x: { user: string; host: string; port: number; database: string }) =>
      `${x.user}@${x.host}:${x.port}/${x.database}`;
    const capture = s.mode === 'replicate' ? `, --capture ${s.capture ?? 'triggers'}` : '';
    out.push(`run     ${s.runId} (${s.mode}${capture}): ${id(s.source)} → ${id(s.target)}`);
  }
  out.push(`phase   ${report.phase ?? 'not started'}`);
  for (const o of [report.outage?.source, report.outage?.target]) {
    if (o)
      out.push(`OUTAGE  ${o.side} unreachable since ${o.since} (${o.attempts} attempts): ${o.lastError}`);
  }
  if (report.interruptedCutover) {
    out.push(`CUTOVER INTERRUPTED: ${report.interruptedCutover.message}`);
    out.push(`        next: ${report.interruptedCutover.next}`);
  }
  if (report.pauseReason !== null) out.push(`paused  ${report.pauseReason}`);
  out.push(...reverseLines(report.reverse));
  if (report.drift) {
    out.push(
      `drift   ${report.drift.accepted ? 'accepted by the operator, replay goes on' : 'replay paused until the target matches'} (since ${report.drift.since})`,
    );
    for (const d of report.drift.differences) out.push(`        ${d.message}`);
  }
  for (const t of report.newTables) {
    out.push(
      `new     ${t.table} created on the source (seen ${t.seenAt}), not replicated: pgferry tables add ${t.table}`,
    );
  }
  for (const r of report.tableRequests.filter(
    (x) => x.state !== 'done' || Date.now() - Date.parse(x.updatedAt) < 3_600_000,
  )) {
    const what =
      r.state === 'failed' ? `failed: ${r.error?.message}` : `${r.state}${r.step ? `: ${r.step}` : ''}`;
    out.push(`tables  ${r.action} ${r.pattern} (request ${r.id}) ${what}`);
  }
  out.push(
    `copy    ${report.copy.percent}% of chunks · ${int(report.copy.rows)} rows · ${bytes(report.copy.bytes)} · chunks ${report.copy.chunksDone}/${report.copy.chunksTotal}`,
  );
  if (report.replay) {
    const r = report.replay;
    out.push(
      `replay  lag ${r.lagSeconds.toFixed(1)}s · backlog ${int(r.backlog)} changes · ${int(r.changesPerSec)} changes/s · ${int(r.appliedTotal)} applied (as of ${r.at})`,
    );
  }
  if (report.tables.length > 0) {
    out.push('');
    out.push(
      table(
        ['table', 'rows copied', 'rows (est.)', 'bytes', 'chunks', '%'],
        report.tables.map((t) => [
          t.table,
          int(t.rowsCopied),
          int(t.rowsEstimate),
          bytes(t.bytesCopied),
          `${t.chunksDone}/${t.chunksTotal}`,
          String(t.percent),
        ]),
      ),
    );
  }
  if (report.events.length > 0) {
    out.push('');
    out.push('recent events:');
    for (const e of report.events)
      out.push(`  ${e.at}  ${e.level.padEnd(5)} ${e.phase ?? '-'}: ${e.message}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function reverseLines(r: ReverseStatus | null): string[] {
  if (!r) return [];
  const out: string[] = [];
  const tw = r.twoWay;
  if (tw) {
    const c = tw.conflicts;
    out.push(
      `two-way ${tw.startedAt ? `since ${tw.startedAt}` : 'starts after the copy'} (--conflict ${tw.conflict}): ${c.total} conflict(s), ${c.sourceWon} kept the source's version, ${c.targetWon} the target's`,
    );
    for (const x of tw.recent.slice(-5))
      out.push(`        ${x.at} ${x.table} key (${x.key.join(', ')}): the ${x.winner}'s version kept`);
  }
  if (r.installedAt) {
    const p = r.replay;
    out.push(
      `${tw ? 'target → source' : 'reverse replication'} since ${r.installedAt} on ${r.tables} table(s): ${p ? `lag ${p.lagSeconds.toFixed(1)}s, backlog ${p.backlog} changes, ${p.appliedTotal} applied to the old source (at ${p.at})` : 'nothing replayed yet'}`,
    );
  } else if (r.requested) {
    out.push('reverse  requested (--reverse-after-cutover): the cutover installs it');
  }
  const rb = r.rollback;
  if (rb) {
    out.push(
      rb.step === 'done'
        ? `rollback done at ${rb.updatedAt}: write downtime ${rb.downtimeSeconds?.toFixed(2) ?? '?'}s; the target stays frozen until the next cutover`
        : `ROLLBACK INTERRUPTED after step "${rb.step}" (${rb.updatedAt}): pgferry rollback --state FILE completes it`,
    );
  }
  return out;
}
