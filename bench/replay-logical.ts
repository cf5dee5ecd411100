// The replay benchmark's peer: PostgreSQL's native logical replication (pgoutput, a publication on
// the source, a subscription on the target) applying the same standing backlog that pgferry drains.
//
// Its subscriber is a database `bench_logical` on the target cluster, made with
// `CREATE DATABASE … TEMPLATE bench` right after pgferry's initial copy (verified equal to the
// source, and nothing writes to the source in between), so it starts with the same schema and data;
// the subscription is created with `copy_data = false, enabled = false`, which creates its slot on
// the source at once. Every change made after that (the capture-on pgbench run and the backlog
// statements, exactly the changes pgferry finds in its logs) waits in the slot's WAL. After pgferry
// has drained its logs, `ALTER SUBSCRIPTION … ENABLE` starts the apply worker; it has caught up when
// the subscriber's replication origin (`pg_replication_origin_status.remote_lsn`, the end of the last
// remote commit applied) passes a marker LSN taken inside the backlog's last transaction.
// https://www.postgresql.org/docs/15/logical-replication-subscription.html
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { type Cluster, SUPERUSER_PASSWORD } from '../test/support/cluster.js';
import { REPLAYED, withClient } from './replay-data.js';

const NAME = 'pgferry_bench_logical';
export const LOGICAL_DB = 'bench_logical';

export interface LogicalRun {
  method: string;
  /** Seconds from ALTER SUBSCRIPTION … ENABLE until the apply worker's pid shows. */
  worker_start_s: number;
  /** Seconds from ALTER SUBSCRIPTION … ENABLE until the backlog's last commit was applied. */
  catch_up_s: number;
  changes: number;
  changes_per_s: number;
  /** WAL between the slot's start and the marker: what the walsender decoded (pgferry's log inserts
   *  and pgbench_history's rows included; pgoutput sends only the published tables' changes). */
  wal_bytes: number;
  commands: string[];
}

/**
 * The last change of the backlog, in a transaction of its own: one UPDATE of a published (and
 * captured) row, and the WAL insert position before its commit record. A subscriber whose origin
 * has passed that position has applied this transaction, hence every one before it.
 */
export async function markBacklogEnd(sourceUrl: string): Promise<string> {
  return withClient(sourceUrl, async (c) => {
    await c.query('BEGIN');
    await c.query(MARKER_SQL);
    const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await c.query('COMMIT');
    return rows[0]!.lsn;
  });
}

export const MARKER_SQL = 'UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LogicalPeer {
  private startLsn = '';
  private readonly commands: string[] = [];
  private dropped = false;

  private constructor(
    private readonly src: Cluster,
    private readonly dst: Cluster,
    private readonly db: string,
  ) {}

  private get subscriberUrl() {
    return this.dst.url({ db: LOGICAL_DB });
  }

  /**
   * The subscriber database (a copy of the target's `db`, which must equal the source now and have
   * no session open), the publication and the disabled subscription with its slot.
   */
  static async create(src: Cluster, dst: Cluster, db: string): Promise<LogicalPeer> {
    const peer = new LogicalPeer(src, dst, db);
    try {
      await peer.setUp();
    } catch (err) {
      await peer.drop().catch(() => {});
      throw err;
    }
    return peer;
  }

  private async setUp(): Promise<void> {
    const id = pg.escapeIdentifier;
    const run = async (url: string, sql: string, shown = sql) => {
      this.commands.push(shown);
      await withClient(url, (c) => c.query(sql));
    };
    await run(this.dst.url(), `CREATE DATABASE ${id(LOGICAL_DB)} TEMPLATE ${id(this.db)}`);
    await run(
      this.src.url({ db: this.db }),
      `CREATE PUBLICATION ${id(NAME)} FOR TABLE ${REPLAYED.join(', ')}`,
    );
    const conninfo = (port: string, password: string) =>
      `host=127.0.0.1 port=${port} dbname=${this.db} user=postgres password=${password}`;
    const create = (info: string) =>
      `CREATE SUBSCRIPTION ${id(NAME)} CONNECTION ${pg.Client.prototype.escapeLiteral(info)} ` +
      `PUBLICATION ${id(NAME)} WITH (copy_data = false, enabled = false)`;
    await run(
      this.subscriberUrl,
      create(conninfo(String(this.src.port), SUPERUSER_PASSWORD)),
      create(conninfo('<port>', '…')),
    );
    const [slot] = await this.src.query<{ lsn: string }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [NAME],
    );
    if (!slot) throw new Error(`CREATE SUBSCRIPTION made no slot ${NAME} on the source`);
    this.startLsn = slot.lsn;
  }

  /** Enables the subscription, waits until the origin passes `markerLsn`, then disables it again. */
  async catchUp(markerLsn: string, changes: number): Promise<LogicalRun> {
    const [wal] = await this.src.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS bytes', [
      markerLsn,
      this.startLsn,
    ]);
    return withClient(this.subscriberUrl, async (c) => {
      const enable = `ALTER SUBSCRIPTION ${pg.escapeIdentifier(NAME)} ENABLE`;
      this.commands.push(enable);
      const t0 = performance.now();
      await c.query(enable);
      let workerStart = Number.NaN;
      for (const deadline = Date.now() + 600_000; ; ) {
        const { rows } = await c.query<{ pid: number | null; done: boolean | null }>(
          `SELECT (SELECT pid FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.relid IS NULL) AS pid,
                  o.remote_lsn > $2::pg_lsn AS done
             FROM pg_subscription s
             LEFT JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.oid
            WHERE s.subname = $1`,
          [NAME, markerLsn],
        );
        const now = performance.now();
        if (Number.isNaN(workerStart) && rows[0]?.pid) workerStart = (now - t0) / 1000;
        if (rows[0]?.done) {
          const seconds = (now - t0) / 1000;
          await c.query(`ALTER SUBSCRIPTION ${pg.escapeIdentifier(NAME)} DISABLE`);
          return {
            method:
              'publication of the three keyed pgbench tables; subscription into a TEMPLATE copy of the ' +
              'target database with copy_data = false, enabled = false (slot made before the backlog), ' +
              'other options default (streaming off, synchronous_commit off); timed from ENABLE until ' +
              "the subscriber's origin passes the backlog's last commit",
            worker_start_s: workerStart,
            catch_up_s: seconds,
            changes,
            changes_per_s: changes / seconds,
            wal_bytes: Number(wal?.bytes ?? 0),
            commands: this.commands,
          };
        }
        if (Date.now() > deadline)
          throw new Error(`logical replication did not catch up within 10 minutes\n${await this.diagnose()}`);
        await sleep(20);
      }
    });
  }

  /** The subscriber database's URL (for the equality checks). */
  get url(): string {
    return this.subscriberUrl;
  }

  /** ALTER SUBSCRIPTION … ENABLE or DISABLE; disabling waits until the walsender has gone. */
  async setEnabled(on: boolean): Promise<void> {
    await withClient(this.subscriberUrl, (c) =>
      c.query(`ALTER SUBSCRIPTION ${pg.escapeIdentifier(NAME)} ${on ? 'ENABLE' : 'DISABLE'}`),
    );
    if (on) return;
    for (const deadline = Date.now() + 30_000; ; ) {
      const [slot] = await this.src.query<{ active: boolean }>(
        'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
        [NAME],
      );
      if (!slot?.active) return;
      if (Date.now() > deadline) throw new Error(`slot ${NAME} still active 30 s after DISABLE`);
      await sleep(50);
    }
  }

  /** Seconds until the enabled subscription's origin passes `markerLsn` (see markBacklogEnd). */
  async waitApplied(markerLsn: string, timeoutMs = 600_000): Promise<number> {
    const t0 = performance.now();
    return withClient(this.subscriberUrl, async (c) => {
      for (const deadline = Date.now() + timeoutMs; ; ) {
        const { rows } = await c.query<{ done: boolean | null }>(
          `SELECT o.remote_lsn > $2::pg_lsn AS done
             FROM pg_subscription s
             JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.oid
            WHERE s.subname = $1`,
          [NAME, markerLsn],
        );
        if (rows[0]?.done) return (performance.now() - t0) / 1000;
        if (Date.now() > deadline)
          throw new Error(
            `logical replication did not pass ${markerLsn} within ${timeoutMs / 1000} s\n${await this.diagnose()}`,
          );
        await sleep(20);
      }
    });
  }

  /**
   * Why the subscriber has not got there: its apply worker, the slot on the source, and the last
   * errors in the subscriber server's log (an apply worker that fails restarts and fails again).
   */
  private async diagnose(): Promise<string> {
    const facts: string[] = [];
    const tryAdd = async (what: string, fn: () => Promise<unknown>) => {
      try {
        facts.push(`${what}: ${JSON.stringify(await fn())}`);
      } catch (err) {
        facts.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    await tryAdd('worker', () =>
      this.dst.query(
        'SELECT pid, received_lsn::text, latest_end_lsn::text, last_msg_receipt_time::text FROM pg_stat_subscription',
        [],
        LOGICAL_DB,
      ),
    );
    await tryAdd('slot', () =>
      this.src.query(
        'SELECT active, restart_lsn::text, confirmed_flush_lsn::text, pg_current_wal_lsn()::text AS now FROM pg_replication_slots WHERE slot_name = $1',
        [NAME],
      ),
    );
    try {
      const log = fs.readFileSync(path.join(path.dirname(this.dst.dataDir), 'postgres.log'), 'utf8');
      const errors = log.split('\n').filter((l) => /ERROR|FATAL|PANIC/.test(l));
      facts.push(`subscriber log, last errors:\n${errors.slice(-8).join('\n') || '(none)'}`);
    } catch (err) {
      facts.push(`subscriber log: ${err instanceof Error ? err.message : String(err)}`);
    }
    return facts.join('\n');
  }

  /** Subscription, slot, publication and subscriber database, each dropped even if another fails. */
  async drop(): Promise<void> {
    if (this.dropped) return;
    this.dropped = true;
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const sub = pg.escapeIdentifier(NAME);
    // Detached from its slot first, so that dropping it never depends on the source; the slot is
    // dropped on the source below, once its walsender has gone.
    await attempt('subscription', () =>
      withClient(this.subscriberUrl, async (c) => {
        const { rows } = await c.query('SELECT 1 FROM pg_subscription WHERE subname = $1', [NAME]);
        if (rows.length === 0) return;
        await c.query(`ALTER SUBSCRIPTION ${sub} DISABLE`);
        await c.query(`ALTER SUBSCRIPTION ${sub} SET (slot_name = NONE)`);
        await c.query(`DROP SUBSCRIPTION ${sub}`);
      }),
    );
    await attempt('replication slot', async () => {
      for (const deadline = Date.now() + 30_000; ; ) {
        const [slot] = await this.src.query<{ active: boolean }>(
          'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
          [NAME],
        );
        if (!slot) return;
        if (!slot.active) {
          await this.src.query('SELECT pg_drop_replication_slot($1)', [NAME]);
          return;
        }
        if (Date.now() > deadline) throw new Error(`slot ${NAME} still active after 30 s`);
        await sleep(100);
      }
    });
    await attempt('publication', () =>
      this.src.query(`DROP PUBLICATION IF EXISTS ${pg.escapeIdentifier(NAME)}`, [], this.db),
    );
    await attempt('subscriber database', () =>
      this.dst.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(LOGICAL_DB)} WITH (FORCE)`),
    );
    if (errors.length > 0) throw new Error(`logical replication clean-up: ${errors.join('; ')}`);
  }
}
