// A new logical slot is decoded once before the copy relies on it. PostgreSQL (15 and 17 alike;
// test/integration/logical-slot-probe.test.ts builds the case) can create a slot that no session
// will ever decode: while the slot is built, a transaction that changes the catalog (a TRUNCATE,
// a CREATE TABLE, a table rewrite) and commits while the builder still waits for the transactions
// of its start is not tracked (xact_decode skips commits before the FULL_SNAPSHOT state). A
// transaction that begins writing under the builder's next snapshot, while an older one still
// runs, then decodes under a catalog that misses that change, and every decoding of the slot stops
// there for good: "could not map filenode … to relation OID".
//
// Such a transaction began before the builder's xmin passed the catalog change, which happens at
// the first running-transactions record logged after every transaction older than the slot ended.
// So the probe waits for those, has such a record logged (creating a temporary slot logs one and
// waits in turn for the transactions it lists), waits for the WAL to be flushed, and then decodes
// everything the slot holds without consuming it. readySlot creates the run's slot, probes it and
// creates it again while nothing depends on it yet.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { CheckpointStore } from '../../../checkpoints/store.js';
import { PgferryError, stateOf } from '../../../lib/errors.js';
import { sleep } from '../../../lib/sleep.js';
import { quoteIdent } from '../../../lib/sql.js';
import type { ConnInfo } from '../../shared/conn-info.js';
import { connect, q } from '../../shared/db.js';
import { createSlot, dropSlot, publicationName, slotName, waitWithoutLockTimeout } from './slot.js';
import { reportingWaits } from './waits.js';

/** bgwriter logs a running-transactions record this often (LOG_SNAPSHOT_INTERVAL_MS) when WAL moved. */
const RUNNING_XACTS_INTERVAL_MS = 15_000;
const POLL_MS = 100;
/** The checkpoint store's record of the slot that decoded once after it was created. */
const CHECKED_META = 'logical_slot_checked';
/** Slots created and found unusable before the run gives up. */
const SLOT_ATTEMPTS = 5;

export function slotUnusable(slot: string, error: string): PgferryError {
  return new PgferryError(
    'PGFERRY_SLOT_UNUSABLE',
    `the source cannot decode replication slot ${slot} (${error}): PostgreSQL built it while a transaction changed the catalog (a TRUNCATE, CREATE TABLE or table rewrite), and the changes it holds are lost to this run`,
    { side: 'source' },
  );
}

/**
 * The run's slot, created (or found: a resumed run) and decoded once before the copy takes a
 * snapshot: a slot built unusable is dropped and created again while nothing depends on it, unless
 * chunks were copied since it was made (a run of an older pgferry). True when a slot was created
 * or checked now.
 */
export async function readySlot(
  client: pg.Client,
  source: ConnInfo,
  runId: string,
  opts: { store?: CheckpointStore; log: Logger; signal: AbortSignal; copied: boolean },
): Promise<boolean> {
  const slot = slotName(runId);
  let created = false;
  for (let attempt = 1; ; attempt++) {
    created = (await createSlot(source, runId, { client, log: opts.log })) || created;
    if (opts.store?.getMeta(CHECKED_META) === slot) return created;
    const error = await probeSlot(client, slot, publicationName(runId), {
      ...opts,
      source,
      tempSlot: `pgferry_probe_${runId}`,
    });
    if (error === null) {
      opts.store?.setMeta(CHECKED_META, slot);
      return true;
    }
    if (opts.copied || attempt >= SLOT_ATTEMPTS) throw slotUnusable(slot, error);
    const msg = `slot ${slot} cannot be decoded (${error}): PostgreSQL built it during a catalog change; creating it again`;
    opts.store?.event('warn', 'copy', msg);
    opts.log.warn({ slot, err: error }, msg);
    await dropSlot(client, slot, true);
  }
}

export interface ProbeOptions {
  source: ConnInfo;
  log: Logger;
  signal?: AbortSignal;
  /** The temporary slot's name (it ends with its session, before the probe returns). */
  tempSlot: string;
}

/** null when the slot decodes, or the server's error when it cannot. */
export async function probeSlot(
  client: pg.Client,
  slot: string,
  publication: string,
  opts: ProbeOptions,
): Promise<string | null> {
  await olderTransactionsEnded(client, opts);
  await logRunningTransactions(client, opts);
  await walFlushed(client, opts);
  for (let attempt = 1; ; attempt++) {
    try {
      // Decoding all the WAL since the slot's start can outlast a control statement's timeout.
      await q(client, 'source', 'SET statement_timeout = 0');
      await q(
        client,
        'source',
        `SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, pg_current_wal_flush_lsn(), NULL,
           'proto_version', '1', 'publication_names', $2)`,
        [slot, publication],
      );
      return null;
    } catch (err) {
      // XX000: the decoding's internal error (could not map filenode / filenumber to relation OID).
      if (stateOf(err) === 'XX000') return (err as Error).message;
      // 55006: the walsender that created the slot has not let it go yet.
      if (stateOf(err) !== '55006' || attempt >= 40) throw err;
      opts.signal?.throwIfAborted();
      await sleep(250);
    } finally {
      await client.query('RESET statement_timeout').catch(() => {});
    }
  }
}

/** Waits until every transaction that had an id when this is called has ended. */
async function olderTransactionsEnded(client: pg.Client, opts: ProbeOptions): Promise<void> {
  // An id of its own, the next one: a snapshot's xmax is only the newest ended one's successor,
  // and a transaction that took an id after it (and still runs) would not count as older.
  const [now] = await q<{ id: string }>(client, 'source', 'SELECT txid_current()::text AS id');
  const ended = pollUntil(
    client,
    'SELECT txid_snapshot_xmin(txid_current_snapshot()) > $1::bigint AS ok',
    now!.id,
    opts.signal,
  );
  await reportingWaits(client, 'checking the new slot', { olderThan: now!.id }, opts.log, ended);
}

async function logRunningTransactions(client: pg.Client, opts: ProbeOptions): Promise<void> {
  const session = await connect(opts.source, 'replication');
  try {
    const pid = (session as unknown as { processID: number }).processID;
    await waitWithoutLockTimeout(session);
    await reportingWaits(
      client,
      'checking the new slot',
      { waiter: pid },
      opts.log,
      session.query(
        `CREATE_REPLICATION_SLOT ${quoteIdent(opts.tempSlot)} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
      ),
    );
  } catch (err) {
    // 53400: no slot is free. bgwriter logs the record within its interval; wait for it instead.
    if (stateOf(err) !== '53400') throw err;
    opts.log.info(
      'checking the new slot: no replication slot free for a probe, waiting for the server instead',
    );
    await sleep(RUNNING_XACTS_INTERVAL_MS + 1_000, opts.signal);
    await olderTransactionsEnded(client, opts);
  } finally {
    // A temporary slot ends with its session.
    await session.end().catch(() => {});
  }
}

/** Decoding reads flushed WAL only, and commits made with synchronous_commit off reach it later. */
async function walFlushed(client: pg.Client, opts: ProbeOptions): Promise<void> {
  const [row] = await q<{ lsn: string }>(client, 'source', 'SELECT pg_current_wal_insert_lsn()::text AS lsn');
  await pollUntil(client, 'SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok', row!.lsn, opts.signal);
}

/** Runs `sql` (one boolean column `ok`, one parameter) every POLL_MS until it is true. */
async function pollUntil(client: pg.Client, sql: string, param: string, signal?: AbortSignal): Promise<void> {
  for (;;) {
    const [row] = await q<{ ok: boolean }>(client, 'source', sql, [param]);
    if (row?.ok) return;
    signal?.throwIfAborted();
    await sleep(POLL_MS);
  }
}
