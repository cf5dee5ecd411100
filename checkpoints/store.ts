// The checkpoint store: one SQLite file (WAL mode) holding the run's setup, its phases, tables,
// chunks, deferred schema objects and events. Everything pgferry needs to resume after a crash
// is here; nothing secret is (connection identities are stored without passwords).
// This module is the store's surface: its vocabulary (phases, records) and CheckpointStore, whose
// methods keep their SQL in one module per part of the file (open, lock, meta, run-setup,
// copy-plan, schema-objects, captures, events). checkpoints/ imports only lib/.
import type Database from 'better-sqlite3';
import * as captured from './captures.js';
import * as copyPlan from './copy-plan.js';
import * as eventLog from './events.js';
import * as lock from './lock.js';
import * as meta from './meta.js';
import { checkSchema, migrateSchema, openDatabase } from './open.js';
import * as runSetup from './run-setup.js';
import * as objects from './schema-objects.js';
import * as requests from './table-requests.js';

export const PHASES = [
  'preflight',
  'schema',
  'copy',
  'indexes',
  'replicating',
  'paused',
  'cutover',
  'done',
  'failed',
] as const;
export type Phase = (typeof PHASES)[number];

/** A server as the run knows it: its URL's spelling (for messages) and what it is (for checks). */
export interface ServerIdentity {
  host: string;
  port: number;
  database: string;
  user: string;
  /** pg_control_system()'s system identifier, or null where the service hides it. */
  systemIdentifier: string | null;
  databaseOid: number;
  databaseName: string;
}

export interface RunSetup {
  /** Names this run's capture objects on the source and its mark on the target. */
  runId: string;
  source: ServerIdentity;
  target: ServerIdentity;
  include: string[];
  exclude: string[];
  mode: 'copy-only' | 'replicate';
  /** Where replay reads the source's changes (--capture); absent in a file of an older pgferry: triggers. */
  capture?: 'triggers' | 'bucardo' | 'logical';
}

export const CHUNK_STATES = ['pending', 'copying', 'done'] as const;
export type ChunkState = (typeof CHUNK_STATES)[number];

export interface TableRecord {
  id: number;
  schema: string;
  name: string;
  rowsEstimate: number;
  bytesEstimate: number;
  /** JSON of KeyColumn[] or null for a table copied whole. */
  keyColumns: string | null;
  columns: string;
  copyFormat: 'binary' | 'text';
  rowsCopied: number;
  bytesCopied: number;
  chunksTotal: number;
  chunksDone: number;
}

export interface ChunkRecord {
  id: number;
  tableId: number;
  seq: number;
  /** JSON array of the key's text values, or null for an open end. */
  lo: string | null;
  hi: string | null;
  status: ChunkState;
  rows: number;
  bytes: number;
  attempts: number;
}

export const OBJECT_STAGES = ['indexes', 'unique', 'post-indexes', 'cutover'] as const;
export type ObjectStage = (typeof OBJECT_STAGES)[number];

export interface SchemaObjectRecord {
  id: number;
  stage: ObjectStage;
  kind: string;
  name: string;
  sql: string;
  status: 'pending' | 'done';
}

export interface CaptureRecord {
  oid: number;
  schema: string;
  name: string;
  logTable: string;
  keyColumns: string;
  columns: string;
  copyFormat: 'binary' | 'text';
  keyFormat: 'binary' | 'text';
  partitioned: number;
}

export type { TableAction, TableRequestRecord } from './table-requests.js';

export interface EventRecord {
  id: number;
  at: string;
  level: string;
  phase: string | null;
  message: string;
  data: string | null;
}

export class CheckpointStore {
  readonly file: string;
  private readonly db: Database.Database;
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
  }

  /** Opens (and with create, creates) a store. readonly opens never write and need no lock. */
  static open(file: string, opts: { create: boolean; readonly?: boolean }): CheckpointStore {
    const db = openDatabase(file, opts);
    if (!opts.readonly) migrateSchema(db, file);
    else checkSchema(db, file);
    return new CheckpointStore(file, db);
  }

  // ---- lock: one pgferry process per state file ----

  acquireLock(): void {
    this.heartbeat = lock.acquireLock(this.db, this.file);
  }

  /** The pgferry process driving this state file now (holding its lock), or null. */
  liveHolder(): { pid: number; host: string } | null {
    return lock.liveHolder(this.db);
  }

  /** Runs fn's writes as one transaction of the state file (one sync to disk instead of one each). */
  atomically<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.heartbeat) lock.releaseLock(this.db, this.heartbeat);
    if (this.db.open) this.db.close();
  }

  // ---- setup ----

  setup(): RunSetup | null {
    return runSetup.readSetup(this.db, this.file);
  }

  /** This run's id, or null before its setup is bound. */
  runId(): string | null {
    return this.setup()?.runId ?? null;
  }

  /**
   * Records the setup of a new run. Called only once every check of a new run has passed: a
   * refused run leaves a state file with no setup, and running it again is a new run, not a resume.
   */
  bindSetup(setup: RunSetup): void {
    runSetup.bindSetup(this.db, this.file, setup);
  }

  /**
   * Refuses a resume whose setup differs from the recorded one. Servers are compared by what they
   * are (system identifier, database oid), not by how their URLs are spelled.
   */
  checkResume(setup: Omit<RunSetup, 'runId'>): RunSetup {
    return runSetup.checkResume(this.db, this.file, setup);
  }

  // ---- phases ----

  phase(): Phase | null {
    return meta.currentPhase(this.db);
  }

  setPhase(phase: Phase): void {
    meta.enterPhase(this.db, phase);
  }

  phaseDone(phase: Phase): boolean {
    return meta.phaseDone(this.db, phase);
  }

  finishPhase(phase: Phase, finished = true): void {
    meta.finishPhase(this.db, phase, finished);
  }

  phases(): { name: string; startedAt: string; finishedAt: string | null }[] {
    return meta.phases(this.db);
  }

  getMeta(key: string): string | null {
    return meta.getMeta(this.db, key);
  }

  setMeta(key: string, value: string): void {
    meta.setMeta(this.db, key, value);
  }

  deleteMeta(key: string): void {
    meta.deleteMeta(this.db, key);
  }

  /** Why replay is paused (meta `paused`, kept across restarts), or null when it is not. */
  pauseReason(): string | null {
    return this.getMeta('paused');
  }

  /** Pauses replay with a reason, or (null) resumes it. */
  setPaused(reason: string | null): void {
    if (reason === null) this.deleteMeta('paused');
    else this.setMeta('paused', reason);
  }

  /** The phase as an operator sees it: `paused` while replay is held, otherwise the stored one. */
  reportedPhase(): Phase | null {
    const phase = this.phase();
    return phase === 'replicating' && this.pauseReason() !== null ? 'paused' : phase;
  }

  // ---- tables and chunks ----

  /** Records the copy plan of every table at once: a crash during planning leaves no half plan. */
  savePlan(plan: copyPlan.TablePlan[]): void {
    copyPlan.savePlan(this.db, plan);
  }

  hasPlan(): boolean {
    return copyPlan.hasPlan(this.db);
  }

  tables(): TableRecord[] {
    return copyPlan.tables(this.db);
  }

  chunks(filter: { status?: ChunkState[] } = {}): ChunkRecord[] {
    return copyPlan.chunks(this.db, filter);
  }

  startChunk(id: number): void {
    copyPlan.startChunk(this.db, id);
  }

  finishChunk(id: number, rows: number, bytes: number): void {
    copyPlan.finishChunk(this.db, id, rows, bytes);
  }

  removeTablePlan(schema: string, name: string): void {
    copyPlan.removeTablePlan(this.db, schema, name);
  }

  // ---- deferred schema objects (indexes after the copy, constraints and triggers at cutover) ----

  saveSchemaObjects(list: { stage: ObjectStage; kind: string; name: string; sql: string }[]): void {
    objects.saveSchemaObjects(this.db, list);
  }

  addSchemaObjects(list: { stage: ObjectStage; kind: string; name: string; sql: string }[]): void {
    objects.addSchemaObjects(this.db, list);
  }

  removeSchemaObjects(ids: number[]): void {
    objects.removeSchemaObjects(this.db, ids);
  }

  schemaObjects(stage?: ObjectStage): SchemaObjectRecord[] {
    return objects.schemaObjects(this.db, stage);
  }

  /** Marks every object of a stage to be created again (they were removed from the target). */
  resetSchemaObjects(stage: ObjectStage): void {
    objects.resetSchemaObjects(this.db, stage);
  }

  finishSchemaObject(id: number): void {
    objects.finishSchemaObject(this.db, id);
  }

  // ---- captured tables ----

  saveCapture(c: CaptureRecord): void {
    captured.saveCapture(this.db, c);
  }

  updateCapture(c: CaptureRecord): void {
    captured.updateCapture(this.db, c);
  }

  removeCapture(oid: number): void {
    captured.removeCapture(this.db, oid);
  }

  captures(): CaptureRecord[] {
    return captured.captures(this.db);
  }

  // ---- tables joining or leaving the run ----

  addTableRequest(action: requests.TableAction, pattern: string): requests.TableRequestRecord {
    return requests.addRequest(this.db, action, pattern);
  }

  tableRequest(id: number): requests.TableRequestRecord | null {
    return requests.request(this.db, id);
  }

  tableRequests(opts?: {
    states?: readonly requests.RequestState[];
    limit?: number;
  }): requests.TableRequestRecord[] {
    return requests.requests(this.db, opts);
  }

  updateTableRequest(
    id: number,
    change: Partial<Pick<requests.TableRequestRecord, 'state' | 'tables' | 'step' | 'detail' | 'error'>>,
  ): void {
    requests.updateRequest(this.db, id, change);
  }

  // ---- events ----

  event(level: 'info' | 'warn' | 'error', phase: string | null, message: string, data?: unknown): void {
    eventLog.appendEvent(this.db, level, phase, message, data);
  }

  /** The newest events, oldest first; with levels, only events of those levels. */
  events(limit = 20, levels?: readonly EventRecord['level'][]): EventRecord[] {
    return eventLog.latestEvents(this.db, limit, levels);
  }
}
