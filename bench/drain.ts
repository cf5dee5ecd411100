// What the TLS and scale-series benches share: a backlog of captured changes that can be made again
// and again on the same pgbench tables (UPDATEs only, unlike replay-data.ts's makeBacklog, whose
// INSERTs of new keys can run once), its drain by `migrate --exit-when-synced` timed as the replay
// bench times it, the settle before a timed run, and the copy's idle tail read from pgferry's
// per-chunk log lines.
import { execFileSync } from 'node:child_process';
import { expectSuccess, startPgferry } from './pgferry-proc.js';
import type { LogLine } from './pgferry-run.js';
import { assertEqual, EXCLUDED, logCounts, total, withClient } from './replay-data.js';

/** Rows one backlog statement updates at most. */
const STEP = 100_000;

/** pgferry's arguments for the replay runs: the replay bench's (pgbench_history has no key). */
export const replayArgs = (stateFile: string, jobs: number): string[] => [
  'migrate',
  '--jobs',
  String(jobs),
  '--state',
  stateFile,
  '--exclude',
  EXCLUDED,
  '--exit-when-synced',
];

/** CHECKPOINT on each server, then sync(1): no timed run pays for the writeback of the one before. */
export async function settle(...urls: string[]): Promise<void> {
  await Promise.all(urls.map((u) => withClient(u, (c) => c.query('CHECKPOINT'))));
  execFileSync('sync');
}

/**
 * Brings the capture logs up to `want` changes with UPDATEs of pgbench_accounts.abalance, in
 * statements of up to 100,000 consecutive aids, from aid 1 on (wrapping round, so a small table gets
 * several log rows per key). Returns the changes logged.
 */
export async function updateBacklog(url: string, scale: number, want: number): Promise<number> {
  return withClient(url, async (c) => {
    const accounts = scale * 100_000;
    let rest = want - total(await logCounts(c));
    let offset = 0;
    while (rest > 0) {
      const n = Math.min(rest, STEP, accounts - offset);
      const res = await c.query(
        `UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > ${offset} AND aid <= ${offset + n}`,
      );
      if (!res.rowCount)
        throw new Error(`the backlog's UPDATE of aids ${offset + 1}..${offset + n} changed no row`);
      rest -= res.rowCount;
      offset = (offset + n) % accounts;
    }
    return total(await logCounts(c));
  });
}

export interface Drain {
  changes: number;
  /** First JSON log line to the `synced: …` line (process start-up excluded), as the replay bench. */
  seconds: number;
  changes_per_s: number;
  wall_seconds: number;
  peak_rss_mb: number;
  cpu_seconds: number;
}

/**
 * Drains the standing backlog with `migrate --exit-when-synced` on these URLs, checks that the logs
 * are empty and the replayed tables equal (`check` URLs: the bench's own plain connections).
 */
export async function drainBacklog(
  args: string[],
  urls: { source: string; target: string },
  check: { source: string; target: string },
): Promise<Drain> {
  const changes = await withClient(check.source, async (c) => total(await logCounts(c)));
  const exit = await expectSuccess(startPgferry(args, urls));
  const first = exit.log[0];
  const synced = exit.log.find((l) => l.msg.startsWith('synced:'));
  if (!first || !synced) throw new Error(`the drain logged no "synced" line:\n${exit.stderr.slice(-2000)}`);
  const seconds = (synced.time - first.time) / 1000;
  if (Number(synced.appliedTotal) < changes)
    throw new Error(`the drain applied ${synced.appliedTotal} changes, fewer than the ${changes} logged`);
  const left = await withClient(check.source, async (c) => total(await logCounts(c)));
  if (left !== 0) throw new Error(`the drain exited with ${left} changes still in the logs`);
  await assertEqual(check.source, check.target, 'drain');
  return {
    changes,
    seconds,
    changes_per_s: changes / seconds,
    wall_seconds: exit.wallSeconds,
    peak_rss_mb: exit.peakRssMB,
    cpu_seconds: exit.cpuSeconds,
  };
}

export interface IdleTail {
  workers: number;
  chunks: number;
  /** Seconds from the first worker's last chunk (it then found no work) to the copy's last chunk. */
  seconds: number;
  /** That tail over the copy's streaming time (from the plan to the last chunk). */
  share: number;
  /** Per worker: chunks copied and when its last one ended, in seconds from the copy's plan. */
  perWorker: { worker: number; chunks: number; lastDoneAt: number }[];
  /** The table the copy's last chunk belonged to. */
  lastTable: string;
}

/**
 * The copy's idle tail from the "chunk copied" lines pgferry logs at debug level (worker id, table,
 * time the chunk committed). Null when the run was not logged at debug level. A worker that ends
 * early has found every chunk taken: from then until the last chunk the copy runs on fewer workers.
 * pgferry logs no "chunk started" line: a worker's idle gaps between chunks are not visible, only
 * when it stopped for good.
 */
export function idleTail(log: LogLine[], jobs: number): IdleTail | null {
  const chunks = log.filter((l) => l.msg === 'chunk copied');
  const plan =
    log.find((l) => l.msg === 'copy planned in primary-key ranges') ??
    log.find((l) => l.msg === 'copy started');
  if (chunks.length === 0 || !plan) return null;
  const byWorker = new Map<number, { chunks: number; last: number }>();
  for (const l of chunks) {
    const w = Number(l.worker);
    const cur = byWorker.get(w) ?? { chunks: 0, last: 0 };
    byWorker.set(w, { chunks: cur.chunks + 1, last: Math.max(cur.last, l.time) });
  }
  const lasts = [...byWorker.values()].map((w) => w.last);
  // A worker that never got a chunk (fewer chunks than --jobs) was idle from the plan on.
  if (byWorker.size < jobs) lasts.push(plan.time);
  const end = Math.max(...lasts);
  const seconds = (end - Math.min(...lasts)) / 1000;
  const stream = (end - plan.time) / 1000;
  return {
    workers: byWorker.size,
    chunks: chunks.length,
    seconds,
    share: stream > 0 ? seconds / stream : 0,
    perWorker: [...byWorker.entries()]
      .sort(([a], [b]) => a - b)
      .map(([worker, w]) => ({ worker, chunks: w.chunks, lastDoneAt: (w.last - plan.time) / 1000 })),
    lastTable: String(chunks.reduce((a, b) => (b.time >= a.time ? b : a)).table),
  };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
