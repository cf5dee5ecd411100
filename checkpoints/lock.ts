// The run lock: one pgferry process drives a state file. The holder is named by pid, host and the
// process's start time (a reused pid is not the holder); a holder on another host is alive while
// its heartbeat is fresh.
import fs from 'node:fs';
import os from 'node:os';
import type Database from 'better-sqlite3';
import { PgferryError } from '../lib/errors.js';
import { now } from './meta.js';

const HEARTBEAT_MS = 5_000;
const STALE_MS = 30_000;

function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counts from after the command name, which may itself hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

interface Holder {
  pid: number;
  host: string;
  proc_start: string | null;
  heartbeat_at: string;
}

/** A holder on this host is alive while its process is (the same one: same start time); elsewhere, while its heartbeat is fresh. */
const isAlive = (held: Holder) =>
  held.host === os.hostname()
    ? processStart(held.pid) !== null && processStart(held.pid) === held.proc_start
    : Date.now() - Date.parse(held.heartbeat_at) < STALE_MS;

/** The process driving the state file now, or null when none is. */
export function liveHolder(db: Database.Database): { pid: number; host: string } | null {
  const held = db.prepare('SELECT pid, host, proc_start, heartbeat_at FROM lock WHERE id = 1').get() as
    | Holder
    | undefined;
  return held && isAlive(held) ? { pid: held.pid, host: held.host } : null;
}

/** Takes the lock (or refuses: a live holder) and starts its heartbeat; returns the heartbeat's timer. */
export function acquireLock(db: Database.Database, file: string): NodeJS.Timeout {
  const host = os.hostname();
  const pid = process.pid;
  const start = processStart(pid);
  const take = db.transaction(() => {
    const held = db.prepare('SELECT pid, host, proc_start, heartbeat_at FROM lock WHERE id = 1').get() as
      | Holder
      | undefined;
    if (held && !(held.pid === pid && held.host === host)) {
      if (isAlive(held)) {
        throw new PgferryError(
          'PGFERRY_STATE_LOCKED',
          `${file} is in use by pgferry process ${held.pid} on ${held.host}`,
          { side: 'state' },
        );
      }
    }
    db.prepare(
      `INSERT INTO lock (id, pid, host, proc_start, acquired_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host, proc_start = excluded.proc_start,
         acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at`,
    ).run(pid, host, start, now(), now());
  });
  take.immediate();
  const heartbeat = setInterval(() => {
    try {
      db.prepare('UPDATE lock SET heartbeat_at = ? WHERE id = 1 AND pid = ?').run(now(), pid);
    } catch {
      // A busy database skips one beat; the next one catches up.
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();
  return heartbeat;
}

/** Stops the heartbeat and gives the lock up, if this process holds it. */
export function releaseLock(db: Database.Database, heartbeat: NodeJS.Timeout): void {
  clearInterval(heartbeat);
  try {
    db.prepare('DELETE FROM lock WHERE id = 1 AND pid = ?').run(process.pid);
  } catch {
    // read-only or already closed
  }
}
