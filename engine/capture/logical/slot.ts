// A logical run's objects on the source: its publication (the captured tables) and its
// replication slot (pgoutput), both named after the run. Publishing a table waits for the writes
// in flight on it, as CREATE TRIGGER does: pgoutput decodes a change with the catalog as of the
// change, so a transaction that wrote before the table joined the publication and commits after
// would be in neither the stream nor a snapshot taken now.
import type pg from 'pg';
import type { Logger } from 'pino';
import { stateOf } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { qualified, quoteIdent, quoteLiteral } from '../../../lib/sql.js';
import { PGFERRY_SCHEMA, type TableInfo } from '../../shared/catalog.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { connect, q } from '../../shared/db.js';
import type { InstallOptions } from '../change-source.js';
import { CAPTURED_TABLE } from '../registry.js';
import { underShortLocks } from '../triggers/triggers.js';
import { reportingWaits } from './waits.js';

export const slotName = (runId: string) => `pgferry_${runId}`;
export const publicationName = (runId: string) => `pgferry_${runId}`;

/** The run's publication, empty at first (tables join it one by one). */
export async function ensurePublication(client: pg.Client, runId: string): Promise<void> {
  const [row] = await q<{ ok: boolean }>(
    client,
    'source',
    'SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS ok',
    [publicationName(runId)],
  );
  if (row?.ok) return;
  await q(
    client,
    'source',
    `CREATE PUBLICATION ${quoteIdent(publicationName(runId))} WITH (publish = 'insert, update, delete, truncate')`,
  );
}

/**
 * Adds a table to the run's publication and records it as captured, in one transaction that
 * first takes SHARE on the table: it waits for every transaction writing to it to end (their
 * rows are then visible to any later snapshot) and holds new writers until the table is in the
 * publication. A partitioned table brings its partitions (their changes come under their own
 * names); a plain or inheritance parent is added ONLY, its children being tables of their own.
 */
export async function publishTable(
  client: pg.Client,
  runId: string,
  table: TableInfo,
  opts: InstallOptions,
): Promise<void> {
  const name = qualified(table.schema, table.name);
  await underShortLocks(client, `${table.schema}.${table.name}`, opts, 'install', async () => {
    await client.query(`LOCK TABLE ${name} IN SHARE MODE`);
    const { rows } = await client.query<{ ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                       WHERE p.pubname = $1 AND r.prrelid = $2) AS ok`,
      [publicationName(runId), table.oid],
    );
    if (!rows[0]?.ok) {
      await client.query(
        `ALTER PUBLICATION ${quoteIdent(publicationName(runId))} ADD TABLE ${table.kind === 'p' ? '' : 'ONLY '}${name}`,
      );
    }
    await client.query(
      `INSERT INTO ${qualified(PGFERRY_SCHEMA, CAPTURED_TABLE)} (run_id, relid, schema_name, table_name, log_table)
       VALUES ($1, $2, $3, $4, '') ON CONFLICT DO NOTHING`,
      [runId, table.oid, table.schema, table.name],
    );
  });
}

/** Takes a table out of the publication and forgets it (a table leaving the run). Idempotent. */
export async function unpublishTable(
  client: pg.Client,
  runId: string,
  table: { schema: string; name: string; oid: number },
  opts: InstallOptions,
): Promise<void> {
  await underShortLocks(client, `${table.schema}.${table.name}`, opts, 'removal', async () => {
    const { rows } = await client.query<{ ok: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                       WHERE p.pubname = $1 AND r.prrelid = $2) AS ok`,
      [publicationName(runId), table.oid],
    );
    if (rows[0]?.ok) {
      await client.query(
        `ALTER PUBLICATION ${quoteIdent(publicationName(runId))} DROP TABLE ${qualified(table.schema, table.name)}`,
      );
    }
    await client.query(
      `DELETE FROM ${qualified(PGFERRY_SCHEMA, CAPTURED_TABLE)} WHERE run_id = $1 AND relid = $2`,
      [runId, table.oid],
    );
  });
}

export interface SlotInfo {
  exists: boolean;
  active: boolean;
  activePid: number | null;
  confirmed: string | null;
}

export async function slotInfo(client: pg.Client, runId: string): Promise<SlotInfo> {
  const [row] = await q<{ active: boolean; pid: number | null; confirmed: string | null }>(
    client,
    'source',
    `SELECT active, active_pid AS pid, confirmed_flush_lsn::text AS confirmed
       FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`,
    [slotName(runId)],
  );
  return row
    ? { exists: true, active: row.active, activePid: row.pid, confirmed: row.confirmed }
    : { exists: false, active: false, activePid: null, confirmed: null };
}

/**
 * Creating a slot waits for every transaction open on the source, on their ids' locks, however
 * long they last: the session's lock_timeout would end that wait. A wait on a transaction id
 * holds nobody else up.
 */
export async function waitWithoutLockTimeout(client: pg.Client): Promise<void> {
  await client.query('SET lock_timeout = 0');
}

/**
 * Creates the run's slot on a replication session, or finds it there (a resumed run): true when it
 * was created now. Creating a slot waits for every transaction running on the source to end. No
 * snapshot is exported: the slot is checked first (slot-probe.ts), which it must not be in use
 * for, and the copy's snapshots, all taken after it, see every change the slot does not stream.
 */
export async function createSlot(
  source: ConnInfo,
  runId: string,
  report: { client: pg.Client; log: Logger },
): Promise<boolean> {
  const client = await connect(source, 'replication');
  try {
    const slot = slotName(runId);
    const pid = (client as unknown as { processID: number }).processID;
    await waitWithoutLockTimeout(client);
    await reportingWaits(
      report.client,
      `creating slot ${slot}`,
      { waiter: pid },
      report.log,
      client.query(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT`),
    );
    return true;
  } catch (err) {
    // 42710: it exists (created by this run before a crash).
    if (stateOf(err) === '42710') return false;
    throw err;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Drops a slot (ending its walsender first when `force`: a live run's, or a killed one's that
 * has not noticed yet) and a publication; each idempotent.
 */
export async function dropSlot(client: pg.Client, slot: string, force: boolean): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const [row] = await q<{ active: boolean; pid: number | null }>(
      client,
      'source',
      'SELECT active, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (!row) return false;
    if (row.active && row.pid !== null && (force || attempt > 5)) {
      await q(client, 'source', 'SELECT pg_terminate_backend($1)', [row.pid]);
    }
    try {
      await q(client, 'source', 'SELECT pg_drop_replication_slot($1)', [slot]);
      return true;
    } catch (err) {
      // 55006: still active (a walsender ending); 42704: dropped meanwhile.
      if (stateOf(err) === '42704') return false;
      if (stateOf(err) !== '55006' || attempt >= 20) throw err;
      await sleep(250);
    }
  }
}

/** The slots and publications pgferry runs made on this database (of one run, or of all). */
export async function logicalObjects(
  client: pg.Client,
  runId: string | undefined,
): Promise<{ slots: string[]; publications: string[] }> {
  // Exactly the names pgferry gives (slotName: a run id is 10 hex digits, engine/run/binding.ts),
  // not every name that starts with pgferry_: a slot of someone else's so named is not ours to drop.
  const pattern = runId ? `^${slotName(runId)}$` : '^pgferry_[0-9a-f]{10}$';
  const slots = await q<{ name: string }>(
    client,
    'source',
    `SELECT slot_name AS name FROM pg_replication_slots
      WHERE database = current_database() AND slot_name ~ ${quoteLiteral(pattern)} ORDER BY 1`,
  );
  const pubs = await q<{ name: string }>(
    client,
    'source',
    `SELECT pubname AS name FROM pg_publication WHERE pubname ~ ${quoteLiteral(pattern)} ORDER BY 1`,
  );
  return { slots: slots.map((s) => s.name), publications: pubs.map((p) => p.name) };
}
