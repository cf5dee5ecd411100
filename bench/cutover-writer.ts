// The cutover bench's outside writer: the application as a user sees it. One INSERT at a time into
// a table of its own, on the source until a write is refused (the freeze ends its session, or the
// database is read-only), then on the target as soon as `ready()` says pgferry declared the target
// ready. The gap between its last accepted write on the source and its first on the target is the
// write downtime the application saw.
import pg from 'pg';

export const WRITER_TABLE = 'bench_writer';
export const WRITER_DDL = `CREATE TABLE ${WRITER_TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL)`;
const INSERT = `INSERT INTO ${WRITER_TABLE} (id, at) VALUES ($1, now())`;
const POLL_MS = 5;

/** Milliseconds since the epoch with sub-millisecond precision (pino's `time` is in the same epoch). */
export const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WriterResult {
  /** Ids whose INSERT the source acknowledged. */
  sourceAccepted: number[];
  /** The id of the refused INSERT: it may or may not have committed (the session ended mid-flight). */
  inDoubt: number | null;
  refusal: { code: string | null; message: string } | null;
  /** When the source acknowledged the last accepted write, and when the first write was refused. */
  lastSourceAckMs: number;
  refusedAtMs: number | null;
  /** When `ready()` first said yes, and when the target acknowledged the first write. */
  readySeenMs: number;
  firstTargetAckMs: number;
  targetAccepted: number[];
}

/**
 * Runs until `targetWrites` rows were accepted by the target. Both connections are opened before
 * the first write: the application's pool to the target exists before the cutover, so the gap
 * measures pgferry, not a TCP and authentication handshake.
 */
export async function runWriter(opts: {
  sourceUrl: string;
  targetUrl: string;
  ready: () => boolean;
  targetWrites: number;
  /** Resolves when the writer has made its first write on the source. */
  onStarted?: () => void;
  signal: AbortSignal;
}): Promise<WriterResult> {
  const source = new pg.Client({ connectionString: opts.sourceUrl, application_name: 'bench-writer' });
  const target = new pg.Client({ connectionString: opts.targetUrl, application_name: 'bench-writer' });
  // A session ended by the freeze emits 'error' on the client too: the failed query reports it.
  source.on('error', () => {});
  target.on('error', () => {});
  await Promise.all([source.connect(), target.connect()]);
  const r: WriterResult = {
    sourceAccepted: [],
    inDoubt: null,
    refusal: null,
    lastSourceAckMs: Number.NaN,
    refusedAtMs: null,
    readySeenMs: Number.NaN,
    firstTargetAckMs: Number.NaN,
    targetAccepted: [],
  };
  let id = 1;
  try {
    while (!opts.ready()) {
      opts.signal.throwIfAborted();
      try {
        await source.query(INSERT, [id]);
        r.lastSourceAckMs = nowMs();
        r.sourceAccepted.push(id);
        if (id === 1) opts.onStarted?.();
        id += 1;
      } catch (err) {
        r.refusedAtMs = nowMs();
        r.inDoubt = id;
        r.refusal = { code: (err as { code?: string }).code ?? null, message: (err as Error).message };
        id += 1;
        break;
      }
    }
    while (!opts.ready()) {
      opts.signal.throwIfAborted();
      await sleep(POLL_MS);
    }
    r.readySeenMs = nowMs();
    while (r.targetAccepted.length < opts.targetWrites) {
      try {
        await target.query(INSERT, [id]);
      } catch (err) {
        throw new Error(
          `the target refused write ${id} after pgferry declared it ready: ${(err as Error).message}`,
        );
      }
      if (r.targetAccepted.length === 0) r.firstTargetAckMs = nowMs();
      r.targetAccepted.push(id);
      id += 1;
    }
    return r;
  } finally {
    await Promise.all([source.end().catch(() => {}), target.end().catch(() => {})]);
  }
}
