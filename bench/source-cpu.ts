// A PostgreSQL server's CPU time, read from /proc while a bench runs: the postmaster and every
// child it has forked (backends, walsenders, autovacuum workers, checkpointer, …), sampled every
// 250 ms, and attributed to kinds of process.
//
// total(t) = the postmaster's utime + stime + cutime + cstime + Σ over its live children of
// utime + stime. A child that exits is reaped by the postmaster, and its whole lifetime's CPU moves
// into the postmaster's cutime/cstime at once, so total(end) − total(start) is the server's CPU over
// the interval exactly, whether children come, go or live throughout (a zombie not yet reaped still
// shows its own utime/stime). Attribution: each child's last seen utime + stime minus what it had at
// the first sample (0 for a child forked since: a new process starts at 0); what a child used
// between its last sample and its exit shows only in cutime and is counted as "exited (after last
// sample)". Client backends are told apart by their application_name (pgbench, pgferry, …), read
// from pg_stat_activity about once a second through a separate monitoring connection; the other
// processes by their title (/proc/<pid>/cmdline: "postgres: walwriter", …).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import pg from 'pg';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The application_name of the sampler's own monitoring session (its CPU is reported as its own kind). */
export const MONITOR_APP = 'pgferry-bench-monitor';

interface Stat {
  ppid: number;
  /** utime + stime, clock ticks. */
  own: number;
  /** cutime + cstime: reaped children's. */
  reaped: number;
}

/** /proc/<pid>/stat; null when the process is gone. */
function readStat(pid: number): Stat | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised name: state is the 3rd field of the line, ppid the 4th,
    // utime the 14th, stime the 15th, cutime the 16th, cstime the 17th.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(f[1]),
      own: Number(f[11]) + Number(f[12]),
      reaped: Number(f[13]) + Number(f[14]),
    };
  } catch {
    return null;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    // No CONFIG_PROC_CHILDREN: scan every process for its parent.
    return fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((p) => readStat(p)?.ppid === pid);
  }
}

function title(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

interface Snapshot {
  pm: Stat;
  /** Live children's utime + stime by pid. */
  kids: Map<number, number>;
}

/**
 * The postmaster's stat and its live children's, consistent: a child reaped while they are read
 * would be counted twice or not at all (its CPU moves into cutime as it leaves the children list),
 * so the reading is retried until the postmaster's cutime + cstime did not change across it.
 */
function snapshot(postmaster: number): Snapshot | null {
  for (let attempt = 0; ; attempt++) {
    const before = readStat(postmaster);
    if (!before) return null;
    const kids = new Map<number, number>();
    for (const pid of childrenOf(postmaster)) {
      const s = readStat(pid);
      if (s && s.ppid === postmaster) kids.set(pid, s.own);
    }
    const after = readStat(postmaster);
    if (!after) return null;
    if (after.reaped === before.reaped || attempt >= 50) return { pm: after, kids };
  }
}

/** A process title's kind, for everything but client backends (told apart by application_name). */
function kindOfTitle(t: string): string | null {
  const m = /^postgres: (.*)$/.exec(t);
  if (!m) return null;
  const rest = m[1]!;
  const known: [RegExp, string][] = [
    [/^walsender /, 'walsender'],
    [/^autovacuum worker/, 'autovacuum'],
    [/^autovacuum launcher/, 'autovacuum'],
    [/^checkpointer/, 'checkpointer'],
    [/^walwriter/, 'walwriter'],
    [/^background writer/, 'bgwriter'],
    [/^logical replication /, 'other background'],
    [/^(stats|archiver|startup|parallel worker)/, 'other background'],
  ];
  for (const [re, kind] of known) if (re.test(rest)) return kind;
  return null; // a client backend: "postgres: <user> <db> <host>(<port>) <statement>"
}

function kindOfApp(app: string | undefined): string {
  if (app === undefined) return 'client (unidentified)';
  if (app === 'pgbench') return 'pgbench';
  if (app === 'pgferry') return 'pgferry';
  if (app === MONITOR_APP) return 'bench monitor';
  return 'other client';
}

export interface ServerCpu {
  /** CPU ms of the server (postmaster + children) over the interval. */
  totalMs: number;
  /** The same by kind of process; sums to totalMs. */
  byKindMs: Record<string, number>;
  samples: number;
  /** Children seen during the interval. */
  children: number;
  /** The parts of totalMs: the postmaster's own and reaped children's CPU, and the live children's
   *  at the first and last sample. */
  parts: { postmasterMs: number; reapedMs: number; liveAtStartMs: number; liveAtEndMs: number };
}

interface Child {
  baseline: number;
  last: number;
  title: string;
}

/**
 * Samples a server's CPU from `start()` until `stop()`. With `monitorUrl`, client backends are
 * classified by application_name; without, they are all "client".
 */
export class ServerCpuSampler {
  private timer: NodeJS.Timeout | undefined;
  private monitor: pg.Client | undefined;
  private lastMonitor = 0;
  private monitoring: Promise<void> = Promise.resolve();
  private readonly apps = new Map<number, string>();
  private readonly children = new Map<number, Child>();
  private startTotal = 0;
  private startPm = { own: 0, reaped: 0 };
  private lastPm = { own: 0, reaped: 0 };
  private samples = 0;
  private liveStart = 0;
  private liveEnd = 0;

  constructor(
    private readonly postmasterPid: number,
    private readonly monitorUrl?: string,
  ) {}

  async start(): Promise<void> {
    if (this.monitorUrl) {
      this.monitor = new pg.Client({ connectionString: this.monitorUrl, application_name: MONITOR_APP });
      this.monitor.on('error', () => {});
      await this.monitor.connect();
      await this.readApps();
    }
    const snap = snapshot(this.postmasterPid);
    if (!snap) throw new Error(`the postmaster (pid ${this.postmasterPid}) is not running`);
    this.startPm = { own: snap.pm.own, reaped: snap.pm.reaped };
    this.lastPm = this.startPm;
    for (const [pid, own] of snap.kids)
      this.children.set(pid, { baseline: own, last: own, title: title(pid) });
    this.liveStart = [...snap.kids.values()].reduce((a, n) => a + n, 0);
    this.startTotal = snap.pm.own + snap.pm.reaped + this.liveStart;
    this.samples = 1;
    this.timer = setInterval(() => this.sample(), 250);
  }

  private async readApps(): Promise<void> {
    const { rows } = await this.monitor!.query<{ pid: number; app: string }>(
      'SELECT pid, application_name AS app FROM pg_stat_activity WHERE backend_type = $1',
      ['client backend'],
    );
    for (const r of rows) this.apps.set(r.pid, r.app);
  }

  /** One sample; returns the total so far (ticks). */
  private sample(): number {
    const snap = snapshot(this.postmasterPid);
    if (!snap) return Number.NaN;
    const { pm, kids } = snap;
    this.lastPm = { own: pm.own, reaped: pm.reaped };
    let total = pm.own + pm.reaped;
    for (const [pid, own] of kids) {
      const known = this.children.get(pid);
      if (known) {
        known.last = own;
        // Just forked, a child still bears the postmaster's command line until it sets its title.
        if (!known.title.startsWith('postgres: ')) known.title = title(pid);
      } else this.children.set(pid, { baseline: 0, last: own, title: title(pid) });
      total += own;
    }
    this.samples += 1;
    this.liveEnd = total - pm.own - pm.reaped;
    if (this.monitor && Date.now() - this.lastMonitor >= 1000) {
      this.lastMonitor = Date.now();
      this.monitoring = this.readApps().catch(() => {});
    }
    return total;
  }

  async stop(): Promise<ServerCpu> {
    clearInterval(this.timer);
    const endTotal = this.sample();
    await this.monitoring;
    await this.monitor?.end().catch(() => {});
    const ms = (ticks: number) => (ticks * 1000) / CLK_TCK;
    const byKind: Record<string, number> = {};
    const add = (kind: string, ticks: number) => {
      byKind[kind] = (byKind[kind] ?? 0) + ms(ticks);
    };
    add('postmaster', this.lastPm.own - this.startPm.own);
    let attributed = this.lastPm.own - this.startPm.own;
    for (const [pid, c] of this.children) {
      const kind = kindOfTitle(c.title) ?? kindOfApp(this.apps.get(pid));
      add(kind, c.last - c.baseline);
      attributed += c.last - c.baseline;
    }
    add('exited (after last sample)', endTotal - this.startTotal - attributed);
    for (const [k, v] of Object.entries(byKind)) if (v === 0) delete byKind[k];
    return {
      totalMs: ms(endTotal - this.startTotal),
      byKindMs: byKind,
      samples: this.samples,
      children: this.children.size,
      parts: {
        postmasterMs: ms(this.lastPm.own - this.startPm.own),
        reapedMs: ms(this.lastPm.reaped - this.startPm.reaped),
        liveAtStartMs: ms(this.liveStart),
        liveAtEndMs: ms(this.liveEnd),
      },
    };
  }
}

/** utime + stime of one process in ms (not its children's); NaN when it is gone. */
export function processCpuMs(pid: number): number {
  const s = readStat(pid);
  return s ? (s.own * 1000) / CLK_TCK : Number.NaN;
}
