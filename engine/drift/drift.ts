// Schema drift: the replicated tables' shapes on both sides compared on a short interval, when a
// replay batch finds its table's columns changed, and when an apply error looks like a shape
// mismatch. Heroku grants no event triggers, so drift is found by polling the catalogs: each
// check reads a digest of the tables' catalog rows on both sides (shape.ts shapeDigest), and only
// when one moved (or a minute passed) the shapes themselves. On drift, replay pauses (pauseReason `drift`, the diff in the
// store's meta `drift`) while capture goes on; it resumes by itself once the target matches, or
// when the operator resumes, which accepts the differences seen then (meta `drift_accepted`)
// until they change. Partitions new on the source are created on the target at once, and with
// `--drift additive` so are columns that cannot change a row (additive.ts) and new indexes
// (indexes.ts, in the background).
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CaptureRecord, CheckpointStore } from '../../checkpoints/store.js';
import { isPgferryError, stateOf } from '../../lib/errors.js';
import { captureKindOf } from '../capture/sources.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect } from '../shared/db.js';
import { applyOwn as applyAdditive } from './additive.js';
import {
  compareTable,
  type Difference,
  differencesSignature,
  type ReplayShape,
  replayShape,
  type TablePair,
} from './compare.js';
import { IndexBuilder } from './indexes.js';
import type { DriftMode } from './modes.js';
import { NEW_TABLES_EVERY, recordNewTables } from './new-tables.js';
import { shapeDigest, sourceShapes, targetShapes } from './shape.js';

/** The pause reason of a drift pause. */
export const DRIFT_PAUSE = 'drift';

/** How often replay compares both sides' catalogs. */
export const DRIFT_INTERVAL_MS = 2_000;

/** A full comparison at least this often, whatever the digests say (a safety net). */
const FULL_CHECK_MS = 60_000;

/** Meta keys: the current differences (JSON DriftReport), and the ones an operator's resume accepted. */
export const DRIFT_META = 'drift';
export const DRIFT_ACCEPTED_META = 'drift_accepted';

export interface DriftReport {
  since: string;
  checkedAt: string;
  /** Accepted by an operator's resume: replay goes on with what both sides share. */
  accepted: boolean;
  differences: Difference[];
}

/**
 * SQLSTATEs of an apply that fails because the sides' shapes differ: undefined column or table,
 * datatype mismatch, cannot coerce, not-null violation (a column NOT NULL on one side only),
 * invalid text or binary data for the type (binary COPY of an int8 into an int4), value too long
 * or out of range, a bad date or time, no partition for the row.
 */
const SHAPE_STATES = new Set(
  '42703 42P01 42804 42846 23502 22P02 22P03 22001 22003 22007 22008 23514'.split(' '),
);

/** PGFERRY_SCHEMA_DRIFT: a batch found its table's columns changed and applied nothing. */
export const isDriftError = (err: unknown): boolean =>
  isPgferryError(err) && err.code === 'PGFERRY_SCHEMA_DRIFT';

/** An error that a shape difference may explain: drift checks confirm or clear it. */
export const maybeDrift = (err: unknown): boolean => {
  const state = stateOf(err);
  return isDriftError(err) || (state !== undefined && SHAPE_STATES.has(state));
};

export interface DriftOutcome {
  /** The differences left after what pgferry applied itself; empty when the sides match. */
  differences: Difference[];
  accepted: boolean;
  /** What replay writes each table with (tables that can be replayed now), by source oid. */
  shapes: Map<number, ReplayShape>;
  /** Tables dropped on both sides: they leave the run. */
  left: number[];
  /** pgferry changed the target itself (a partition, an additive column). */
  applied: boolean;
}

export interface DriftOptions {
  source: ConnInfo;
  target: ConnInfo;
  store: CheckpointStore;
  log: Logger;
  mode: DriftMode;
  intervalMs?: number;
  /** Each check, with the number of tables that differ (metrics). */
  onCheck?: (driftedTables: number) => void;
}

export class DriftWatch {
  private src: pg.Client | null = null;
  private dst: pg.Client | null = null;
  private lastCheck = 0;
  private lastSignature: string | null = null;
  private checks = 0;
  private readonly indexes: IndexBuilder;
  /** The catalog digest of both sides at the last full check, and that check's outcome. */
  private last: { digest: string; outcome: DriftOutcome; at: number } | null = null;
  /** How long the source's digest took last time (the interval grows with it). */
  private digestMs = 0;

  constructor(private readonly opts: DriftOptions) {
    this.indexes = new IndexBuilder({
      target: opts.target,
      log: opts.log,
      note: (level, message) => this.note(level, message),
    });
  }

  /**
   * Every 2 s; with thousands of tables, longer, so that the periodic digest costs the source at
   * most 1% of a core (each batch's own columns guard keeps replay safe between checks).
   */
  intervalMs(): number {
    return Math.max(this.opts.intervalMs ?? DRIFT_INTERVAL_MS, Math.round(this.digestMs * 100));
  }

  /** A periodic check is due. */
  due(): boolean {
    return Date.now() - this.lastCheck >= this.intervalMs();
  }

  private async sessions(): Promise<{ src: pg.Client; dst: pg.Client }> {
    this.src ??= await connect(this.opts.source, 'control');
    this.dst ??= await connect(this.opts.target, 'control');
    return { src: this.src, dst: this.dst };
  }

  async close(): Promise<void> {
    const open = [this.src, this.dst];
    this.src = this.dst = null;
    await Promise.all([...open.map((c) => c?.end().catch(() => {})), this.indexes.close()]);
  }

  /**
   * Compares every captured table on both sides, applies what pgferry applies itself, records the
   * outcome (pause, resume, diff) in the store, and returns what replay writes each table with.
   */
  async check(): Promise<DriftOutcome> {
    try {
      return await this.checkOnce();
    } catch (err) {
      // A session that failed is not reused; the caller's retry opens new ones.
      await this.close();
      throw err;
    } finally {
      this.lastCheck = Date.now();
    }
  }

  private async checkOnce(): Promise<DriftOutcome> {
    const { store } = this.opts;
    const captures = store.captures();
    const digest = await this.digest(captures);
    const last = this.last;
    if (last && last.digest === digest && Date.now() - last.at < FULL_CHECK_MS) {
      // Nothing changed in either catalog: the last outcome stands (an operator's resume may
      // have accepted its differences since).
      const accepted = this.record(last.outcome.differences);
      await this.sideChecks(null);
      return { ...last.outcome, accepted, left: [], applied: false };
    }
    const outcome = await this.fullCheck(captures);
    this.last = { digest, outcome, at: Date.now() };
    return outcome;
  }

  /** Both sides' catalog digests of the captured tables (shape.ts shapeDigest), with the list itself. */
  private async digest(captures: CaptureRecord[]): Promise<string> {
    const { src, dst } = await this.sessions();
    const t0 = performance.now();
    const source = await shapeDigest(
      src,
      'source',
      captures.map((c) => c.oid),
    );
    this.digestMs = performance.now() - t0;
    const target = await shapeDigest(dst, 'target', captures);
    return `${captures.map((c) => `${c.oid}:${c.schema}.${c.name}`).join(',')}|${source}|${target}`;
  }

  /** What every check does besides the shapes: indexes (--drift additive), and now and then new tables. */
  private async sideChecks(pairs: TablePair[] | null): Promise<void> {
    if (pairs && this.opts.mode === 'additive' && this.opts.store.getMeta('unique_built'))
      await this.checkIndexes(pairs);
    if (this.checks++ % NEW_TABLES_EVERY === 0)
      await recordNewTables((await this.sessions()).src, this.opts.store);
  }

  private async fullCheck(captures: CaptureRecord[]): Promise<DriftOutcome> {
    let pairs = await this.pairs(captures);
    let differences = pairs.flatMap(compareTable);
    const applied = await this.applyOwn(captures, pairs, differences);
    if (applied) {
      pairs = await this.pairs(captures);
      differences = pairs.flatMap(compareTable);
    }
    const left = pairs.filter((p) => !p.source && !p.targetAsRecorded).map((p) => p.oid);
    const leaving = new Set(
      left.map((oid) => captures.find((c) => c.oid === oid)!).map((c) => `${c.schema}.${c.name}`),
    );
    differences = differences.filter((d) => !(d.kind === 'table-dropped' && leaving.has(d.table)));
    const shapes = new Map<number, ReplayShape>();
    for (const p of pairs) {
      if (p.source && p.target) {
        const shape = replayShape(p.source, p.target);
        if (shape) shapes.set(p.oid, shape);
      }
    }
    for (const oid of left) this.leave(captures.find((c) => c.oid === oid)!);
    const accepted = this.record(differences);
    this.opts.onCheck?.(new Set(differences.map((d) => d.table)).size);
    await this.sideChecks(pairs);
    return { differences, accepted, shapes, left, applied };
  }

  private async pairs(captures: CaptureRecord[]): Promise<TablePair[]> {
    const { src, dst } = await this.sessions();
    const source = await sourceShapes(
      src,
      captures.map((c) => c.oid),
    );
    const names = captures.flatMap((c) => {
      const s = source.get(c.oid);
      return [{ schema: c.schema, name: c.name }, ...(s ? [{ schema: s.schema, name: s.name }] : [])];
    });
    const target = await targetShapes(dst, names);
    return captures.map((c) => {
      const s = source.get(c.oid);
      return {
        oid: c.oid,
        recorded: { schema: c.schema, name: c.name },
        source: s,
        target: s ? target.get(`${s.schema}.${s.name}`) : undefined,
        targetAsRecorded: target.get(`${c.schema}.${c.name}`),
      };
    });
  }

  /** Applies new partitions (always) and additive columns (--drift additive); true when it changed anything. */
  private async applyOwn(
    captures: CaptureRecord[],
    pairs: TablePair[],
    diffs: Difference[],
  ): Promise<boolean> {
    const { src, dst } = await this.sessions();
    return applyAdditive(
      {
        src,
        dst,
        runId: this.opts.store.runId()!,
        mode: this.opts.mode,
        capture: captureKindOf(this.opts.store),
        note: (level, message) => this.note(level, message),
      },
      captures,
      pairs,
      diffs,
    );
  }

  /** --drift additive: indexes new on the source are built on the target, in the background. */
  private async checkIndexes(pairs: TablePair[]): Promise<void> {
    const { src, dst } = await this.sessions();
    const both = pairs.flatMap((p) => (p.source && p.target ? [p.source] : []));
    const pending = new Set(
      this.opts.store
        .schemaObjects()
        .filter((o) => o.status === 'pending')
        .map((o) => o.name),
    );
    await this.indexes.check(src, dst, both, pending);
  }

  /** A table dropped on both sides: its replay ends (its log stays until `pgferry cleanup`). */
  private leave(c: CaptureRecord): void {
    this.opts.store.removeCapture(c.oid);
    this.note('warn', `${c.schema}.${c.name} was dropped on both sides: it left the migration`);
  }

  /** Records the outcome: the diff, the pause or its end. Returns whether an operator accepted the differences. */
  private record(differences: Difference[]): boolean {
    const { store } = this.opts;
    const signature = differencesSignature(differences);
    const reason = store.pauseReason();
    if (differences.length === 0) {
      store.deleteMeta(DRIFT_META);
      store.deleteMeta(DRIFT_ACCEPTED_META);
      if (reason === DRIFT_PAUSE) {
        store.setPaused(null);
        this.note('info', 'schema drift resolved: both sides match again, replay resumed');
      }
      this.lastSignature = signature;
      return false;
    }
    const accepted = store.getMeta(DRIFT_ACCEPTED_META) === signature;
    const since = driftReport(store)?.since ?? new Date().toISOString();
    const report: DriftReport = { since, checkedAt: new Date().toISOString(), accepted, differences };
    store.setMeta(DRIFT_META, JSON.stringify(report));
    if (signature !== this.lastSignature) {
      this.lastSignature = signature;
      const text = differences.map((d) => d.message).join('; ');
      if (accepted) this.note('warn', `schema drift accepted by the operator, replay goes on: ${text}`);
      else {
        this.opts.log.warn({ differences }, 'schema drift: replay paused, capture goes on');
        store.event('warn', 'paused', `schema drift, replay paused: ${text}`);
      }
    }
    if (!accepted && reason === null) store.setPaused(DRIFT_PAUSE);
    if (accepted && reason === DRIFT_PAUSE) store.setPaused(null);
    return accepted;
  }

  private note(level: 'info' | 'warn', message: string): void {
    this.opts.log[level](message);
    this.opts.store.event(level, this.opts.store.phase(), message);
  }
}

/** An operator's resume during a drift pause accepts the differences seen then (until they change). */
export function acceptDrift(s: CheckpointStore): void {
  const current = driftReport(s);
  if (current) s.setMeta(DRIFT_ACCEPTED_META, differencesSignature(current.differences));
}

/** The current drift report, if any. */
export function driftReport(s: CheckpointStore): DriftReport | null {
  const current = s.getMeta(DRIFT_META);
  return current ? (JSON.parse(current) as DriftReport) : null;
}
