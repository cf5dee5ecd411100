// The `migrate` pipeline: schema → capture → copy → indexes → replay (→ cutover), or with
// --copy-only schema → copy → indexes → the deferred objects and sequences at once. Every phase is
// recorded in the checkpoint store and skipped on resume once finished.
import PQueue from 'p-queue';
import type pg from 'pg';
import type { Logger } from 'pino';
import { CheckpointStore, type Phase } from '../checkpoints/store.js';
import { isPgferryError, PgferryError, redact } from '../lib/errors.js';
import { sleep } from '../lib/sleep.js';
import { CaptureHeartbeat, type CaptureLogSize } from './capture/heartbeat.js';
import { ensureCaptureSchema, installedCapture, registerRun, requireCapture } from './capture/registry.js';
import { captureUnits, describeCapture, installCapture } from './capture/triggers.js';
import { ensureChunkMarks } from './copy/chunk-marks.js';
import { runCopy } from './copy/copy.js';
import { planChunks } from './copy/planner.js';
import { COPY_RATE_META, copyRate, type ProgressSnapshot } from './copy/progress.js';
import { ExportedSnapshot, SnapshotPool } from './copy/snapshot.js';
import { type CutoverResult, type CutoverSettings, cutover, DEFAULT_CUTOVER } from './cutover/cutover.js';
import { interruptedCutover } from './cutover/freeze-record.js';
import { Replayer, type ReplayStats } from './replay/replay.js';
import { bindRun } from './run/binding.js';
import type { RunControl } from './run/control.js';
import { dropRunMark, runMarkSql } from './run/identity.js';
import { analyzeTables } from './schema/analyze.js';
import { createDeferred } from './schema/deferred-objects.js';
import { refreshMatviews } from './schema/matviews.js';
import {
  applyPreData,
  classifyPostData,
  dumpSection,
  objectTable,
  parseDump,
  preparePreData,
} from './schema/schema.js';
import { syncSequences } from './schema/sequences.js';
import { copyUnits, splitTables, type TableInfo } from './shared/catalog.js';
import type { ConnInfo } from './shared/conn-info.js';
import { connect, q, withClient } from './shared/db.js';
import {
  DEFAULT_RETRY_FOR_MS,
  isConnectionLoss,
  OutageTracker,
  sideOf,
  writeOutages,
} from './shared/outage.js';
import { requireTool } from './shared/pg-tools.js';
import type { TableFilter } from './shared/table-filter.js';

export interface MigrateOptions {
  source: ConnInfo;
  target: ConnInfo;
  statePath: string;
  jobs: number;
  filter: TableFilter;
  /** copy-only: one snapshot, no capture, finish with sequences and deferred objects.
   *  exit-when-synced: capture, copy, replay until the backlog is drained, then return.
   *  run: capture, copy, replay until the signal aborts. */
  mode: 'copy-only' | 'exit-when-synced' | 'cutover-when-synced' | 'run';
  /** How the cutover runs (--cutover-when-synced). */
  cutover?: CutoverSettings;
  chunkBytes: number;
  /** With capture: a copy snapshot older than this is replaced by a fresh one. */
  maxSnapshotAgeMs: number;
  /** How long capture install retries a locked table before giving up on it. */
  captureLockWaitMs?: number;
  batchSize?: number;
  log: Logger;
  signal: AbortSignal;
  progressIntervalMs?: number;
  onProgress?: (p: ProgressSnapshot) => void;
  onReplayStats?: (s: ReplayStats) => void;
  /** After each applied replay batch (metrics). */
  onReplayBatch?: (table: string, changes: number, seconds: number) => void;
  /** A copy chunk or a replay batch failed with a transient error and is retried (metrics). */
  onRetry?: (code: string) => void;
  /** The operator's handle on the run (the HTTP API): store, pause, cutover requests. */
  control?: RunControl;
  /** How long a lost or refused connection is retried before the run fails (--retry-for). */
  retryForMs?: number;
  /** A side's lost connection is about to be retried (metrics). */
  onReconnect?: (side: 'source' | 'target') => void;
  /** The size of this run's capture log on the source, measured with each capture heartbeat (metrics). */
  onCaptureLog?: (size: CaptureLogSize) => void;
}

export interface MigrateResult {
  resumed: boolean;
  tables: number;
  rows: number;
  bytes: number;
  seconds: number;
  sequences: number;
  replay: ReplayStats | null;
  cutover: CutoverResult | null;
}

export async function migrate(opts: MigrateOptions): Promise<MigrateResult> {
  const started = Date.now();
  const store = CheckpointStore.open(opts.statePath, { create: true });
  try {
    store.acquireLock();
    opts.control?.attachStore(store);
    writeOutages(store, null);
    const outages = new OutageTracker({
      retryForMs: opts.retryForMs ?? DEFAULT_RETRY_FOR_MS,
      onChange: (o) => writeOutages(store, o),
      onRetry: opts.onReconnect,
    });
    // A connection lost anywhere ends this attempt of the run; the next one, once the server
    // answers, resumes from the checkpoints exactly as a restarted process would.
    for (;;) {
      const run = new MigrateRun(opts, store, outages);
      try {
        return await run.execute(started);
      } catch (err) {
        // A first start that cannot connect (a wrong host) is a configuration error, not an outage.
        if (opts.signal.aborted || !store.setup() || !isConnectionLoss(err)) throw err;
        const side = sideOf(err) ?? 'target';
        let wait: number;
        try {
          wait = outages.failed(side, err);
        } catch (giveUp) {
          store.event('error', store.phase(), (giveUp as PgferryError).oneLine());
          store.setPhase('failed');
          throw giveUp;
        }
        const o = outages.outages()[side]!;
        const why = (err as Error)?.message ?? String(err);
        store.event(
          'warn',
          store.phase(),
          `${side} unreachable (attempt ${o.attempts} since ${o.since}): ${why}`,
        );
        opts.log.warn(
          {
            side,
            attempts: o.attempts,
            since: o.since,
            retryInSeconds: Math.round(wait / 100) / 10,
            err: why,
          },
          `${side} unreachable: retrying`,
        );
        await sleep(wait, opts.signal);
        if (opts.signal.aborted)
          throw new PgferryError('PGFERRY_RUN_CANCELLED', `stopped while the ${side} was unreachable`);
      }
    }
  } finally {
    opts.control?.attachStore(null);
    store.close();
  }
}

class MigrateRun {
  private snapshots: SnapshotPool | undefined;
  private replay: ReplayStats | null = null;
  private cutover: CutoverResult | null = null;
  private src!: pg.Client;
  private dst!: pg.Client;
  private resumed = false;
  private readonly opts: MigrateOptions;
  /** Aborted when the heartbeat finds this run's capture removed from the source. */
  private readonly captureLost = new AbortController();
  private heartbeat: CaptureHeartbeat | undefined;

  constructor(
    opts: MigrateOptions,
    private readonly store: CheckpointStore,
    /** Each side's outage: recorded when a chunk or batch loses its connection, cleared when one succeeds. */
    private readonly outages: OutageTracker,
  ) {
    // The run stops on the operator's signal, or when its capture is removed under it.
    this.opts = { ...opts, signal: AbortSignal.any([opts.signal, this.captureLost.signal]) };
  }

  /** Both servers answered: an outage is over. */
  private readonly healthy = (): void => {
    this.outages.recovered('source');
    this.outages.recovered('target');
  };

  /** A chunk or a batch lost its connection and is being retried: the outage shows meanwhile. */
  private readonly lost = (err: unknown): void => {
    if (isConnectionLoss(err)) this.outages.noted(sideOf(err) ?? 'target', err);
  };

  private get copyOnly(): boolean {
    return this.opts.mode === 'copy-only';
  }

  private enter(phase: Phase): void {
    this.store.setPhase(phase);
    this.store.event('info', phase, `${phase} started`);
    this.opts.log.info({ phase }, `${phase} started`);
  }

  private finish(phase: Phase): void {
    this.store.finishPhase(phase);
    this.store.event('info', phase, `${phase} finished`);
  }

  async execute(started: number): Promise<MigrateResult> {
    const { store, opts } = this;
    this.src = await connect(opts.source, 'control');
    try {
      this.dst = await connect(opts.target, 'control');
    } catch (err) {
      await this.src.end().catch(() => {});
      throw err;
    }
    try {
      this.resumed = await bindRun({
        ...opts,
        store,
        src: this.src,
        dst: this.dst,
        copyOnly: this.copyOnly,
        lockWaitMs: opts.captureLockWaitMs,
        completesCutover: opts.mode === 'cutover-when-synced',
      });
      this.healthy();
      if (store.phaseDone('done')) {
        opts.log.info('this run is already done; nothing to do');
        return this.result(started);
      }
      store.event('info', store.phase(), this.resumed ? 'run resumed' : 'run started');
      if (!this.copyOnly && store.getMeta('capture_installed')) {
        // Before anything is written: a capture removed meanwhile cannot be resumed.
        await requireCapture(
          this.src,
          store.runId()!,
          store.captures().map((c) => c.logTable),
        );
        await this.startHeartbeat();
      }
      if (!store.phaseDone('schema')) await this.schemaPhase();
      if (!this.copyOnly && !store.getMeta('capture_installed')) await this.installCapture();
      if (!store.phaseDone('copy')) await this.copyPhase();
      await this.releaseSnapshots();
      if (!store.phaseDone('indexes')) await this.indexPhase();
      if (this.copyOnly) {
        if (!store.phaseDone('cutover')) await this.finalizePhase();
        store.setPhase('done');
        this.finish('done');
        await dropRunMark(this.dst);
      } else {
        await this.replicatePhase();
      }
      // A run stopped by its capture's removal returns like a cancelled one: it failed.
      if (this.heartbeat?.removed) throw this.heartbeat.removed;
      return this.result(started);
    } catch (caught) {
      const err = this.heartbeat?.removed ?? caught;
      const cancelled = isPgferryError(err) && err.code === 'PGFERRY_RUN_CANCELLED';
      // A lost connection is migrate()'s to wait out, or to give up on.
      if (isConnectionLoss(err) && store.setup() && !opts.signal.aborted) throw err;
      const message = isPgferryError(err) ? err.oneLine() : redact(String((err as Error)?.message ?? err));
      store.event(cancelled ? 'warn' : 'error', store.phase(), cancelled ? 'stopped by signal' : message);
      if (!cancelled) store.setPhase('failed');
      throw err;
    } finally {
      await this.heartbeat?.stop();
      await this.releaseSnapshots();
      await Promise.all([this.src.end().catch(() => {}), this.dst.end().catch(() => {})]);
    }
  }

  /** This run's heartbeat on the source, from its capture's install (or resume) until the run ends. */
  private async startHeartbeat(): Promise<void> {
    if (this.heartbeat) return;
    this.heartbeat = new CaptureHeartbeat({
      source: this.opts.source,
      runId: this.store.runId()!,
      statePath: this.opts.statePath,
      log: this.opts.log,
      onRemoved: (err) => this.captureLost.abort(err),
      onLogSize: this.opts.onCaptureLog,
    });
    await this.heartbeat.start();
  }

  /** The copy's snapshots, shown to the operator (their age is a metric) while they are held. */
  private useSnapshots(pool: SnapshotPool): SnapshotPool {
    this.snapshots = pool;
    this.opts.control?.attachSnapshots(pool);
    return pool;
  }

  private async releaseSnapshots(): Promise<void> {
    this.opts.control?.attachSnapshots(null);
    await this.snapshots?.close();
    this.snapshots = undefined;
  }

  private result(started: number): MigrateResult {
    const tables = this.store.tables();
    return {
      resumed: this.resumed,
      tables: tables.length,
      rows: tables.reduce((a, t) => a + t.rowsCopied, 0),
      bytes: tables.reduce((a, t) => a + t.bytesCopied, 0),
      seconds: (Date.now() - started) / 1000,
      sequences: Number(this.store.getMeta('sequences_synced') ?? 0),
      replay: this.replay,
      cutover: this.cutover,
    };
  }

  private selectedTables(): Promise<{ selected: TableInfo[]; excluded: TableInfo[] }> {
    return splitTables(this.src, this.opts.filter, { lockWaitMs: this.opts.captureLockWaitMs });
  }

  private async schemaPhase(): Promise<void> {
    const { store, opts } = this;
    this.enter('schema');
    const [ver] = await q<{ n: string }>(
      this.src,
      'source',
      "SELECT current_setting('server_version_num') AS n",
    );
    const major = Math.floor(Number(ver!.n) / 10000);
    const pgDump = await requireTool('pg_dump', major);
    const psql = await requireTool('psql', 0);

    const { selected, excluded } = await this.selectedTables();
    // The schema is dumped under the snapshot the copy starts from; with capture, the copy needs
    // a snapshot taken after capture was installed, so this one only serves the dump.
    const snapshot = await ExportedSnapshot.take(opts.source);
    if (this.copyOnly) this.useSnapshots(new SnapshotPool(opts.source, null, snapshot));
    const dumpOpts = { pgDump, source: opts.source, snapshot: snapshot.id, excludedTables: excluded };
    if (!store.getMeta('predata_applied')) {
      const { script, skipped } = preparePreData(await dumpSection('pre-data', dumpOpts));
      for (const s of skipped) store.event('info', 'schema', `left out: ${s.type} ${s.name}`);
      // The run's mark commits with the schema: the target is this run's exactly when it has tables.
      const setup = store.setup()!;
      await applyPreData(psql, opts.target, `${script}\n${runMarkSql(setup.runId, setup.source)}\n`);
      store.setMeta('predata_applied', new Date().toISOString());
      opts.log.info({ tables: selected.length }, 'schema created on the target (pre-data)');
    }
    const { objects, skipped } = classifyPostData(
      parseDump(await dumpSection('post-data', dumpOpts)).entries,
    );
    for (const s of skipped) {
      store.event('warn', 'schema', `left out (needs a superuser): ${s.type} ${s.name}`);
      opts.log.warn({ object: s.name, kind: s.type }, 'left out: needs a superuser on the target');
    }
    if (!this.copyOnly) await snapshot.release();
    store.saveSchemaObjects(objects);
    const count = (stage: string) => objects.filter((o) => o.stage === stage).length;
    opts.log.info(
      { indexes: count('indexes'), afterIndexes: count('post-indexes'), atCutover: count('cutover') },
      'post-data recorded: keys and indexes are built after the copy, constraints and triggers at cutover',
    );
    this.finish('schema');
  }

  private async copyPhase(): Promise<void> {
    const { store, opts } = this;
    this.enter('copy');
    if (!store.hasPlan()) {
      const { selected } = await this.selectedTables();
      const plan = [];
      for (const t of copyUnits(selected)) {
        const writable = t.columns.filter((c) => !c.generated);
        const chunks = await planChunks(this.src, t, { chunkBytes: opts.chunkBytes, jobs: opts.jobs });
        plan.push({
          schema: t.schema,
          name: t.name,
          rowsEstimate: t.rowsEstimate,
          bytesEstimate: t.bytes,
          keyColumns: t.primaryKey
            ? JSON.stringify(t.primaryKey.map((k) => ({ name: k.name, type: k.type })))
            : null,
          columns: JSON.stringify(writable.map((c) => c.name)),
          copyFormat: writable.every((c) => c.binaryPortable) ? ('binary' as const) : ('text' as const),
          chunks,
        });
      }
      store.savePlan(plan);
      opts.log.info(
        { tables: plan.length, chunks: plan.reduce((a, p) => a + p.chunks.length, 0) },
        'copy planned in primary-key ranges',
      );
    } else if (this.copyOnly && store.chunks({ status: ['done'] }).length > 0 && !this.snapshots) {
      const msg =
        'resuming the copy under a new snapshot: chunks copied before the restart came from an earlier one; if the source was written to meanwhile, verify the clone or start afresh';
      store.event('warn', 'copy', msg);
      opts.log.warn(msg);
    }
    await ensureChunkMarks(this.dst);
    const copyStarted = Date.now();
    const snapshots =
      this.snapshots ??
      this.useSnapshots(
        new SnapshotPool(
          opts.source,
          this.copyOnly ? null : opts.maxSnapshotAgeMs,
          undefined,
          (fresh, old) => {
            const what = old ? `snapshot renewed after ${Math.round(old.ageMs() / 1000)}s` : 'snapshot taken';
            store.event('info', 'copy', `${what}: ${fresh.id}`);
            opts.log.info({ snapshot: fresh.id }, what);
          },
        ),
      );
    // A table whose last chunk is in gets its primary key and indexes built while the other
    // tables still copy, one build at a time. A failure here is only logged: the index phase
    // builds whatever is left and reports it properly.
    const early = new PQueue({ concurrency: 1 });
    let rateSaved = 0;
    const final = await runCopy({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      jobs: opts.jobs,
      signal: opts.signal,
      snapshots,
      progressIntervalMs: opts.progressIntervalMs,
      onProgress: (p) => {
        // The rate and ETA for status (the HTTP API's page), at most once a second.
        if (Date.now() - rateSaved >= 1000 || p.chunksDone === p.chunksTotal) {
          store.setMeta(COPY_RATE_META, JSON.stringify(copyRate(p)));
          rateSaved = Date.now();
        }
        opts.onProgress?.(p);
      },
      onRetry: opts.onRetry,
      onLost: this.lost,
      onHealthy: this.healthy,
      onTableCopied: (t) =>
        void early.add(() =>
          createDeferred({
            target: opts.target,
            store,
            log: opts.log,
            signal: opts.signal,
            stage: 'indexes',
            concurrency: 1,
            settings: ["SET maintenance_work_mem = '256MB'"],
            only: (o) => {
              const on = objectTable(o.sql);
              return on !== null && on.schema === t.schema && on.name === t.name;
            },
          }).catch((err) =>
            opts.log.warn(
              { table: `${t.schema}.${t.name}`, err: (err as Error).message },
              'early index build failed; retried after the copy',
            ),
          ),
        ),
    }).finally(() => early.onIdle());
    opts.log.info(
      {
        rows: final.rows,
        bytes: final.bytes,
        seconds: (Date.now() - copyStarted) / 1000,
        rowsPerSec: final.rowsPerSec,
        bytesPerSec: final.bytesPerSec,
      },
      'copy finished',
    );
    this.finish('copy');
  }

  private async indexPhase(): Promise<void> {
    const { store, opts } = this;
    this.enter('indexes');
    const common = { target: opts.target, store, log: opts.log, signal: opts.signal };
    const t0 = Date.now();
    const built = await createDeferred({
      ...common,
      stage: 'indexes',
      concurrency: opts.jobs,
      settings: ["SET maintenance_work_mem = '256MB'"],
    });
    // Without capture the copy is one snapshot, so unique constraints hold already; with capture
    // they wait until replay has caught up once (see replicatePhase).
    if (this.copyOnly) await this.uniqueAndAfter();
    opts.log.info({ built, seconds: (Date.now() - t0) / 1000 }, 'primary keys and indexes built');
    this.finish('indexes');
  }

  /** Unique and exclusion constraints, then what follows indexes (partition index attach, statistics). */
  private async uniqueAndAfter(): Promise<void> {
    const { store, opts } = this;
    const common = { target: opts.target, store, log: opts.log, signal: opts.signal };
    await createDeferred({
      ...common,
      stage: 'unique',
      concurrency: opts.jobs,
      settings: ["SET maintenance_work_mem = '256MB'"],
    });
    await createDeferred({ ...common, stage: 'post-indexes', concurrency: 1 });
    store.setMeta('unique_built', new Date().toISOString());
    // Every copied table (partitions included) and, under capture, the partitioned roots.
    const roots = new Map<string, { schema: string; name: string }>();
    for (const t of store.tables()) {
      roots.set(`${t.schema}.${t.name}`, { schema: t.schema, name: t.name });
    }
    for (const c of store.captures()) roots.set(`${c.schema}.${c.name}`, { schema: c.schema, name: c.name });
    await analyzeTables(opts.target, [...roots.values()], opts.jobs, opts.log);
  }

  /**
   * Capture goes on before any copy snapshot is taken: CREATE TRIGGER waits for every transaction
   * that has written to the table to end, so a snapshot taken afterwards sees every write made
   * without the trigger, and every later write is in the log.
   */
  private async installCapture(): Promise<void> {
    const { store, opts } = this;
    const { selected } = await this.selectedTables();
    const runId = store.runId()!;
    await ensureCaptureSchema(this.src);
    await registerRun(this.src, { runId, statePath: opts.statePath });
    await this.startHeartbeat();
    const installed = await installedCapture(this.src, runId);
    let count = 0;
    for (const t of captureUnits(selected)) {
      const writable = t.columns.filter((c) => !c.generated);
      const keyNames = new Set(t.primaryKey?.map((k) => k.name));
      const c = installed.has(t.oid)
        ? describeCapture(runId, t)
        : await installCapture(
            this.src,
            runId,
            t,
            selected.filter((p) => p.partitionRoot?.schema === t.schema && p.partitionRoot?.name === t.name),
            { log: opts.log, signal: opts.signal, lockWaitMs: opts.captureLockWaitMs },
          );
      if (!installed.has(t.oid)) count++;
      store.saveCapture({
        oid: c.oid,
        schema: c.schema,
        name: c.name,
        logTable: c.logTable,
        keyColumns: JSON.stringify(c.key),
        columns: JSON.stringify(writable.map((col) => col.name)),
        copyFormat: writable.every((col) => col.binaryPortable) ? 'binary' : 'text',
        keyFormat: t.columns.filter((col) => keyNames.has(col.name)).every((col) => col.binaryPortable)
          ? 'binary'
          : 'text',
        partitioned: c.partitioned ? 1 : 0,
      });
    }
    store.setMeta('capture_installed', new Date().toISOString());
    store.event('info', 'copy', `capture installed on ${count} table(s)`);
    opts.log.info({ tables: count }, 'change capture installed on the source');
  }

  private async replicatePhase(): Promise<void> {
    const { store, opts } = this;
    // Only `--cutover-when-synced` gets here with an interrupted cutover (bindRun refuses the
    // rest): it completes that cutover before anything else.
    const interrupted = interruptedCutover(store) !== null;
    if (store.phase() !== 'replicating' && !interrupted) this.enter('replicating');
    let lastSaved = 0;
    const replayer = new Replayer({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      jobs: opts.jobs,
      signal: opts.signal,
      batchSize: opts.batchSize,
      untilSynced: opts.mode === 'exit-when-synced' || opts.mode === 'cutover-when-synced',
      // Under a live load the log is never empty: the cutover starts once the lag is small.
      syncedLagSeconds:
        opts.mode === 'cutover-when-synced' ? (opts.cutover ?? DEFAULT_CUTOVER).maxLagSeconds / 2 : undefined,
      onStats: (s) => {
        this.replay = s;
        if (Date.now() - lastSaved >= 1000) {
          store.setMeta('replay', JSON.stringify(s));
          lastSaved = Date.now();
        }
        opts.onReplayStats?.(s);
      },
      onBatch: opts.onReplayBatch,
      onRetry: opts.onRetry,
      onLost: this.lost,
      onHealthy: this.healthy,
    });
    // Its pooled sessions are closed whatever happens: after an outage the next attempt of the
    // run opens its own, and the source's connections stay bounded.
    try {
      await this.replicateWith(replayer, interrupted);
    } finally {
      await replayer.close();
    }
  }

  private async replicateWith(replayer: Replayer, interrupted: boolean): Promise<void> {
    const { store, opts } = this;
    if (interrupted) {
      this.cutover = await this.cutoverWith(replayer, opts.cutover ?? DEFAULT_CUTOVER);
      return;
    }
    if (!store.getMeta('unique_built')) {
      // Chunks copied under different snapshots may hold a unique value twice until replay has
      // applied every change once: one whole batch per table makes each table equal to the source
      // at that batch's snapshot, and unique constraints can then be built.
      const t0 = Date.now();
      const applied = await replayer.catchUp();
      opts.log.info(
        { changes: applied, seconds: (Date.now() - t0) / 1000 },
        'caught up once: building unique constraints',
      );
      await this.uniqueAndAfter();
      store.event('info', 'replicating', 'unique constraints built after the first catch-up');
    }
    const final = await this.replicateUntilDone(replayer);
    this.replay = final;
    store.setMeta('replay', JSON.stringify(final));
    if (this.cutover) return;
    if (opts.mode === 'cutover-when-synced' && !opts.signal.aborted) {
      opts.log.info(final, 'synced: starting the cutover');
      this.cutover = await this.cutoverWith(replayer, opts.cutover ?? DEFAULT_CUTOVER);
    } else if (opts.mode === 'exit-when-synced' && !opts.signal.aborted) {
      store.event('info', 'replicating', `synced: backlog drained (${final.appliedTotal} changes applied)`);
      opts.log.info(final, 'synced: the copy is done and the captured backlog is drained');
    } else {
      store.event('info', 'replicating', 'stopped by signal between batches');
    }
  }

  private cutoverWith(replayer: Replayer, settings: CutoverSettings): Promise<CutoverResult> {
    const { store, opts } = this;
    return cutover({
      source: opts.source,
      target: opts.target,
      store,
      log: opts.log,
      signal: opts.signal,
      jobs: opts.jobs,
      filter: opts.filter,
      replayer,
      retryForMs: opts.retryForMs,
      onReconnect: opts.onReconnect,
      ...settings,
    });
  }

  /**
   * The replay loop. A cutover requested through the API (opts.control) stops it between batches
   * and runs with this Replayer; if the cutover is refused or fails before the target is ready
   * (writes given back, phase replicating again), the requester hears why and replay goes on.
   */
  private async replicateUntilDone(replayer: Replayer): Promise<ReplayStats> {
    const { store, opts } = this;
    opts.control?.attachReplayer(replayer);
    try {
      for (;;) {
        const stats = await replayer.run();
        const task = opts.control?.takeTask();
        if (task) {
          if (opts.signal.aborted) {
            task.reject(new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before the task started'));
            return stats;
          }
          await task.run(replayer).then(task.resolve, task.reject);
          continue;
        }
        const request = opts.control?.takeCutover();
        if (!request) return stats;
        if (opts.signal.aborted) {
          request.reject(new PgferryError('PGFERRY_RUN_CANCELLED', 'stopped before the cutover started'));
          return stats;
        }
        opts.log.info({ ...request.settings }, 'cutover requested through the API: replay stopped');
        try {
          this.cutover = await this.cutoverWith(replayer, request.settings);
          request.resolve(this.cutover);
          return stats;
        } catch (err) {
          request.reject(err);
          if (opts.signal.aborted || store.phase() !== 'replicating') throw err;
          opts.log.warn(
            { err: isPgferryError(err) ? err.code : String(err) },
            'cutover did not happen: replay goes on',
          );
        }
      }
    } finally {
      opts.control?.attachReplayer(null);
    }
  }

  /** --copy-only has no cutover to wait for: sequences, constraints, triggers, matviews now. */
  private async finalizePhase(): Promise<void> {
    const { store, opts } = this;
    this.enter('cutover');
    const seqs = await syncSequences(this.src, this.dst);
    store.setMeta('sequences_synced', String(seqs.length));
    opts.log.info({ sequences: seqs.length }, 'sequences set to the source values');
    const created = await createDeferred({
      target: opts.target,
      store,
      log: opts.log,
      signal: opts.signal,
      stage: 'cutover',
      concurrency: 1,
    });
    opts.log.info({ objects: created }, 'foreign keys, triggers, rules and policies created');
    // A refresh runs the view's whole query: it gets the long timeout of an index build.
    const views = await withClient(opts.target, 'index', (long) => refreshMatviews(this.src, long));
    opts.log.info({ materializedViews: views.length }, 'materialized views refreshed');
    this.finish('cutover');
  }
}
