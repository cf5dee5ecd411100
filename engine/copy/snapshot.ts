// One exported snapshot shared by the copy workers (pg_export_snapshot). The exporting
// transaction must stay open for as long as any worker may still SET TRANSACTION SNAPSHOT to it:
// this session holds it, idle in transaction, and nothing else.
// https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
import type pg from 'pg';
import { PgferryError, stateOf } from '../../lib/errors.js';
import type { ConnInfo } from '../shared/conn-info.js';
import { connect, q } from '../shared/db.js';

export class ExportedSnapshot {
  private constructor(
    private readonly client: pg.Client,
    readonly id: string,
    readonly takenAt: number,
  ) {}

  static async take(source: ConnInfo): Promise<ExportedSnapshot> {
    const client = await connect(source, 'snapshot');
    try {
      await q(client, 'source', 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const [row] = await q<{ id: string }>(client, 'source', 'SELECT pg_export_snapshot() AS id');
      return new ExportedSnapshot(client, row!.id, Date.now());
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  }

  ageMs(): number {
    return Date.now() - this.takenAt;
  }

  async release(): Promise<void> {
    await this.client.query('COMMIT').catch(() => {});
    await this.client.end().catch(() => {});
  }
}

/** Opens a worker's transaction on the shared snapshot. */
export async function joinSnapshot(client: pg.Client, snapshot: ExportedSnapshot): Promise<void> {
  await q(client, 'source', 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // The snapshot id comes from the server and has a fixed format; it cannot be a bind parameter.
  try {
    await q(client, 'source', `SET TRANSACTION SNAPSHOT '${snapshot.id.replace(/'/g, '')}'`);
  } catch (err) {
    // 22023: the session that exported the snapshot is gone (a source restart or a cut link took
    // it): the snapshot went with it. That is an outage of the source, which the run waits out
    // and resumes from with a fresh snapshot.
    if (stateOf(err) !== '22023') throw err;
    throw new PgferryError(
      'PGFERRY_SOURCE_CONNECT',
      `the copy's exported snapshot ${snapshot.id} was lost with the session that held it`,
      { side: 'source', cause: err },
    );
  }
}

/**
 * The snapshots a copy runs under. With --copy-only there is one for the whole copy. With capture
 * on, correctness does not need one snapshot (every change since capture was installed is in the
 * log, and replay writes current state), and holding one for hours would stop vacuum on the
 * production source: a snapshot older than maxAgeMs is replaced by a fresh one, and the old one
 * is released once no worker uses it any more.
 */
export class SnapshotPool {
  private current: ExportedSnapshot | undefined;
  private taking: Promise<ExportedSnapshot> | undefined;
  private readonly users = new Map<ExportedSnapshot, number>();

  constructor(
    private readonly source: ConnInfo,
    private readonly maxAgeMs: number | null,
    initial?: ExportedSnapshot,
    private readonly onRenew?: (fresh: ExportedSnapshot, previous: ExportedSnapshot | undefined) => void,
  ) {
    this.current = initial;
  }

  /**
   * The snapshot a worker should join now, already counted as in use: it cannot be released by
   * another worker's renewal while this one is still on its way to SET TRANSACTION SNAPSHOT.
   * Every acquire() is paired with one leave().
   */
  async acquire(): Promise<ExportedSnapshot> {
    const cur = this.current;
    if (cur && !this.stale(cur)) {
      this.use(cur);
      return cur;
    }
    this.taking ??= ExportedSnapshot.take(this.source).then(
      (fresh) => {
        this.current = fresh;
        this.taking = undefined;
        this.onRenew?.(fresh, cur);
        if (cur) void this.releaseIfUnused(cur);
        return fresh;
      },
      (err) => {
        this.taking = undefined;
        throw err;
      },
    );
    // Counted in the same microtask chain that made it current: no renewal can complete between.
    const fresh = await this.taking;
    this.use(fresh);
    return fresh;
  }

  /**
   * Age of the oldest snapshot the pool holds open on the source (the current one, or an older one
   * a worker still copies under): vacuum keeps every row version newer than it. Null when none.
   */
  oldestAgeMs(): number | null {
    const held = new Set([...this.users.keys(), ...(this.current ? [this.current] : [])]);
    return held.size > 0 ? Math.max(...[...held].map((s) => s.ageMs())) : null;
  }

  /** Whether a worker in this snapshot should move to a newer one before its next chunk. */
  stale(s: ExportedSnapshot): boolean {
    return s !== this.current || (this.maxAgeMs !== null && s.ageMs() >= this.maxAgeMs);
  }

  private use(s: ExportedSnapshot): void {
    this.users.set(s, (this.users.get(s) ?? 0) + 1);
  }

  async leave(s: ExportedSnapshot): Promise<void> {
    this.users.set(s, (this.users.get(s) ?? 1) - 1);
    if (s !== this.current) await this.releaseIfUnused(s);
  }

  private async releaseIfUnused(s: ExportedSnapshot): Promise<void> {
    if ((this.users.get(s) ?? 0) > 0) return;
    this.users.delete(s);
    await s.release();
  }

  async close(): Promise<void> {
    const all = new Set([...this.users.keys(), ...(this.current ? [this.current] : [])]);
    this.current = undefined;
    this.users.clear();
    await Promise.all([...all].map((s) => s.release()));
  }
}
