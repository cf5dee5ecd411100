// One exported snapshot shared by the copy workers (pg_export_snapshot). The exporting
// transaction must stay open for as long as any worker may still SET TRANSACTION SNAPSHOT to it:
// this session holds it, idle in transaction, and nothing else.
// https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
import type pg from 'pg';
import type { ConnInfo } from './conn-info.js';
import { connect, q } from './db.js';

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
  await q(client, 'source', `SET TRANSACTION SNAPSHOT '${snapshot.id.replace(/'/g, '')}'`);
}
